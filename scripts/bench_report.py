"""The benchmark's report: medians and ratios to the baselines, the tables, and the
machine they were measured on (scripts/bench.py)."""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import sys
from importlib import metadata

from bench_cases import (
    BACKENDS,
    BATCH,
    INPUT_SHAPE,
    LAYER_TARGETS,
    MEASURES,
    PER_GATE,
    RNN_OTHER_FUNCTIONS_TARGET,
    VARIANTS,
    Plan,
    ToolCommand,
    variants_of,
)


def tool_results(commands: list[ToolCommand], samples: dict[str, list[float]]) -> list[dict]:
    medians = {key: statistics.median(values) for key, values in samples.items()}
    results = []
    for command in commands:
        median = medians[command.key]
        baselines = (command.baseline,) if isinstance(command.baseline, str) else command.baseline or ()
        ratio = median / max(medians[key] for key in baselines) if baselines else None
        results.append(
            {
                "key": command.key,
                "command": command.label,
                "argv": command.argv,
                "median_s": median,
                "samples_s": samples[command.key],
                "baseline": command.baseline,
                "ratio": ratio,
                "target": command.target.text if command.target else None,
                "passed": command.target.met(median, ratio) if command.target else None,
                "measures": command.measures,
            }
        )
    return results


def format_ratio(result: dict) -> str:
    if result["ratio"] is None:
        return "-"
    if result["key"] == "import_pair":
        return f"{result['ratio']:.2f}x one"
    if result["baseline"] == "import_keras":
        return f"{result['ratio']:.1%} of import keras"
    if isinstance(result["baseline"], (tuple, list)):
        return f"{result['ratio']:.2f}x slower one alone"
    return f"{result['ratio']:.2f}x one-liner"


def verdict(passed: bool | None) -> str:
    return "" if passed is None else ("PASS" if passed else "FAIL")


def print_tool_table(results: list[dict], repeats: int) -> None:
    print(f"A. Tool speed (wall seconds, median of {repeats}; KERAS_BACKEND=tensorflow)")
    header = f"  {'command':<33} {'median s':>8}  {'vs baseline':<22} {'target':<22} result"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for result in results:
        print(
            f"  {result['command']:<33} {result['median_s']:>8.3f}  {format_ratio(result):<22} "
            f"{result['target'] or '-':<22} {verdict(result['passed'])}".rstrip()
        )
    print("  What each ratio measures:")
    for result in results:
        if result["ratio"] is not None and result.get("measures"):
            print(f"    {result['command']}: {result['measures']}")
    print()


def paired_ratio(steps: list, baseline: list, index: int) -> float:
    """Median over rounds of this variant's step / the pristine step of the same round."""
    return statistics.median(mine[index] / base[index] for mine, base in zip(steps, baseline))


def layer_results(generations: list[dict[str, list]], layer_set: str = "convlstm") -> dict:
    variants = {}
    for variant in variants_of(layer_set):
        label = PER_GATE[layer_set][3] if variant == "five" else VARIANTS[variant][2]
        steps = [step for generation in generations for step in generation[variant]]
        wall, cpu = ([step[index] for step in steps] for index in (0, 1))
        entry = {
            "label": label,
            "steps": len(steps),
            "median_ms": statistics.median(wall) * 1e3,
            "cpu_median_ms": statistics.median(cpu) * 1e3,
            "wall_ms": [[step[0] * 1e3 for step in generation[variant]] for generation in generations],
            "cpu_ms": [[step[1] * 1e3 for step in generation[variant]] for generation in generations],
        }
        if variant in LAYER_TARGETS:
            ratios = [paired_ratio(generation[variant], generation["pristine"], 0) for generation in generations]
            cpu_ratios = [paired_ratio(generation[variant], generation["pristine"], 1) for generation in generations]
            text, met = LAYER_TARGETS[variant]
            if variant == "five" and layer_set != "convlstm":
                text, met = RNN_OTHER_FUNCTIONS_TARGET
            ratio = statistics.median(ratios)
            entry.update(
                ratio=ratio,
                generation_ratios=ratios,
                cpu_ratio=statistics.median(cpu_ratios),
                generation_cpu_ratios=cpu_ratios,
                target=text,
                passed=met(ratio),
                measures=MEASURES[variant],
            )
        variants[variant] = entry
    return {"variants": variants}


def print_layer_table(results: dict[str, dict], plan: Plan) -> None:
    shape = ", ".join(map(str, INPUT_SHAPE))
    print(f"B. Training step (train_on_batch): Input(batch {BATCH}, {shape}) -> ConvLSTM2D(16, 3, same)")
    print("   -> GlobalAveragePooling2D -> Dense(1) (with --layers also Input(batch 8, 20, 32) -> LSTM(64) / GRU(64)")
    print("   -> Dense(1)), MSE, SGD; single-threaded. Per generation, one fresh")
    print("   process per variant, warmed up, then rounds of one step per variant in rotating order.")
    print("   ratio: per generation the median over rounds of (variant step / pristine step), wall time;")
    print("   shown: the median over generations, then each generation's. cpu: the same with CPU time.")
    each_width = max(len("per generation"), 5 * plan.generations - 1)
    labels = [entry["label"] for result in results.values() for entry in result.get("variants", {}).values()]
    label_width = max(map(len, labels), default=27)
    header = (
        f"  {'backend':<15} {'variant':<{label_width}} {'steps':>5} {'median ms':>9}  {'ratio':>5}  "
        f"{'per generation':<{each_width}}  {'cpu':>5}  {'target':<14} result"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for backend, result in results.items():
        if "skipped" in result:
            print(f"  {backend:<15} skipped: {result['skipped']}")
            continue
        name = backend
        for entry in result["variants"].values():
            if "ratio" in entry:
                each = " ".join(f"{ratio:.2f}" for ratio in entry["generation_ratios"])
                cells = (
                    f"{entry['ratio']:>5.3f}  {each:<{each_width}}  {entry['cpu_ratio']:>5.3f}  "
                    f"{entry['target'] or '-':<14} {verdict(entry['passed'])}"
                )
            else:
                cells = f"{'-':>5}"
            line = (
                f"  {name:<15} {entry['label']:<{label_width}} {entry['steps']:>5} {entry['median_ms']:>9.1f}  {cells}"
            )
            print(line.rstrip())
            name = ""
    print("  What each ratio measures (variant step / pristine step):")
    entries = [entry for result in results.values() for entry in result.get("variants", {}).values()]
    measures = {entry["label"]: entry["measures"] for entry in entries if "measures" in entry}
    for label, text in measures.items():
        print(f"    {label}: {text}")
    print()


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def missing_modules(backend: str) -> list[str]:
    return [module for module in BACKENDS[backend] if importlib.util.find_spec(module) is None]


def environment_report() -> dict:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cores": cores,
        "usable_cores": usable,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": {name: version(name) for name in ("keras", "tf_keras", "tensorflow", "torch", "jax", "numpy")},
    }


def print_header(env: dict, command: str, plan: Plan, quick: bool) -> None:
    versions = ", ".join(f"{name} {value}" for name, value in env["versions"].items())
    usable = f" ({env['usable_cores']} usable)" if env["usable_cores"] != env["cores"] else ""
    cores = f"{env['cores']} cores{usable}"
    load = "" if env["load_average"] is None else f"; load average {env['load_average'][0]:.2f} at start"
    print("convlstm-patch benchmark")
    print(f"  reproduce: {command}")
    print(f"  Python {env['python']} ({env['executable']}) on {env['platform']}")
    print(f"  {versions}")
    print(f"  {cores}{load}")
    print(f"  mode: {'quick' if quick else 'full'}; {plan.describe()}")
    print()


def print_failures(tools: list[dict], layers: dict[str, dict]) -> None:
    failed = [f"A. {result['command']}: {result['target']}" for result in tools if result["passed"] is False]
    for backend, result in layers.items():
        for entry in result.get("variants", {}).values():
            if entry.get("passed") is False:
                failed.append(f"B. {backend} {entry['label']}: ratio {entry['ratio']:.3f}, target {entry['target']}")
    print("Targets failed: " + ("none" if not failed else str(len(failed))))
    for line in failed:
        print(f"  {line}")


def print_load_note(env: dict, load_end: float | None) -> None:
    if env["load_average"] is None or load_end is None:
        return
    load = max(env["load_average"][0], load_end)
    print(f"Load average {env['load_average'][0]:.2f} at start, {load_end:.2f} at end.")
    if load > env["usable_cores"]:
        # Wall times then depend on what else ran; CPU time much less so.
        print(
            "Note: other processes competed for the CPU during this run, so wall times are noisy;\n"
            "      the cpu column and the per-generation ratios show how far to trust a ratio."
        )
