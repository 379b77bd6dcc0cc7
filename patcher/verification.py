"""Run the verification probes, each in a fresh process of the target interpreter.

The probes (patcher/probe/runner.py for ConvLSTM, rnn_runner.py for LSTM and
GRU) make a few assertions about the patched layers, each a ProbeCheck of the
flavour's Report. The probes of all flavours and backends run side by side,
as many at once as there are usable cores (at most MAX_PARALLEL): a probe is
mostly one busy thread (importing TensorFlow), so two flavours take about as
long as one.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from patcher import errors, processes
from patcher.environment import Flavour, TargetFile
from patcher.layersets import REGISTRY, LayerSet
from patcher.probe import answer
from patcher.snapshot import Snapshot, State
from patcher.store import Manifest, backup_copy

PROBE = Path(__file__).resolve().parent / "probe" / "runner.py"
RNN_PROBE = Path(__file__).resolve().parent / "probe" / "rnn_runner.py"
DEFAULT_TIMEOUT = 600  # seconds
# A probe is about one busy core and 0.7 GB (TensorFlow imported): at most one per
# usable core, and never so many that memory, not the CPU, becomes the limit.
MAX_PARALLEL = 4
# The longest the runner waits without looking up: a Ctrl-C is noticed by then even
# where a blocked wait is not interrupted by it (Windows).
WAKE = 0.5  # seconds
EXIT_POLL = 0.02  # seconds between looks at a probe that closed its pipes but has not exited yet
BACKENDS = ("tensorflow", "jax", "torch")  # the Keras 3 backends --backend accepts
KERAS3_DEFAULT_BACKEND = "tensorflow"  # what Keras 3 uses when nothing names one
ProbeCommand = tuple[tuple[LayerSet, ...], list[str]]  # a probe's command line, with the layer sets it checks


@dataclass(frozen=True)
class VerifyOptions:
    """How `apply` and `verify` run the probe, and where their progress lines go."""

    python: str | None = None  # the target interpreter (None: this one)
    backends: tuple[str, ...] = ()  # Keras 3 is also verified under these
    timeout: float = DEFAULT_TIMEOUT  # seconds, for each probe process on its own
    on_progress: Callable[[str], None] | None = None

    def labelled(self, label: str) -> Callable[[str], None] | None:
        """on_progress with every line prefixed by ``label``."""
        on_progress = self.on_progress
        if on_progress is None:
            return None
        return lambda line: on_progress(f"{label}: {line}")


@dataclass(frozen=True)
class ProbeCheck:
    """One assertion of the probe about the patched layers of one layer set (in --json as
    "layer_set": "convlstm", "lstm" or "gru"; scripts/matrix.py reads it)."""

    name: str
    passed: bool
    detail: str
    layer_set: LayerSet
    value: float | None = None


@dataclass
class Report:
    flavour: Flavour
    backend: str | None
    checks: list[ProbeCheck] = field(default_factory=list)
    timed_out: float | None = None  # the --timeout (seconds) one of its probes exceeded, if one did

    @property
    def label(self) -> str:
        return self.flavour.key + (f" [{self.backend}]" if self.backend else "")

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(probe_check.passed for probe_check in self.checks)

    @property
    def first_failure(self) -> ProbeCheck | None:
        return next((probe_check for probe_check in self.checks if not probe_check.passed), None)


@dataclass(frozen=True)
class Verifiable:
    """A flavour to verify: the layer sets to check, and its backup (for the pristine copies)."""

    flavour: Flavour
    layer_sets: tuple[LayerSet, ...]
    manifest: Manifest | None


def what_to_verify(snapshot: Snapshot) -> list[Verifiable]:
    """From a snapshot: every flavour, for the layer sets it has patched."""
    return [Verifiable(flavour.flavour, flavour.focus(), flavour.manifest) for flavour in snapshot.flavours]


def verify_all(items: list[Verifiable], options: VerifyOptions) -> list[Report]:
    """Every flavour under each distinct backend (Keras 3 only is multi-backend), one report each.

    Each probe is its own fresh process with its own timeout; up to
    one per usable core (at most MAX_PARALLEL) run side by side (the flavours, their backends,
    and a flavour's ConvLSTM and LSTM/GRU probes alike). The reports come in
    the order of the items, each report's checks in the order of its probes,
    whatever order the probes end in.
    """
    reports, runs = [], []
    for item in items:
        for backend in _distinct_backends(item.flavour, options):
            report = Report(item.flavour, backend)
            reports.append(report)
            runs += _runs(item, report, options)
    _run_side_by_side(runs, options)
    _collect(runs)
    return _without_repeats(reports)


def default_backend(env: Mapping[str, str]) -> str | None:
    """The backend Keras 3 picks in a process with this environment, found without importing it.

    As keras/src/backend/config.py does it: a non-empty KERAS_BACKEND, else
    "backend" in keras.json of $KERAS_HOME, or of ~/.keras (/tmp/.keras when
    the home folder is not writable), else tensorflow. None when Keras would
    not get that far (an unreadable keras.json, or one that is no JSON object):
    then nothing is deduplicated beforehand.
    """
    if env.get("KERAS_BACKEND"):
        return env["KERAS_BACKEND"]
    if "KERAS_HOME" in env:
        folder = env["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        folder = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.expanduser(os.path.join(folder, "keras.json"))) as file:
            config = json.load(file)
    except FileNotFoundError:
        return KERAS3_DEFAULT_BACKEND
    except ValueError:  # Keras ignores a keras.json that is not JSON
        return KERAS3_DEFAULT_BACKEND
    except OSError:
        return None
    backend = config.get("backend", KERAS3_DEFAULT_BACKEND) if isinstance(config, dict) else None
    return backend if isinstance(backend, str) else None


def _distinct_backends(flavour: Flavour, options: VerifyOptions) -> list[str | None]:
    """None (the backend the environment picks), then each --backend that differs from it."""
    if flavour.layout is None or not flavour.layout.multi_backend:
        return [None]
    default = default_backend(_environment(None))
    return [None, *(backend for backend in dict.fromkeys(options.backends) if backend and backend != default)]


def _without_repeats(reports: list[Report]) -> list[Report]:
    """Drop a passed report whose probe ran under a backend an earlier report of its flavour
    already covers (default_backend could not tell beforehand); a failure is never dropped."""
    seen, kept = set(), []
    for report in reports:
        key = (report.flavour.site, report.flavour.key, report.backend)
        if report.backend is not None and key in seen and report.passed:
            continue
        seen.add(key)
        kept.append(report)
    return kept


def verdict(reports: list[Report], snapshot: Snapshot) -> None:
    """Raise the error that gives `verify` its exit status (9) if a report failed."""
    failed = next((report for report in reports if not report.passed), None)
    if failed is not None and failed.timed_out is not None:
        raise errors.VerificationFailed(timed_out(failed, "verify"))
    if failed is not None:
        flavour = next(item for item in snapshot.flavours if item.flavour == failed.flavour)
        advice = (
            "run `convlstm-patch revert` then `convlstm-patch apply` to repatch"
            if flavour.overall() == State.PATCHED
            else "it is not patched: run `convlstm-patch apply`"
        )
        check = failed.first_failure
        what = f"failed check '{check.name}'" if check is not None else "ran no check"
        raise errors.VerificationFailed(f"{failed.label} {what}; {advice}")


def timed_out(report: Report, command: str, restored: bool = False) -> str:
    """What happened to a report whose probe exceeded --timeout (not a failed check, nothing to report
    as a bug), and what to do: ``command`` again with twice the time."""
    seconds = report.timed_out or 0.0
    return (
        f"{report.label}: verification did not finish within {_seconds(seconds)} s (timed out; its processes were "
        f"killed){', so the original files were restored' if restored else ''}; "
        f"give it longer: `convlstm-patch {command} --timeout {_seconds(2 * seconds)}`"
    )


def _seconds(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _runs(item: Verifiable, report: Report, options: VerifyOptions) -> list[_ProbeRun]:
    env = _environment(report.backend)
    return [_ProbeRun(report, command, env, sets) for sets, command in _commands(item, options)]


def _collect(runs: list[_ProbeRun]) -> None:
    """Each probe's checks into its report, in the order of the probes."""
    for run in runs:
        run.report.checks.extend(run.checks)
        if run.backend is not None:
            run.report.backend = run.backend


def _commands(item: Verifiable, options: VerifyOptions) -> list[ProbeCommand]:
    """The flavour's probe commands, each with the layer sets it checks: the ConvLSTM probe, and the
    LSTM/GRU probe, for the layer sets in focus."""
    flavour = item.flavour
    commands: list[ProbeCommand] = []
    if LayerSet.CONVLSTM in item.layer_sets:
        cell_file = _cell_file(flavour, LayerSet.CONVLSTM)
        command = processes.python_command(
            options.python or sys.executable,
            str(PROBE),
            "--package",
            flavour.package,
            "--cell-module",
            _module(cell_file),
            # The flavour's folder goes first on the probe's sys.path, so a
            # --keras-root copy shadows any other Keras. An argument, never
            # PYTHONPATH: a path-list would split a folder whose name has ':'.
            "--site",
            str(flavour.site),
        )
        if item.manifest is not None and item.manifest.file(cell_file.relative):
            command += ["--pristine", str(backup_copy(flavour, cell_file.relative))]
        commands.append(((LayerSet.CONVLSTM,), command))
    rnn_command = _rnn_command(item, options)
    if rnn_command is not None:
        commands.append(rnn_command)
    return commands


def _cell_file(flavour: Flavour, layer_set: LayerSet) -> TargetFile:
    """The file of a layer set that holds its cell (the probe imports that module)."""
    return next(
        target for target in flavour.files if layer_set in target.layer_sets and "cell" in target.classes.values()
    )


def _module(target: TargetFile) -> str:
    return target.relative[: -len(".py")].replace("/", ".")


def _rnn_command(item: Verifiable, options: VerifyOptions) -> ProbeCommand | None:
    """The LSTM/GRU probe for the flavour's further layer sets (none: ConvLSTM only)."""
    flavour = item.flavour
    sets = [layer_set for layer_set in item.layer_sets if REGISTRY[layer_set].probe == RNN_PROBE.name]
    if not sets:
        return None
    command = processes.python_command(
        options.python or sys.executable, str(RNN_PROBE), "--site", str(flavour.site), "--package", flavour.package
    )
    for layer_set in sets:
        cell_file = _cell_file(flavour, layer_set)
        command += ["--layer-set", f"{layer_set}={_module(cell_file)}"]
        if item.manifest is not None and item.manifest.file(cell_file.relative) is not None:
            command += ["--pristine", f"{layer_set}={backup_copy(flavour, cell_file.relative)}"]
    return tuple(sets), command


def _environment(backend: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend:
        env["KERAS_BACKEND"] = backend
    return env


@dataclass(eq=False)
class _ProbeRun:
    """One probe process: what it runs, and what it said once it ended."""

    report: Report
    command: list[str]
    env: dict[str, str]
    layer_sets: tuple[LayerSet, ...]  # what the probe checks
    checks: list[ProbeCheck] = field(default_factory=list)
    backend: str | None = None  # as the probe reported it
    process: subprocess.Popen | None = None
    deadline: float = 0.0
    open_streams: int = 0  # pipes whose end its reader has not yet seen
    stdout: bytes = b""
    done: bool = False  # concluded, or stopped at its timeout

    @property
    def started(self) -> subprocess.Popen:
        """Its process: only a started probe is waited on, read or stopped."""
        if self.process is None:
            raise RuntimeError("the probe was not started")
        return self.process

    def failed(self, detail: str) -> None:
        """The probe did not answer (it timed out, crashed or never started): a failed check "run"
        for each layer set it checks, named as the probe names its own (patcher/probe/common.py)."""
        self.checks.extend(_not_run(layer_set, detail) for layer_set in self.layer_sets)


def _run_side_by_side(runs: list[_ProbeRun], options: VerifyOptions) -> None:
    """Run every probe, one per usable core (at most MAX_PARALLEL) at once (in list order), each until it ends or its
    own timeout kills it; whatever ends the wait early (Ctrl-C) first kills every probe started.

    A thread per pipe reads it (portable: select() on pipes is POSIX-only; and no pipe can
    fill up and stall its probe); this thread alone acts on what they read, so progress
    lines reach on_progress whole and in order.
    """
    waiting, running = list(runs), list[_ProbeRun]()
    limit = max(1, min(_usable_cores(), MAX_PARALLEL))
    events: queue.Queue = queue.Queue()
    try:
        while waiting or running:
            while waiting and len(running) < limit:
                run = waiting.pop(0)
                if _start(run, events, options):
                    running.append(run)
            now = time.monotonic()
            for run in list(running):
                if run.deadline <= now:
                    run.report.timed_out = options.timeout
                    run.failed(f"verification did not finish within {_seconds(options.timeout)} s")
                    _stop(run)
                    running.remove(run)
                elif run.open_streams == 0 and processes.ended(run.started):
                    _conclude(run, run.started.returncode)
                    running.remove(run)
            if not running:
                continue
            # A probe whose pipes both ended is exiting: look again soon.
            exiting = any(run.open_streams == 0 for run in running)
            wait = EXIT_POLL if exiting else min(WAKE, min(run.deadline for run in running) - now)
            try:
                run, stream, data = events.get(timeout=max(wait, 0))
            except queue.Empty:
                continue
            if run in running:  # not one stopped at its timeout
                _take(run, stream, data, options)
    finally:
        for run in runs:  # interrupted (Ctrl-C, SIGTERM, SIGHUP): never leave a probe running
            if run.process is not None and not run.done:
                _stop(run)


def _start(run: _ProbeRun, events: queue.Queue, options: VerifyOptions) -> bool:
    try:
        # Its own session (POSIX): a Ctrl-C in the terminal reaches this process alone,
        # which then kills each probe with everything the probe started. No bytecode.
        run.process = processes.start(run.command, run.env)
    except OSError as error:
        run.failed(f"could not start {run.command[0]}: {error.strerror}")
        run.done = True
        return False
    run.deadline = time.monotonic() + options.timeout  # each probe's own time, not its wait for a turn
    run.open_streams = 2
    for stream in (run.started.stdout, run.started.stderr):
        threading.Thread(target=_pump, args=(run, stream, events), daemon=True).start()
    return True


def _pump(run: _ProbeRun, stream: IO[bytes], events: queue.Queue) -> None:
    """In a reader thread: stderr line by line, stdout whole (its answer, and whatever else was printed), then None."""
    try:
        with stream:
            if stream is run.started.stderr:
                for line in stream:
                    events.put((run, stream, line))
            else:
                events.put((run, stream, stream.read()))
    except (OSError, ValueError):  # the pipe closed under it: the probe was stopped
        pass
    events.put((run, stream, None))


def _take(run: _ProbeRun, stream, data: bytes | None, options: VerifyOptions) -> None:
    """One reader's news: the end of a pipe, stdout, or a stderr line (progress, labelled)."""
    if data is None:
        run.open_streams -= 1
    elif stream is run.started.stdout:
        run.stdout = data
    else:
        text = data.decode(errors="replace").strip()
        on_progress = options.labelled(run.report.label)
        if on_progress and text.startswith(("check ", "importing ")):
            on_progress(text)


def _stop(run: _ProbeRun) -> None:
    """Kill the probe and whatever it started; its readers then see the pipes end (and close them)."""
    run.done = True
    processes.kill_group(run.started, drain=False)


def _conclude(run: _ProbeRun, returncode: int) -> None:
    """The probe's checks from its JSON document, wherever the interpreter's other output put it
    (patcher/probe/answer.py); anything else is a crash."""
    run.done = True
    try:
        document = answer.find(run.stdout.decode(errors="replace"))
        checks = [_probe_check(entry) for entry in document["checks"]]
        backend = document.get("backend")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        run.failed(f"verification process crashed (exit code {returncode})")
        return
    run.checks.extend(checks)
    run.backend = backend
    # Fail closed: a layer set the answer says nothing of is not verified.
    answered = {check.layer_set for check in checks}
    run.checks.extend(
        _not_run(layer_set, "the probe's answer has no check of it")
        for layer_set in run.layer_sets
        if layer_set not in answered
    )


def _not_run(layer_set: LayerSet, detail: str) -> ProbeCheck:
    """A failed check "run" of a layer set, named as the probe names its own (patcher/probe/common.py)."""
    return ProbeCheck("run" if layer_set == LayerSet.CONVLSTM else f"{layer_set} run", False, detail, layer_set)


def _probe_check(entry: dict) -> ProbeCheck:
    """A check of the probe's JSON document (patcher/probe/common.py's entry()); an answer that
    is not one (``passed`` not true or false, an unknown layer set) is a crash, never a pass."""
    if not isinstance(entry.get("passed"), bool):
        raise ValueError("a check's passed is not true or false")
    return ProbeCheck(**{**entry, "layer_set": LayerSet(entry["layer_set"])})


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
