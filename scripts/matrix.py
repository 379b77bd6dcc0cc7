"""Compatibility matrix: run the real product path on every Keras generation.

    python scripts/matrix.py --all              # every cell (resumes: finished cells are kept)
    python scripts/matrix.py --sample           # the CI sample
    python scripts/matrix.py --cells keras-2.2.4,tf_keras-2.21.0 [--rerun]
    python scripts/matrix.py --cells keras-nightly  # the canary: today's keras-nightly
    python scripts/matrix.py --list

A cell is a Keras version with its backend and interpreter: the running one
(Python 3.11 here), or for keras 2.6-2.8 Python 3.9 (pyenv's, else python3.9 on
PATH: scripts/venvs.py), the newest their own TensorFlow has wheels for. For
each *run* cell the script builds (or reuses) a throwaway venv under the
tool's env cache ($CONVLSTM_PATCH_ENV_CACHE, else ~/.cache/convlstm-patch/venvs)
and runs, with that venv's python (the tool itself runs on the running
interpreter, as a user's pipx or tools venv does):

    convlstm-patch apply --python VENV/bin/python --only PACKAGE --layers SETS   (with verification)
    convlstm-patch check ...                                      (the hash pins)
    the version's own tests of those layers, if its wheel ships them (patched)
    convlstm-patch revert ...
    every file the distribution's RECORD lists has its RECORD sha256 again

SETS are every layer set the version supports, as its hash pins lists them
(patches/pins/DIST/VERSION.json, `layer_sets`): convlstm,lstm,gru where LSTM
and GRU sit beside the ConvLSTM files, convlstm alone on keras 2.0-2.8. The
cell fails if `status` says the version supports other sets than its pins, or
if the verification has no passing checks for one of them (apply --json names
each check's layer set: its "layer_set"); each result records the sets
run-verified (`verified_sets`).

The *canary* cell keras-nightly (the newest `pip install --pre keras-nightly`,
a distribution that installs the `keras` package, on the running TensorFlow)
runs only when named (`--cells keras-nightly`), never in --all or --sample:
neither may depend on a moving target. It is upgraded and rerun whenever
selected, records the version pip installed, and accepts `check`'s exit 10
(no hash pins for an unreleased version); apply's verification and the RECORD
comparison after revert must pass as everywhere.

The Keras 3 cells and tf_keras 2.21 *share* the running interpreter's packages
(scripts/venvs.py: a .pth file, never --system-site-packages, which would show
the base interpreter's): pip takes their backend (TensorFlow 2.21, torch, JAX)
from there when it is installed, else installs it into the cell; the cell's
own Keras comes first. Every other cell installs its whole stack itself.

A *transform-only* cell (a version that cannot run on this machine; today
only keras 2.4, which has nothing to patch) runs apply --no-verify, check and
revert on its unpacked wheel (--keras-root) and records why it could not run.
Cells run two at a time (--jobs); results go to
OUT/matrix.json after every cell and OUT/matrix.md at the end. Multi-backend
Keras (2.0-2.3) runs on Theano 1.0.5 with three import-time shims for Python
3.11 placed in the venv's own sitecustomize.py, never in the product.

This file is the command line. The catalogue of cells is scripts/matrix_cells.py,
running one scripts/matrix_run.py (a version's own tests: matrix_own_tests.py),
the results and matrix.json scripts/matrix_results.py, matrix.md
scripts/matrix_report.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import venvs
from matrix_cells import REPO, cells, priority, select, to_run
from matrix_report import markdown
from matrix_results import write_json
from matrix_run import Runner

DEFAULT_OUT = REPO / "docs" / "matrix"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every cell but the canary (keras-nightly)")
    which.add_argument(
        "--sample", action="store_true", help="the CI sample (Theano 2.2.4, oldest/newest Keras 3, tf_keras)"
    )
    which.add_argument("--cells", help="comma-separated cell ids (see --list)")
    which.add_argument("--list", action="store_true", help="print the cells and exit")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"where matrix.json/md go (default {DEFAULT_OUT})"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cells at a time (default 2)")
    parser.add_argument("--rerun", action="store_true", help="rerun cells that already have a result")
    parser.add_argument("--rerun-failed", action="store_true", help="rerun cells whose result is 'failed'")
    parser.add_argument("--no-own-tests", action="store_true", help="skip the versions' own tests of the layers")
    parser.add_argument("--timeout", type=float, default=1200, help="per verification / own-test run (s)")
    return parser


def main(argv=None) -> int:
    options = parser()
    args = options.parse_args(argv)
    everything = cells()
    if args.list:
        for cell in everything:
            extra = f"  ({cell.reason})" if cell.reason else ""
            tags = "".join(f"  [{tag}]" for tag, on in (("sample", cell.sample), ("canary", cell.canary)) if on)
            sets = ",".join(map(str, cell.layer_sets)) or "-"
            print(f"{cell.id:<24} {cell.kind:<9} {cell.backend:<10} {sets:<17} {cell.generation}{tags}{extra}")
        return 0
    chosen = select(everything, args.all, args.sample, args.cells)
    if isinstance(chosen, str):
        options.error(chosen)

    runner = Runner(args.out, args.timeout, own_tests=not args.no_own_tests)
    todo = to_run(chosen, runner.results, args.rerun, args.rerun_failed)
    for cell in chosen:
        if cell not in todo:
            previous = runner.results[cell.id]
            print(f"{cell.id}: kept ({previous.get('outcome')}, {previous.get('date')}; --rerun to run again)")
    print(f"{len(todo)} of {len(chosen)} cells to run, {args.jobs} at a time; venvs in {venvs.cache_dir()}", flush=True)
    todo.sort(key=priority)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(runner.run_cell, todo))
    wall = time.monotonic() - started
    if args.all:
        run = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python scripts/matrix.py --all" + (" --rerun" if args.rerun else ""),
            "wall": f"{wall / 60:.0f} min" + ("" if args.rerun or len(todo) == len(chosen) else " (resumed run)"),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
        write_json(args.out, runner.results)
    if (args.out / "matrix.json").exists():
        (args.out / "matrix.md").write_text(markdown(args.out))
    failed = [result["id"] for result in results if result["outcome"] == "failed"]
    print(f"{len(results)} cells in {wall:.0f} s; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
