"""`check`: does the installed Keras match this tool's lock for its version?"""

from __future__ import annotations

from dataclasses import dataclass, field

from patcher import __version__, errors
from patcher.environment import Flavour
from patcher.hashing import sha256_hex
from patcher.locks import Lock, load_lock
from patcher.operations import original_sources
from patcher.planning import plan
from patcher.state import PATCHED, PRISTINE, inspect

OK = "ok"
DRIFT = "drift"
NO_LOCK = "no-lock"
UNSUPPORTED = "unsupported"


@dataclass
class CheckResult:
    flavour: Flavour
    status: str
    problems: list[str] = field(default_factory=list)
    state: str | None = None  # pristine / patched / ... of the live files


def check(flavour: Flavour) -> CheckResult:
    lock = load_lock(flavour.distribution, flavour.version)
    if lock is None:
        return CheckResult(
            flavour, NO_LOCK, [f"no lock for {flavour.key} in convlstm-patch {__version__}: the patch is unchecked"]
        )
    if not lock.supported and flavour.layout is None:
        return CheckResult(flavour, UNSUPPORTED, [f"{flavour.key} has no ConvLSTM source convlstm-patch can patch"])
    if lock.layout != (flavour.layout.name if flavour.layout else None):
        return CheckResult(flavour, DRIFT, [f"layout is {flavour.layout and flavour.layout.name}, lock says {lock.layout}"])
    if lock.tool_version != __version__:
        return CheckResult(
            flavour,
            DRIFT,
            [f"lock was made by convlstm-patch {lock.tool_version}, this is {__version__}; run scripts/update_locks.py"],
        )
    state = inspect(flavour)
    problems = _compare(flavour, lock, state)
    return CheckResult(flavour, DRIFT if problems else OK, problems, state.state)


def _compare(flavour: Flavour, lock: Lock, state) -> list[str]:
    problems = []
    names = {target.relative for target in flavour.files}
    if names != set(lock.files):
        return [f"files {sorted(names ^ set(lock.files))} differ between the install and the lock"]
    try:
        originals = original_sources(flavour, state)
    except errors.BackupProblem as error:
        return [error.message]
    for relative, data in originals.items():
        expected = lock.files[relative].pristine
        if sha256_hex(data) != expected:
            problems.append(f"{relative}: pristine sha256 {sha256_hex(data)[:16]}… expected {expected[:16]}…")
    if problems:
        return problems
    try:
        planned = plan(flavour, originals)
    except errors.TransformFailed as error:
        return [error.message]
    for item in planned:
        expected = lock.files[item.target.relative].patched
        if sha256_hex(item.patched) != expected:
            problems.append(f"{item.target.relative}: patched sha256 {sha256_hex(item.patched)[:16]}… expected {expected[:16]}…")
    for file in state.files:
        if file.state not in (PRISTINE, PATCHED):
            problems.append(f"{file.target.relative}: live file is {file.state} ({file.note})")
        elif file.state == PATCHED and file.sha256 != lock.files[file.target.relative].patched:
            problems.append(f"{file.target.relative}: live patched file differs from the locked output")
    return problems
