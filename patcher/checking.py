"""`check`: does the installed Keras match this tool's pins for its version?

``check_pins`` compares one flavour; ``verdict`` turns the comparisons into the
command's exit status (0, or the error to raise).
"""

from __future__ import annotations

from dataclasses import dataclass

from patcher import __version__, errors
from patcher.enums import TextEnum
from patcher.environment import Flavour
from patcher.hashing import sha256_hex
from patcher.layersets import FUSED_SETS, LayerSet
from patcher.pins import Pins, pins_for
from patcher.planning import patch_sources, unguarded
from patcher.snapshot import FlavourSnapshot, State


class PinsStatus(TextEnum):
    OK = "ok"
    DRIFT = "drift"
    NO_PINS = "no-lock"  # the --json value of 0.1, kept: CI scripts read it
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class PinsCheck:
    """One flavour compared with its pins: the status, why, what was checked, and the live files' state."""

    flavour: Flavour
    status: PinsStatus
    problems: tuple[str, ...] = ()
    state: State | None = None  # pristine / patched / ... of the live files, when compared
    checked: tuple[str, ...] = ()  # what was compared and held (said even with no pins)


def check_pins(snapshot: FlavourSnapshot) -> PinsCheck:
    """The flavour's focus sets (those patched, else those apply would patch) compared with its version's pins.

    Without pins (a release newer than this tool, a nightly) everything that
    needs none is still checked, and said: the patch fits the source, the
    live patched files are its output, every fused call site is guarded.
    """
    flavour = snapshot.flavour
    pins = pins_for(flavour)
    if flavour.layout is None and (pins is None or not pins.supported):
        status = PinsStatus.NO_PINS if pins is None else PinsStatus.UNSUPPORTED
        return PinsCheck(flavour, status, (f"{flavour.key} has no ConvLSTM source convlstm-patch can patch",))
    if pins is not None and pins.layout != (flavour.layout.name if flavour.layout else None):
        found = f"layout is {flavour.layout and flavour.layout.name}, pins say {pins.layout}"
        return PinsCheck(flavour, PinsStatus.DRIFT, (flavour.why_unsupported or found,))
    problems, checked = _compare(snapshot, pins, snapshot.focus())
    if problems:
        return PinsCheck(flavour, PinsStatus.DRIFT, tuple(problems), snapshot.overall(), tuple(checked))
    if pins is None:
        missing = (
            (
                f"no hash pins for {flavour.key} ({flavour.layout.label if flavour.layout else 'no layout'}) in "
                f"convlstm-patch {__version__}: its pristine source is not compared "
                "with a released one, and the patch's output not with a reviewed one"
            ),
        )
        return PinsCheck(flavour, PinsStatus.NO_PINS, missing, snapshot.overall(), tuple(checked))
    return PinsCheck(flavour, PinsStatus.OK, (), snapshot.overall(), tuple(checked))


def verdict(results: list[PinsCheck], strict: bool) -> None:
    """Raise the error that gives `check` its exit status: drift 1, unsupported 4, no pins 10 (1 if strict)."""
    by_status = {result.status: result for result in reversed(results)}  # the first of each status
    if PinsStatus.DRIFT in by_status or (strict and PinsStatus.NO_PINS in by_status):
        failed = by_status.get(PinsStatus.DRIFT) or by_status[PinsStatus.NO_PINS]
        raise errors.CheckFailed(
            f"{failed.flavour.key}: {failed.problems[0]}; do not apply until convlstm-patch supports it"
        )
    if PinsStatus.UNSUPPORTED in by_status:
        raise errors.Unsupported(
            f"{by_status[PinsStatus.UNSUPPORTED].problems[0]} (see README, 'Supported Keras versions')"
        )
    if PinsStatus.NO_PINS in by_status:
        raise errors.NoPins(
            f"{by_status[PinsStatus.NO_PINS].problems[0]}; apply still works and relies on verification (--strict: fail)"
        )


def _compare(
    snapshot: FlavourSnapshot, pins: Pins | None, layer_sets: tuple[LayerSet, ...]
) -> tuple[list[str], list[str]]:
    """(problems, what was checked): with the pins where there are some, and what needs none."""
    flavour = snapshot.flavour
    names = ", ".join(map(str, layer_sets))
    if pins is not None:
        unpinned = [str(s) for s in layer_sets if str(s) not in pins.layer_sets]
        if unpinned:
            return [
                f"the pins of {flavour.key} have no {unpinned[0]} files: this version's {unpinned[0]} source is not one the patch fits"
            ], []
    files = snapshot.files_of(layer_sets)
    if pins is not None:
        missing = sorted({file.target.relative for file in files} - set(pins.files))
        if missing:
            return [f"files {missing} differ between the install and the pins"], []
    try:
        originals = {file.target.relative: snapshot.original(file.target) for file in files}
    except errors.PatchError as error:
        return [error.message], []
    problems: list[str] = []
    checked: list[str] = []
    if pins is not None:
        for relative, data in originals.items():
            expected = pins.files[relative].pristine
            if sha256_hex(data) != expected:
                problems.append(f"{relative}: pristine sha256 {sha256_hex(data)[:16]}… expected {expected[:16]}…")
        if problems:
            return problems, checked
        checked.append(f"the pristine source of {names} is the released one (the pins' sha256)")
    # Each file as the patch makes it for the sets in focus (and those patched beside them).
    applied = tuple(dict.fromkeys((*layer_sets, *snapshot.patched_sets)))
    try:
        patched, _ = patch_sources(flavour, [(file.target, originals[file.target.relative], applied) for file in files])
    except errors.TransformFailed as error:
        return [error.message], checked
    checked.append(f"the patch of {names} fits this source (transformed and compiled)")
    if pins is not None:
        for relative, data in patched.items():
            reviewed = pins.files[relative].patched_for(file_sets(snapshot, relative, applied))
            if reviewed is None or sha256_hex(data) != reviewed:
                problems.append(
                    f"{relative}: patched sha256 {sha256_hex(data)[:16]}… expected {(reviewed or '?')[:16]}…"
                )
        if not problems:
            checked.append("its output is the pinned one")
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
