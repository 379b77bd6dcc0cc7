"""Run the verification probe in a fresh process of the target interpreter.

The probe (patcher/probe/runner.py) makes a few assertions about the patched
layers, each a ProbeCheck of the flavour's Report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from patcher import errors
from patcher.environment import Flavour, TargetFile
from patcher.layersets import REGISTRY, LayerSet
from patcher.snapshot import Snapshot, State
from patcher.store import Manifest, backup_copy

PROBE = Path(__file__).resolve().parent / "probe" / "runner.py"
RNN_PROBE = Path(__file__).resolve().parent / "probe" / "rnn_runner.py"
DEFAULT_TIMEOUT = 600  # seconds
BACKENDS = ("tensorflow", "jax", "torch")  # the Keras 3 backends --backend accepts


@dataclass(frozen=True)
class VerifyOptions:
    """How `apply` and `verify` run the probe, and where their progress lines go."""

    python: str | None = None  # the target interpreter (None: this one)
    backends: tuple[str, ...] = ()  # Keras 3 is also verified under these
    timeout: float = DEFAULT_TIMEOUT
    on_progress: Callable[[str], None] | None = None

    def labelled(self, label: str) -> Callable[[str], None] | None:
        """on_progress with every line prefixed by ``label``."""
        on_progress = self.on_progress
        if on_progress is None:
            return None
        return lambda line: on_progress(f"{label}: {line}")


@dataclass(frozen=True)
class ProbeCheck:
    """One assertion of the probe about the patched layers."""

    name: str
    passed: bool
    detail: str
    value: float | None = None


@dataclass
class Report:
    flavour: Flavour
    backend: str | None
    checks: list[ProbeCheck] = field(default_factory=list)

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


def what_to_verify(snapshot: Snapshot, layers) -> list[Verifiable]:
    """From a snapshot: every flavour, for the layer sets in focus (--layers, else those patched)."""
    return [Verifiable(flavour.flavour, flavour.focus(layers), flavour.manifest) for flavour in snapshot.flavours]


def verify_all(items: list[Verifiable], options: VerifyOptions) -> list[Report]:
    """One fresh subprocess per flavour and backend (Keras 3 only is multi-backend)."""
    reports = []
    for item in items:
        multi_backend = item.flavour.layout is not None and item.flavour.layout.name == "keras3"
        runs = (None, *options.backends) if multi_backend else (None,)
        for backend in dict.fromkeys(runs):
            reports.append(verify(item, options, backend))
    return reports


def verdict(reports: list[Report], snapshot: Snapshot) -> None:
    """Raise the error that gives `verify` its exit status (9) if a report failed."""
    failed = next((report for report in reports if not report.passed), None)
    if failed is not None:
        flavour = next(item for item in snapshot.flavours if item.flavour == failed.flavour)
        advice = (
            "run `convlstm-patch revert` then `convlstm-patch apply` to repatch"
            if flavour.overall() == State.PATCHED
            else "it is not patched: run `convlstm-patch apply`"
        )
        raise errors.VerificationFailed(f"{failed.label} failed check '{failed.first_failure.name}'; {advice}")


def verify(item: Verifiable, options: VerifyOptions, backend: str | None = None) -> Report:
    """Run the probes of the flavour's layer sets on its Keras in a subprocess; a crash or hang is a failed ProbeCheck."""
    flavour = item.flavour
    report = Report(flavour, backend)
    if LayerSet.CONVLSTM in item.layer_sets:
        cell_file = _cell_file(flavour, LayerSet.CONVLSTM)
        command = [
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
        ]
        if item.manifest is not None and item.manifest.file(cell_file.relative):
            command += ["--pristine", str(backup_copy(flavour, cell_file.relative))]
        _probe(report, command, flavour, backend, options)
    rnn_command = _rnn_command(item, options)
    if rnn_command is not None:
        _probe(report, rnn_command, flavour, backend, options)
    return report


def _cell_file(flavour: Flavour, layer_set: LayerSet) -> TargetFile:
    """The file of a layer set that holds its cell (the probe imports that module)."""
    return next(target for target in flavour.files if layer_set in target.layer_sets and "cell" in target.classes.values())


def _module(target: TargetFile) -> str:
    return target.relative[: -len(".py")].replace("/", ".")


def _rnn_command(item: Verifiable, options: VerifyOptions) -> list[str] | None:
    """The LSTM/GRU probe for the flavour's further layer sets (none: ConvLSTM only)."""
    flavour = item.flavour
    sets = [layer_set for layer_set in item.layer_sets if REGISTRY[layer_set].probe == RNN_PROBE.name]
    if not sets:
        return None
    command = [options.python or sys.executable, str(RNN_PROBE), "--site", str(flavour.site), "--package", flavour.package]
    for layer_set in sets:
        cell_file = _cell_file(flavour, layer_set)
        command += ["--layer-set", f"{layer_set}={_module(cell_file)}"]
        if item.manifest is not None and item.manifest.file(cell_file.relative) is not None:
            command += ["--pristine", f"{layer_set}={backup_copy(flavour, cell_file.relative)}"]
    return command


def _probe(report: Report, command: list[str], flavour: Flavour, backend: str | None, options: VerifyOptions) -> None:
    """Run one probe process and add its checks to the report."""
    on_progress = options.labelled(report.label)
    try:
        stdout, returncode, timed_out = _run(command, _environment(flavour, backend), options.timeout, on_progress)
    except OSError as error:
        report.checks.append(ProbeCheck("run", False, f"could not start {command[0]}: {error.strerror}"))
        return
    if timed_out:
        report.checks.append(ProbeCheck("run", False, f"verification did not finish within {options.timeout:.0f} s"))
        return
    try:
        document = json.loads(stdout.strip().splitlines()[-1])
        report.checks.extend(ProbeCheck(**entry) for entry in document["checks"])
        report.backend = document.get("backend", backend)
    except (ValueError, IndexError, KeyError, TypeError):
        report.checks.append(ProbeCheck("run", False, f"verification process crashed (exit code {returncode})"))


def _environment(flavour: Flavour, backend: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend:
        env["KERAS_BACKEND"] = backend
    return env


def _run(command, env, timeout, on_progress) -> tuple[str, int, bool]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True
    )
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        process.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        # stdout is one short JSON line, so reading stderr first cannot deadlock.
        for line in process.stderr:
            if on_progress and line.startswith(("check ", "importing ")):
                on_progress(line.strip())
        stdout = process.stdout.read()
        returncode = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:  # interrupted (Ctrl-C): never leave the probe running
            process.kill()
            process.wait()
    return stdout, returncode, killed.is_set()
