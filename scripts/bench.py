#!/usr/bin/env python3
"""Benchmark convlstm-patch: how fast the tool is, and how fast the patched layer trains.

    python scripts/bench.py [--quick] [--backends tensorflow,torch,jax] [--json PATH]

A. Tool speed: wall time of `python -m patcher ...` subprocesses (median of N
   rounds, command order rotated each round) next to their baselines.
B. Patched layer speed: one training step of a small ConvLSTM2D model on a
   pristine and a patched copy of Keras, per Keras 3 backend.

Everything runs on throwaway copies of the installed keras and tf_keras (package
and dist-info) in a temporary folder; the real environment is never touched.
Exit code 0 unless a subprocess fails (then 1, with the tail of its stderr).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
FLAVOURS = ("keras", "tf_keras")
# Keras 3 backend -> the modules it needs.
BACKENDS = {"tensorflow": ("tensorflow",), "torch": ("torch",), "jax": ("jax", "jaxlib")}
SUBPROCESS_TIMEOUT = 900

BATCH, INPUT_SHAPE = 8, (10, 32, 32, 3)
FIVE_DISTINCT = dict(
    activation_i="relu",
    activation_o="tanh",
    recurrent_activation_f="sigmoid",
    recurrent_activation_i="sigmoid",
    recurrent_activation_o="hard_sigmoid",
)
# variant -> (site it imports Keras from, ConvLSTM2D keyword arguments, label)
VARIANTS = {
    "pristine": ("pristine", {}, "pristine (stock), defaults"),
    "defaults": ("patched", {}, "patched, defaults"),
    "five": ("patched", FIVE_DISTINCT, "patched, five distinct"),
}


@dataclass(frozen=True)
class Plan:
    tool_repeats: int  # A: timed runs of each command
    layer_budget_s: float  # B: per backend, keep adding rounds until this much time has passed...
    min_rounds: int  # ...but at least this many (a round times one step of every variant)
    max_rounds: int
    warmup: int  # B: untimed steps per variant before the first round

    def describe(self) -> str:
        return (
            f"A: {self.tool_repeats} runs per command; B: per backend {self.warmup} warm-up steps, then rounds "
            f"of one step per variant for {self.layer_budget_s:.0f} s ({self.min_rounds}-{self.max_rounds} rounds)"
        )


FULL = Plan(tool_repeats=7, layer_budget_s=45, min_rounds=12, max_rounds=600, warmup=3)
QUICK = Plan(tool_repeats=3, layer_budget_s=10, min_rounds=3, max_rounds=600, warmup=2)


STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"  [{time.perf_counter() - STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


class SubprocessFailed(Exception):
    def __init__(self, label: str, returncode: int | None, stderr: str) -> None:
        super().__init__(label)
        self.label, self.returncode, self.stderr = label, returncode, stderr


# ---------------------------------------------------------------- setup


def copy_distribution(name: str, site: Path) -> None:
    dist = metadata.distribution(name)
    source_site = Path(dist.locate_file("")).resolve()
    info = f"{name}-{dist.version}.dist-info"
    shutil.copytree(source_site / name, site / name)
    shutil.copytree(source_site / info, site / info)


def make_site(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in FLAVOURS:
        copy_distribution(name, folder)
    return folder


def environment(site: Path, home: Path, backend: str = "tensorflow") -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(site),
        TF_CPP_MIN_LOG_LEVEL="3",
        KERAS_BACKEND=backend,
        # Keras writes keras.json into its home on import: keep that out of ~/.keras.
        KERAS_HOME=str(home),
    )
    return env


def run(label: str, argv: list[str], env: dict[str, str]) -> float:
    """Run a subprocess from the repository root; its wall time in seconds."""
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
        )
    except subprocess.TimeoutExpired as error:
        raise SubprocessFailed(label, None, f"timed out after {SUBPROCESS_TIMEOUT} s\n{error.stderr or ''}") from None
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SubprocessFailed(label, completed.returncode, completed.stderr)
    return elapsed


def patcher(*args: str) -> list[str]:
    return [sys.executable, "-m", "patcher", *args]


# ---------------------------------------------------------------- A. tool speed


@dataclass(frozen=True)
class Target:
    text: str
    met: Callable[[float, float | None], bool]  # (median seconds, ratio to baseline)


@dataclass(frozen=True)
class ToolCommand:
    key: str
    label: str
    argv: list[str]
    site: str
    baseline: str | None = None
    target: Target | None = None
    reset: list[str] | None = None  # untimed, after every timed run


def tool_commands(sites: dict[str, Path]) -> list[ToolCommand]:
    pristine, scratch, patched = (str(sites[name]) for name in ("pristine", "scratch", "patched"))
    convlstm = "import keras, numpy; keras.layers.ConvLSTM2D(2, 3)(numpy.zeros((1, 2, 8, 8, 1)))"
    return [
        ToolCommand("import_keras", 'python -c "import keras"', [sys.executable, "-c", "import keras"], "pristine"),
        ToolCommand("help", "patcher --help", patcher("--help"), "pristine", baseline="import_keras"),
        ToolCommand(
            "status",
            "patcher status",
            patcher("status", "--keras-root", pristine),
            "pristine",
            baseline="import_keras",
            target=Target("<= 0.25 s and <= 5%", lambda median, ratio: median <= 0.25 and ratio <= 0.05),
        ),
        ToolCommand(
            "apply",
            "patcher apply --no-verify",
            patcher("apply", "--keras-root", scratch, "--no-verify"),
            "scratch",
            target=Target("<= 1.0 s", lambda median, ratio: median <= 1.0),
            reset=patcher("revert", "--keras-root", scratch),
        ),
        ToolCommand("convlstm", "python -c ConvLSTM2D one-liner", [sys.executable, "-c", convlstm], "pristine"),
        ToolCommand(
            "verify",
            "patcher verify --only keras",
            patcher("verify", "--keras-root", patched, "--only", "keras"),
            "patched",
            baseline="convlstm",
            target=Target("<= 1.5x baseline", lambda median, ratio: ratio <= 1.5),
        ),
    ]


def rotated(items: list, shift: int) -> list:
    shift %= len(items)
    return items[shift:] + items[:shift]


def time_tools(commands: list[ToolCommand], sites: dict[str, Path], home: Path, repeats: int) -> dict[str, list[float]]:
    """Every command once per round, the order rotated so drift hits all alike."""
    samples: dict[str, list[float]] = {command.key: [] for command in commands}
    for round_index in range(repeats):
        for command in rotated(commands, round_index):
            env = environment(sites[command.site], home)
            samples[command.key].append(run(command.label, command.argv, env))
            if command.reset:
                run(f"{command.label} (reset)", command.reset, env)
        progress(f"A. round {round_index + 1}/{repeats} done")
    return samples


def tool_results(commands: list[ToolCommand], samples: dict[str, list[float]]) -> list[dict]:
    medians = {key: statistics.median(values) for key, values in samples.items()}
    results = []
    for command in commands:
        median = medians[command.key]
        ratio = median / medians[command.baseline] if command.baseline else None
        results.append(
            dict(
                key=command.key,
                command=command.label,
                argv=command.argv,
                median_s=median,
                samples_s=samples[command.key],
                baseline=command.baseline,
                ratio=ratio,
                target=command.target.text if command.target else None,
                passed=command.target.met(median, ratio) if command.target else None,
            )
        )
    return results


def format_ratio(result: dict) -> str:
    if result["ratio"] is None:
        return "-"
    if result["baseline"] == "import_keras":
        return f"{result['ratio']:.1%} of import keras"
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
    print()


# ---------------------------------------------------------------- B. layer speed


def worker_main(variant: str, warmup: int) -> None:
    """In a subprocess: build the model, warm up, then time steps on request.

    Protocol on the real stdout: one JSON line when ready, then for every line
    "N" read from stdin one JSON line of N [wall, cpu] step times in seconds.
    """
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    # Anything Keras or a backend prints must not corrupt the protocol.
    os.dup2(2, 1)

    import inspect

    import keras
    import numpy as np

    _, kwargs, _ = VARIANTS[variant]
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE, batch_size=BATCH)
    hidden = keras.layers.ConvLSTM2D(16, 3, padding="same", **kwargs)(inputs)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, *INPUT_SHAPE)).astype("float32")
    y = rng.normal(size=(BATCH, 1)).astype("float32")

    def steps(count: int) -> list[tuple[float, float]]:
        times = []
        for _ in range(count):
            wall, cpu = time.perf_counter(), time.process_time()
            model.train_on_batch(x, y)  # returns the loss as a number, so the step has finished
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
        return times

    steps(warmup)
    patched = "activation_i" in inspect.signature(keras.layers.ConvLSTM2D).parameters
    ready = dict(keras=keras.__file__, backend=keras.backend.backend(), patched=patched)
    protocol.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        protocol.write(json.dumps(steps(int(line))) + "\n")


@dataclass
class Worker:
    variant: str
    process: subprocess.Popen
    stderr_path: Path
    info: dict = field(default_factory=dict)

    @classmethod
    def start(cls, variant: str, site: Path, home: Path, backend: str, warmup: int, logs: Path) -> Worker:
        stderr_path = logs / f"{backend}-{variant}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--warmup", str(warmup)],
                cwd=ROOT,
                env=environment(site, home, backend),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                bufsize=1,
            )
        return cls(variant, process, stderr_path)

    def receive(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise SubprocessFailed(f"training worker {self.variant}", self.process.returncode, self.stderr_path.read_text())
        return json.loads(line)

    def step(self) -> tuple[float, float]:
        self.process.stdin.write("1\n")
        self.process.stdin.flush()
        (times,) = self.receive()
        return tuple(times)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_workers(backend: str, sites: dict[str, Path], home: Path, plan: Plan, logs: Path) -> dict[str, Worker]:
    # Warm-up is untimed, so the processes may start and compile side by side.
    workers = {}
    try:
        for variant, (site_name, _, _) in VARIANTS.items():
            workers[variant] = Worker.start(variant, sites[site_name], home, backend, plan.warmup, logs)
        for variant, worker in workers.items():
            worker.info = worker.receive()
            check_worker(worker, sites[VARIANTS[variant][0]])
    except BaseException:
        for worker in workers.values():
            worker.stop()
        raise
    return workers


def check_worker(worker: Worker, site: Path) -> None:
    """A benchmark of the wrong Keras would be worse than none."""
    expected_patched = VARIANTS[worker.variant][0] == "patched"
    problems = []
    if not Path(worker.info["keras"]).resolve().is_relative_to(site.resolve()):
        problems.append(f"imported keras from {worker.info['keras']}, not from {site}")
    if worker.info["patched"] != expected_patched:
        problems.append(f"ConvLSTM2D is {'' if worker.info['patched'] else 'not '}patched")
    if problems:
        raise SubprocessFailed(f"training worker {worker.variant}", 0, "; ".join(problems))


def enough_rounds(done: int, elapsed: float, plan: Plan) -> bool:
    # Stop only after whole rotations, so each variant ran first, second and third equally often.
    if done % len(VARIANTS):
        return False
    return done >= plan.max_rounds or (done >= plan.min_rounds and elapsed >= plan.layer_budget_s)


def time_layers(backend: str, sites: dict[str, Path], home: Path, plan: Plan, logs: Path) -> dict[str, list]:
    """Per variant, one (wall, cpu) step per round; a round steps every variant once.

    Single steps in rotating order keep the variants' samples seconds apart, so
    load from other processes, which comes and goes, falls on all of them alike.
    """
    workers = start_workers(backend, sites, home, plan, logs)
    progress(f"B. {backend}: workers ready, timing")
    samples: dict[str, list] = {variant: [] for variant in VARIANTS}
    start = time.perf_counter()
    try:
        while not enough_rounds(len(samples["pristine"]), time.perf_counter() - start, plan):
            for variant in rotated(list(VARIANTS), len(samples["pristine"])):
                samples[variant].append(workers[variant].step())
    finally:
        for worker in workers.values():
            worker.stop()
    return samples


LAYER_TARGETS = {
    "defaults": ("1.00 +/- 0.03", lambda ratio: abs(ratio - 1) <= 0.03),
    "five": ("<= 1.05", lambda ratio: ratio <= 1.05),
}


def layer_results(samples: dict[str, list]) -> dict:
    """Ratios are medians of per-round ratios: each round pairs steps run moments apart."""
    variants = {}
    for variant, steps in samples.items():
        wall, cpu = ([step[index] for step in steps] for index in (0, 1))
        entry = dict(
            label=VARIANTS[variant][2],
            rounds=len(steps),
            median_ms=statistics.median(wall) * 1e3,
            cpu_median_ms=statistics.median(cpu) * 1e3,
            wall_ms=[value * 1e3 for value in wall],
            cpu_ms=[value * 1e3 for value in cpu],
        )
        if variant in LAYER_TARGETS:
            ratios = [mine[0] / base[0] for mine, base in zip(steps, samples["pristine"])]
            cpu_ratios = [mine[1] / base[1] for mine, base in zip(steps, samples["pristine"])]
            text, met = LAYER_TARGETS[variant]
            ratio = statistics.median(ratios)
            entry.update(
                ratio=ratio,
                quartiles=quartiles(ratios),
                cpu_ratio=statistics.median(cpu_ratios),
                target=text,
                passed=met(ratio),
            )
        variants[variant] = entry
    return dict(variants=variants)


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4)
    return low, high


def print_layer_table(results: dict[str, dict], plan: Plan) -> None:
    shape = ", ".join(map(str, INPUT_SHAPE))
    print(f"B. Training step (train_on_batch): Input(batch {BATCH}, {shape}) -> ConvLSTM2D(16, 3, same)")
    print("   -> GlobalAveragePooling2D -> Dense(1), MSE, SGD.  One process per variant, warmed up, then")
    print("   rounds of one step per variant in rotating order.  ratio = median over rounds of")
    print("   variant step / pristine step (wall time), [q1 .. q3] its spread; cpu = same with CPU time.")
    header = (
        f"  {'backend':<11} {'variant':<27} {'rounds':>6} {'median ms':>9}  {'ratio':>5}  "
        f"{'[q1 .. q3]':<14}  {'cpu':>5}  {'target':<14} result"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for backend, result in results.items():
        if "skipped" in result:
            print(f"  {backend:<11} skipped: {result['skipped']}")
            continue
        name = backend
        for entry in result["variants"].values():
            if "ratio" in entry:
                low, high = entry["quartiles"]
                cells = (
                    f"{entry['ratio']:>5.3f}  [{low:.2f} .. {high:.2f}]  {entry['cpu_ratio']:>5.3f}  "
                    f"{entry['target']:<14} {verdict(entry['passed'])}"
                )
            else:
                cells = f"{'-':>5}"
            print(f"  {name:<11} {entry['label']:<27} {entry['rounds']:>6} {entry['median_ms']:>9.1f}  {cells}".rstrip())
            name = ""
    print()


# ---------------------------------------------------------------- report


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
    return dict(
        python=platform.python_version(),
        executable=sys.executable,
        platform=platform.platform(),
        cores=cores,
        usable_cores=usable,
        load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
        versions={name: version(name) for name in ("keras", "tf_keras", "tensorflow", "torch", "jax", "numpy")},
    )


def print_header(env: dict, command: str, plan: Plan, quick: bool) -> None:
    versions = ", ".join(f"{name} {value}" for name, value in env["versions"].items())
    cores = f"{env['cores']} cores" + (f" ({env['usable_cores']} usable)" if env["usable_cores"] != env["cores"] else "")
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
            "      the cpu column and the [q1 .. q3] spread show how far to trust a ratio."
        )


# ---------------------------------------------------------------- main


def parse_backends(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(BACKENDS)} (comma separated), not {text!r}")
    return list(dict.fromkeys(names))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: about 2 minutes instead of 5")
    parser.add_argument(
        "--backends",
        type=parse_backends,
        default=list(BACKENDS),
        metavar="LIST",
        help="Keras 3 backends for part B, comma separated (default: tensorflow,torch,jax; uninstalled ones are skipped)",
    )
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write all numbers as JSON to PATH")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=FULL.warmup, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def prepare_sites(tmp: Path, home: Path) -> dict[str, Path]:
    """pristine: never patched; scratch: apply/revert cycles; patched: applied once."""
    sites = {name: make_site(tmp / name) for name in ("pristine", "scratch", "patched")}
    run("apply (setup)", patcher("apply", "--keras-root", str(sites["patched"]), "--no-verify", "--only", "keras"), environment(sites["patched"], home))
    # Untimed: loads TensorFlow's libraries into the page cache and writes the
    # bytecode of the freshly patched files, so the first timed round is no outlier.
    for name in ("pristine", "patched"):
        run("import keras (warm-up)", [sys.executable, "-c", "import keras"], environment(sites[name], home))
    return sites


def benchmark(args: argparse.Namespace, plan: Plan, tmp: Path) -> tuple[list[dict], dict[str, dict]]:
    home = tmp / "keras-home"
    home.mkdir()
    progress("setting up copies of keras and tf_keras")
    sites = prepare_sites(tmp, home)

    progress("A. timing the tool")
    commands = tool_commands(sites)
    tools = tool_results(commands, time_tools(commands, sites, home, plan.tool_repeats))
    print_tool_table(tools, plan.tool_repeats)

    layers: dict[str, dict] = {}
    logs = tmp / "logs"
    logs.mkdir()
    for backend in args.backends:
        missing = missing_modules(backend)
        if missing:
            layers[backend] = dict(skipped="not installed", missing=missing)
            continue
        progress(f"B. {backend}: starting workers")
        layers[backend] = layer_results(time_layers(backend, sites, home, plan, logs))
    print_layer_table(layers, plan)
    return tools, layers


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.warmup)
        return 0
    plan = QUICK if args.quick else FULL
    command = shlex.join(["python", "scripts/bench.py", *argv])
    env = environment_report()
    started = time.perf_counter()
    print_header(env, command, plan, args.quick)
    try:
        with tempfile.TemporaryDirectory(prefix="convlstm-bench-") as tmp:
            tools, layers = benchmark(args, plan, Path(tmp))
    except SubprocessFailed as failure:
        tail = "\n".join(failure.stderr.strip().splitlines()[-25:])
        print(f"Error: {failure.label} failed (exit code {failure.returncode}); last lines of its stderr:\n{tail}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print_failures(tools, layers)
    print_load_note(env, load_end)
    print(f"Total time {elapsed:.0f} s.")
    if args.json:
        document = dict(
            command=command,
            environment=env,
            load_average_end=load_end,
            plan=vars(plan),
            quick=args.quick,
            elapsed_s=elapsed,
            tool=tools,
            layers=layers,
        )
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"Numbers written to {args.json}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
