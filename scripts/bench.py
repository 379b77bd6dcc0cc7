#!/usr/bin/env python3
"""Benchmark convlstm-patch: how fast the tool is, and how fast the patched layer trains.

    python scripts/bench.py [--quick] [--part A|B] [--backends tensorflow,torch,jax] [--layers convlstm,lstm,gru]
                            [--json PATH]

A. Tool speed: wall time of `python -m patcher ...` subprocesses (median of N
   rounds, command order rotated each round) next to their baselines; among
   them `verify` of both flavours against the slower of the two verified alone.
B. Patched layer speed: one training step of a small ConvLSTM2D model (and,
   with --layers, an LSTM and a GRU model) on a pristine and a patched copy of
   Keras, per Keras 3 backend. LSTM and GRU are timed twice with per-gate
   activations: the same functions the gates inherit (only the code path
   differs from stock) and other functions (functions and path differ).

Everything runs on throwaway copies of the installed keras and tf_keras (package
and dist-info) in a temporary folder; the real environment is never touched.
Exit code 0 unless a subprocess fails (then 1, with the tail of its stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the checkout's patcher (pristine.py uses it); this folder is already on the path
    sys.path.insert(1, str(ROOT))

from bench_cases import (
    BACKENDS,
    FULL,
    LAYER_SETS,
    QUICK,
    VARIANTS,
    Plan,
    tool_commands,
)
from bench_report import (
    environment_report,
    layer_results,
    missing_modules,
    print_failures,
    print_header,
    print_layer_table,
    print_load_note,
    print_tool_table,
    tool_results,
)
from bench_run import STARTED, SubprocessFailed, prepare_sites, progress, time_layers, time_tools, worker_main


def parse_backends(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(BACKENDS)} (comma separated), not {text!r}")
    return list(dict.fromkeys(names))


def parse_layer_sets(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LAYER_SETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(LAYER_SETS)} (comma separated), not {text!r}")
    return [name for name in LAYER_SETS if name in names]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions: about 1.5 minutes instead of 4.5 (longer on a busy machine)",
    )
    parser.add_argument(
        "--part",
        choices=("A", "B"),
        help="only part A (tool speed) or only part B (layer speed); default: both",
    )
    parser.add_argument(
        "--backends",
        type=parse_backends,
        default=list(BACKENDS),
        metavar="LIST",
        help="Keras 3 backends for part B, comma separated (default: all; uninstalled ones are skipped)",
    )
    parser.add_argument(
        "--layers",
        type=parse_layer_sets,
        default=["convlstm"],
        metavar="LIST",
        help="layer sets for part B, comma separated: convlstm, lstm, gru (default: convlstm)",
    )
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write all numbers as JSON to PATH")
    parser.add_argument("--worker-layers", choices=list(LAYER_SETS), default="convlstm", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=FULL.warmup, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, plan: Plan, tmp: Path) -> tuple[list[dict], dict[str, dict]]:
    home = tmp / "keras-home"
    home.mkdir()
    progress("setting up copies of keras and tf_keras")
    sites = prepare_sites(tmp, home, args.layers)

    parts = {args.part} if args.part else {"A", "B"}
    tools: list[dict] = []
    if "A" in parts:
        progress("A. timing the tool")
        commands = tool_commands(sites)
        tools = tool_results(commands, time_tools(commands, sites, home, plan.tool_repeats))
        print_tool_table(tools, plan.tool_repeats)

    layers: dict[str, dict] = {}
    logs = tmp / "logs"
    logs.mkdir()
    for backend in args.backends if "B" in parts else []:
        missing = missing_modules(backend)
        if missing:
            layers[backend] = {"skipped": "not installed", "missing": missing}
            continue
        for layer_set in args.layers:
            key = backend if layer_set == "convlstm" else f"{backend} {layer_set}"
            layers[key] = layer_results(time_layers(backend, sites, home, plan, logs, layer_set), layer_set)
    if "B" in parts:
        print_layer_table(layers, plan)
    return tools, layers


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.warmup, args.worker_layers)
        return 0
    plan = QUICK if args.quick else FULL
    command = shlex.join(["python", "scripts/bench.py", *argv])
    env = environment_report()
    print_header(env, command, plan, args.quick)
    try:
        with tempfile.TemporaryDirectory(prefix="convlstm-bench-") as tmp:
            tools, layers = benchmark(args, plan, Path(tmp))
    except SubprocessFailed as failure:
        tail = "\n".join(failure.stderr.strip().splitlines()[-25:])
        code = "" if failure.returncode is None else f" (exit code {failure.returncode})"
        print(f"Error: {failure.label} failed{code}; last lines of its stderr:\n{tail}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - STARTED
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print_failures(tools, layers)
    print_load_note(env, load_end)
    print(f"Total time {elapsed:.0f} s.")
    if args.json:
        document = {
            "command": command,
            "environment": env,
            "load_average_end": load_end,
            "plan": vars(plan),
            "quick": args.quick,
            "elapsed_s": elapsed,
            "tool": tools,
            "layers": layers,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"Numbers written to {args.json}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
