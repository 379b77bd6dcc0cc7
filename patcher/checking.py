"""`check`: does the installed Keras match this tool's lock for its version?

``check_lock`` compares one flavour; ``verdict`` turns the comparisons into the
command's exit status (0, or the error to raise).
"""

from __future__ import annotations

from dataclasses import dataclass

from patcher import __version__, errors
from patcher.backup import original_sources
from patcher.enums import TextEnum
from patcher.environment import Flavour
from patcher.hashing import sha256_hex
from patcher.locks import Lock, load_lock
from patcher.planning import plan
from patcher.state import FlavourState, State, inspect


class LockStatus(TextEnum):
    OK = "ok"
    DRIFT = "drift"
    NO_LOCK = "no-lock"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class LockCheck:
    """One flavour compared with its lock: the status, why, and the live files' state."""

    flavour: Flavour
    status: LockStatus
    problems: tuple[str, ...] = ()
    state: State | None = None  # pristine / patched / ... of the live files, when compared


def check_lock(flavour: Flavour) -> LockCheck:
    lock = load_lock(flavour.distribution, flavour.version)
    if lock is None:
        return LockCheck(
            flavour,
            LockStatus.NO_LOCK,
            (f"no lock for {flavour.key} in convlstm-patch {__version__}: the patch is unchecked",),
        )
    if not lock.supported and flavour.layout is None:
        return LockCheck(
            flavour, LockStatus.UNSUPPORTED, (f"{flavour.key} has no ConvLSTM source convlstm-patch can patch",)
        )
    if lock.layout != (flavour.layout.name if flavour.layout else None):
        found = f"layout is {flavour.layout and flavour.layout.name}, lock says {lock.layout}"
        return LockCheck(flavour, LockStatus.DRIFT, (flavour.why_unsupported or found,))
    if lock.tool_version != __version__:
        return LockCheck(
            flavour,
            LockStatus.DRIFT,
            (f"lock was made by convlstm-patch {lock.tool_version}, this is {__version__}; run scripts/update_locks.py",),
        )
    state = inspect(flavour)
    problems = tuple(_compare(flavour, lock, state))
    return LockCheck(flavour, LockStatus.DRIFT if problems else LockStatus.OK, problems, state.overall)


def verdict(results: list[LockCheck], strict: bool) -> None:
    """Raise the error that gives `check` its exit status: drift 1, unsupported 4, no lock 10 (1 if strict)."""
    by_status = {result.status: result for result in reversed(results)}  # the first of each status
    if LockStatus.DRIFT in by_status or (strict and LockStatus.NO_LOCK in by_status):
        failed = by_status.get(LockStatus.DRIFT) or by_status[LockStatus.NO_LOCK]
        raise errors.CheckFailed(
            f"{failed.flavour.key}: {failed.problems[0]}; do not apply until convlstm-patch supports it"
        )
    if LockStatus.UNSUPPORTED in by_status:
        raise errors.Unsupported(
            f"{by_status[LockStatus.UNSUPPORTED].problems[0]} (see README, 'Supported Keras versions')"
        )
    if LockStatus.NO_LOCK in by_status:
        raise errors.NoLock(
            f"{by_status[LockStatus.NO_LOCK].problems[0]}; apply still works and relies on verification (--strict: fail)"
        )


def _compare(flavour: Flavour, lock: Lock, state: FlavourState) -> list[str]:
    problems = []
    names = {target.relative for target in flavour.files}
    unlocked = [str(s) for s in flavour.layer_sets if str(s) not in lock.layer_sets]
    if unlocked:
        return [f"the lock of {flavour.key} has no {unlocked[0]} files: this version's {unlocked[0]} source is not one the patch fits"]
    # The lock covers every layer set; the install is compared for the sets it acts on.
    locked = {relative for relative in lock.files if _layer_set_of(flavour, relative) in flavour.layer_sets}
    if names != locked:
        return [f"files {sorted(names ^ locked)} differ between the install and the lock"]
    try:
        originals = original_sources(flavour, state.manifest)
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
        if file.state not in (State.PRISTINE, State.PATCHED):
            problems.append(f"{file.target.relative}: live file is {file.state} ({file.note})")
        elif file.state == State.PATCHED and file.sha256 != lock.files[file.target.relative].patched:
            problems.append(f"{file.target.relative}: live patched file differs from the locked output")
    return problems


def _layer_set_of(flavour: Flavour, relative: str):
    """The layer set a locked file belongs to, from the flavour's layout (None: none we know)."""
    if flavour.layout is None:
        return None
    package = relative.split("/")[0]
    for layer_set in flavour.layout.known_sets:
        if any(path == relative for path, _ in flavour.layout.paths_for(package, layer_set)):
            return layer_set
    return None
