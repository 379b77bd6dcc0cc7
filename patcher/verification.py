"""Run the verification probe in a fresh process of the target interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from patcher.backup import backup_copy, read_manifest
from patcher.environment import Flavour

PROBE = Path(__file__).resolve().parent / "probe" / "runner.py"
DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    value: float | None = None


@dataclass
class Report:
    flavour: Flavour
    backend: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((check for check in self.checks if not check.passed), None)


def verify(
    flavour: Flavour,
    *,
    python: str | None = None,
    backend: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    on_progress: Callable[[str], None] | None = None,
) -> Report:
    """Check the flavour's Keras in a subprocess; a crash or hang is a failed check."""
    cell_file = next(target for target in flavour.files if "cell" in target.classes.values())
    command = [
        python or sys.executable,
        str(PROBE),
        "--package",
        cell_file.relative.split("/")[0],
        "--cell-module",
        cell_file.relative[: -len(".py")].replace("/", "."),
    ]
    manifest = read_manifest(flavour)
    if manifest is not None:
        command += ["--pristine", str(backup_copy(flavour, cell_file.relative))]
    report = Report(flavour, backend)
    try:
        stdout, returncode, timed_out = _run(command, _environment(flavour, backend), timeout, on_progress)
    except OSError as error:
        report.checks.append(Check("run", False, f"could not start {command[0]}: {error.strerror}"))
        return report
    if timed_out:
        report.checks.append(Check("run", False, f"verification did not finish within {timeout:.0f} s"))
        return report
    try:
        document = json.loads(stdout.strip().splitlines()[-1])
        report.checks.extend(Check(**check) for check in document["checks"])
        report.backend = document.get("backend", backend)
    except (ValueError, IndexError, KeyError, TypeError):
        report.checks.append(Check("run", False, f"verification process crashed (exit code {returncode})"))
    return report


def _environment(flavour: Flavour, backend: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # The flavour's folder first, so a --keras-root copy shadows any other Keras.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(flavour.site), env.get("PYTHONPATH")]))
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
    return stdout, returncode, killed.is_set()
