"""`check`: does the installed Keras match this tool's lock for its version?

``check_lock`` compares one flavour; ``verdict`` turns the comparisons into the
command's exit status (0, or the error to raise).
"""

from __future__ import annotations

from dataclasses import dataclass

from patcher import __version__, errors
from patcher.enums import TextEnum
from patcher.environment import Flavour
from patcher.hashing import sha256_hex
from patcher.layersets import LayerSet
from patcher.locks import Lock, load_lock
from patcher.planning import patch_sources, unguarded
from patcher.snapshot import FlavourSnapshot, State


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


def check_lock(snapshot: FlavourSnapshot, layers: frozenset[LayerSet] | None = None) -> LockCheck:
    """The flavour's focus sets (--layers, else those patched) compared with its version's lock."""
    flavour = snapshot.flavour
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
    problems = tuple(_compare(snapshot, lock, snapshot.focus(layers)))
    return LockCheck(flavour, LockStatus.DRIFT if problems else LockStatus.OK, problems, snapshot.overall(layers))


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


def _compare(snapshot: FlavourSnapshot, lock: Lock, layer_sets: tuple[LayerSet, ...]) -> list[str]:
    flavour = snapshot.flavour
    unlocked = [str(s) for s in layer_sets if str(s) not in lock.layer_sets]
    if unlocked:
        return [f"the lock of {flavour.key} has no {unlocked[0]} files: this version's {unlocked[0]} source is not one the patch fits"]
    files = snapshot.files_of(layer_sets)
    names = {file.target.relative for file in files}
    missing = sorted(names - set(lock.files))
    if missing:
        return [f"files {missing} differ between the install and the lock"]
    try:
        originals = {file.target.relative: snapshot.original(file.target) for file in files}
    except errors.PatchError as error:
        return [error.message]
    problems = []
    for relative, data in originals.items():
        expected = lock.files[relative].pristine
        if sha256_hex(data) != expected:
            problems.append(f"{relative}: pristine sha256 {sha256_hex(data)[:16]}… expected {expected[:16]}…")
    if problems:
        return problems
    # Each file as the patch makes it for the sets in focus (and those patched beside them).
    applied = tuple(dict.fromkeys((*layer_sets, *snapshot.patched_sets)))
    try:
        patched, _ = patch_sources(flavour, [(file.target, originals[file.target.relative], applied) for file in files])
    except errors.TransformFailed as error:
        return [error.message]
    for relative, data in patched.items():
        expected = lock.files[relative].patched_for(file_sets(snapshot, relative, applied))
        if expected is None or sha256_hex(data) != expected:
            problems.append(f"{relative}: patched sha256 {sha256_hex(data)[:16]}… expected {(expected or '?')[:16]}…")
    problems += [f"fused kernel call site the patch does not guard: {site}" for site in unguarded(flavour, patched, applied)]
    for file in files:
        if file.state not in (State.PRISTINE, State.PATCHED):
            problems.append(f"{file.target.relative}: live file is {file.state} ({file.note})")
        elif file.state == State.PATCHED and file.sha256 != sha256_hex(patched[file.target.relative]):
            problems.append(f"{file.target.relative}: live patched file differs from the locked output")
    return problems


def file_sets(snapshot: FlavourSnapshot, relative: str, applied) -> tuple[LayerSet, ...]:
    """The sets applied to one file: those it belongs to among ``applied``."""
    target = next(file.target for file in snapshot.files if file.target.relative == relative)
    return tuple(s for s in applied if s in target.layer_sets)
