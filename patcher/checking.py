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
from patcher.layersets import FUSED_SETS, LayerSet
from patcher.locks import Lock, lock_for
from patcher.planning import patch_sources, unguarded
from patcher.snapshot import FlavourSnapshot, State


class LockStatus(TextEnum):
    OK = "ok"
    DRIFT = "drift"
    NO_LOCK = "no-lock"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class LockCheck:
    """One flavour compared with its lock: the status, why, what was checked, and the live files' state."""

    flavour: Flavour
    status: LockStatus
    problems: tuple[str, ...] = ()
    state: State | None = None  # pristine / patched / ... of the live files, when compared
    checked: tuple[str, ...] = ()  # what was compared and held (said even with no lock)


def check_lock(snapshot: FlavourSnapshot) -> LockCheck:
    """The flavour's focus sets (those patched, else those apply would patch) compared with its version's lock.

    Without a lock (a release newer than this tool, a nightly) everything that
    needs none is still checked, and said: the patch fits the source, the
    live patched files are its output, every fused call site is guarded.
    """
    flavour = snapshot.flavour
    lock = lock_for(flavour)
    if flavour.layout is None and (lock is None or not lock.supported):
        status = LockStatus.NO_LOCK if lock is None else LockStatus.UNSUPPORTED
        return LockCheck(flavour, status, (f"{flavour.key} has no ConvLSTM source convlstm-patch can patch",))
    if lock is not None and lock.layout != (flavour.layout.name if flavour.layout else None):
        found = f"layout is {flavour.layout and flavour.layout.name}, lock says {lock.layout}"
        return LockCheck(flavour, LockStatus.DRIFT, (flavour.why_unsupported or found,))
    problems, checked = _compare(snapshot, lock, snapshot.focus())
    if problems:
        return LockCheck(flavour, LockStatus.DRIFT, tuple(problems), snapshot.overall(), tuple(checked))
    if lock is None:
        missing = (
            f"no lock for {flavour.key} ({flavour.layout.label if flavour.layout else 'no layout'}) in "
            f"convlstm-patch {__version__}: its pristine source is not compared "
            "with a released one, and the patch's output not with a reviewed one",
        )
        return LockCheck(flavour, LockStatus.NO_LOCK, missing, snapshot.overall(), tuple(checked))
    return LockCheck(flavour, LockStatus.OK, (), snapshot.overall(), tuple(checked))


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


def _compare(snapshot: FlavourSnapshot, lock: Lock | None, layer_sets: tuple[LayerSet, ...]) -> tuple[list[str], list[str]]:
    """(problems, what was checked): with the lock when there is one, and what needs none."""
    flavour = snapshot.flavour
    names = ", ".join(map(str, layer_sets))
    if lock is not None:
        unlocked = [str(s) for s in layer_sets if str(s) not in lock.layer_sets]
        if unlocked:
            return [f"the lock of {flavour.key} has no {unlocked[0]} files: this version's {unlocked[0]} source is not one the patch fits"], []
    files = snapshot.files_of(layer_sets)
    if lock is not None:
        missing = sorted({file.target.relative for file in files} - set(lock.files))
        if missing:
            return [f"files {missing} differ between the install and the lock"], []
    try:
        originals = {file.target.relative: snapshot.original(file.target) for file in files}
    except errors.PatchError as error:
        return [error.message], []
    problems, checked = [], []
    if lock is not None:
        for relative, data in originals.items():
            expected = lock.files[relative].pristine
            if sha256_hex(data) != expected:
                problems.append(f"{relative}: pristine sha256 {sha256_hex(data)[:16]}… expected {expected[:16]}…")
        if problems:
            return problems, checked
        checked.append(f"the pristine source of {names} is the released one (the lock's sha256)")
    # Each file as the patch makes it for the sets in focus (and those patched beside them).
    applied = tuple(dict.fromkeys((*layer_sets, *snapshot.patched_sets)))
    try:
        patched, _ = patch_sources(flavour, [(file.target, originals[file.target.relative], applied) for file in files])
    except errors.TransformFailed as error:
        return [error.message], checked
    checked.append(f"the patch of {names} fits this source (transformed and compiled)")
    if lock is not None:
        for relative, data in patched.items():
            expected = lock.files[relative].patched_for(file_sets(snapshot, relative, applied))
            if expected is None or sha256_hex(data) != expected:
                problems.append(f"{relative}: patched sha256 {sha256_hex(data)[:16]}… expected {(expected or '?')[:16]}…")
        if not problems:
            checked.append("its output is the locked one")
    try:
        sites = unguarded(flavour, patched, applied)
    except errors.TransformFailed as error:  # a module of the package that does not parse
        return [*problems, error.message], checked
    problems += [f"fused kernel call site the patch does not guard: {site}" for site in sites]
    if any(layer_set in FUSED_SETS for layer_set in applied) and not sites:
        checked.append("every fused LSTM/GRU kernel call site in the package is guarded")
    for file in files:
        if file.state not in (State.PRISTINE, State.PATCHED):
            problems.append(f"{file.target.relative}: live file is {file.state} ({file.note})")
        elif file.state == State.PATCHED and file.sha256 != sha256_hex(patched[file.target.relative]):
            problems.append(f"{file.target.relative}: live patched file differs from the patch's output")
    if any(file.state == State.PATCHED for file in files) and not problems:
        checked.append("the live patched files are that output")
    return problems, checked


def file_sets(snapshot: FlavourSnapshot, relative: str, applied) -> tuple[LayerSet, ...]:
    """The sets applied to one file: those it belongs to among ``applied``."""
    target = next(file.target for file in snapshot.files if file.target.relative == relative)
    return tuple(s for s in applied if s in target.layer_sets)
