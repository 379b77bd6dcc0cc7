"""Running the benchmark: throwaway copies of Keras, timed subprocesses (A), and the
training workers (B), each a fresh process that steps on request (scripts/bench.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_cases import (
    BATCH,
    FLAVOURS,
    PER_GATE,
    SAME_FUNCTIONS,
    VARIANTS,
    Plan,
    ToolCommand,
    patcher,
    site_of,
    variants_of,
)
from pristine import copy_pristine

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().with_name("bench.py")  # the workers run `bench.py --worker VARIANT`


SUBPROCESS_TIMEOUT = 900


# Workers compute single-threaded: on a small shared machine, multi-threaded
# kernels turn every competing process into large random stalls.
WORKER_THREADS = dict.fromkeys(
    ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"), "1"
)


STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"  [{time.perf_counter() - STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


class SubprocessFailed(Exception):
    def __init__(self, label: str, returncode: int | None, stderr: str) -> None:
        super().__init__(label)
        self.label, self.returncode, self.stderr = label, returncode, stderr


def make_site(folder: Path) -> Path:
    """A throwaway site-packages with pristine keras and tf_keras, even when this environment is patched."""
    folder.mkdir(parents=True)
    for name in FLAVOURS:
        copy_pristine(name, folder)
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
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,  # a failure is reported with its stderr, below
        )
    except subprocess.TimeoutExpired as error:
        raise SubprocessFailed(label, None, f"timed out after {SUBPROCESS_TIMEOUT} s\n{error.stderr or ''}") from None
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SubprocessFailed(label, completed.returncode, completed.stderr)
    return elapsed


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


def prepare_sites(tmp: Path, home: Path, layer_sets: tuple[str, ...] | list[str] = ("convlstm",)) -> dict[str, Path]:
    """pristine: never patched; scratch: apply/revert cycles; patched: applied once (ConvLSTM, both flavours);
    patched_rnn (with --layers lstm/gru): applied once with those sets, for part B only."""
    names = ["pristine", "scratch", "patched"] + (["patched_rnn"] if list(layer_sets) != ["convlstm"] else [])
    sites = {name: make_site(tmp / name) for name in names}
    apply = patcher("apply", "--keras-root", str(sites["patched"]), "--no-verify")  # both flavours
    run("patcher apply (setup)", apply, environment(sites["patched"], home))
    if "patched_rnn" in sites:
        apply = patcher("apply", "--keras-root", str(sites["patched_rnn"]), "--no-verify", "--only", "keras")
        apply += ["--layers", ",".join(layer_sets)]
        run("patcher apply --layers (setup)", apply, environment(sites["patched_rnn"], home))
    # Untimed: loads TensorFlow's libraries into the page cache and writes the
    # bytecode of the freshly patched files, so the first timed round is no outlier.
    for name in ("pristine", "patched"):
        run("import keras (warm-up)", [sys.executable, "-c", "import keras"], environment(sites[name], home))
    return sites


@dataclass
class Worker:
    variant: str
    process: subprocess.Popen
    stderr_path: Path
    info: dict = field(default_factory=dict)

    @classmethod
    def start(
        cls, variant: str, site: Path, home: Path, backend: str, warmup: int, logs: Path, layer_set: str = "convlstm"
    ) -> Worker:
        stderr_path = logs / f"{backend}-{layer_set}-{variant}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(BENCH),
                    "--worker",
                    variant,
                    "--warmup",
                    str(warmup),
                    "--worker-layers",
                    layer_set,
                ],
                cwd=ROOT,
                env={**environment(site, home, backend), **WORKER_THREADS},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                bufsize=1,
            )
        return cls(variant, process, stderr_path)

    def receive(self) -> dict | list:
        line = self.process.stdout.readline()
        if not line:
            returncode = self.process.wait()
            raise SubprocessFailed(f"training worker {self.variant}", returncode, self.stderr_path.read_text())
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


def start_workers(
    backend: str, sites: dict[str, Path], home: Path, plan: Plan, logs: Path, layer_set: str = "convlstm"
) -> dict[str, Worker]:
    # Warm-up is untimed, so the processes may start and compile side by side.
    workers = {}
    try:
        for variant in variants_of(layer_set):
            site = sites[site_of(variant, layer_set)]
            workers[variant] = Worker.start(variant, site, home, backend, plan.warmup, logs, layer_set)
        for variant, worker in workers.items():
            worker.info = worker.receive()
            check_worker(worker, sites[site_of(variant, layer_set)])
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
        problems.append(f"the layer is {'' if worker.info['patched'] else 'not '}patched")
    if problems:
        raise SubprocessFailed(f"training worker {worker.variant}", None, "; ".join(problems))


def enough_rounds(done: int, elapsed: float, plan: Plan, variants: int) -> bool:
    # Stop only after whole rotations, so each variant ran first, second and third equally often.
    return done % variants == 0 and done >= plan.min_rounds and elapsed >= plan.seconds


def time_generation(
    backend: str, sites: dict[str, Path], home: Path, plan: Plan, logs: Path, layer_set: str = "convlstm"
) -> dict[str, list]:
    """Per variant, one (wall, cpu) step per round; a round steps every variant once.

    Single steps in rotating order keep the variants' samples moments apart, so
    load from other processes, which comes and goes, falls on all of them alike.
    """
    workers = start_workers(backend, sites, home, plan, logs, layer_set)
    variants = variants_of(layer_set)
    samples: dict[str, list] = {variant: [] for variant in variants}
    start, rounds = time.perf_counter(), 0
    try:
        while not enough_rounds(rounds, time.perf_counter() - start, plan, len(variants)):
            for variant in rotated(variants, rounds):
                samples[variant].append(workers[variant].step())
            rounds += 1
    finally:
        for worker in workers.values():
            worker.stop()
    return samples


def time_layers(
    backend: str, sites: dict[str, Path], home: Path, plan: Plan, logs: Path, layer_set: str = "convlstm"
) -> list[dict[str, list]]:
    """Several generations of processes: identical processes can differ by 20% in
    CPU time per step for their whole life, which no amount of alternation cancels."""
    generations = []
    for index in range(plan.generations):
        progress(f"B. {backend} {layer_set}: generation {index + 1}/{plan.generations}")
        generations.append(time_generation(backend, sites, home, plan, logs, layer_set))
    return generations


def worker_main(variant: str, warmup: int, layer_set: str = "convlstm") -> None:
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

    class_name, shape, per_gate, _ = PER_GATE[layer_set]
    kwargs = {"five": per_gate, "same": SAME_FUNCTIONS.get(layer_set)}.get(variant) or VARIANTS[variant][1]
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape, batch_size=BATCH)
    if layer_set == "convlstm":
        hidden = keras.layers.ConvLSTM2D(16, 3, padding="same", **kwargs)(inputs)
        hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    else:
        hidden = getattr(keras.layers, class_name)(64, **kwargs)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, *shape)).astype("float32")
    y = rng.normal(size=(BATCH, 1)).astype("float32")

    def steps(count: int) -> list[tuple[float, float]]:
        times = []
        for _ in range(count):
            wall, cpu = time.perf_counter(), time.process_time()
            model.train_on_batch(x, y)  # returns the loss as a number, so the step has finished
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
        return times

    steps(warmup)
    new_name = next(iter(per_gate))
    patched = new_name in inspect.signature(getattr(keras.layers, class_name)).parameters
    ready = {"keras": keras.__file__, "backend": keras.backend.backend(), "patched": patched}
    protocol.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        protocol.write(json.dumps(steps(int(line))) + "\n")
