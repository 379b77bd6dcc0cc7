"""What apply, revert and diff change in one flavour, decided from its snapshot.

Each ``plan_*`` takes a snapshot (patcher/snapshot.py) and the command's
options and returns the change to make (a patcher.transaction.FlavourChange,
carried out by a Transaction) or raises the error that stops the command
before anything is written. Nothing here reads or writes the environment:
the snapshot holds every byte a decision needs. Only the transform imports
libcst, and only when a file's patched text is needed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from patcher import __version__, errors, text
from patcher.enums import TextEnum
from patcher.environment import Flavour, TargetFile
from patcher.hashing import sha256_hex
from patcher.layersets import BASE, FUSED_SETS, LayerSet, names, ordered
from patcher.snapshot import FlavourSnapshot, State
from patcher.store import STATE_FOLDER, BackedUpFile, Manifest, Operation
from patcher.transaction import FileChange, FlavourChange


class Action(TextEnum):
    PATCHED = "patched"
    ALREADY_PATCHED = "already-patched"
    WOULD_PATCH = "would-patch"
    REVERTED = "reverted"
    NOTHING_TO_REVERT = "nothing-to-revert"


@dataclass
class Outcome:
    """What apply, revert or diff did (or would do) to one flavour, for patcher.output."""

    flavour: Flavour
    action: Action
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)


# -- apply and revert: the sets an environment ends with --------------------------


def apply_target(
    snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None
) -> tuple[tuple[LayerSet, ...], tuple[LayerSet, ...]]:
    """What `apply` leaves: the layer sets patched, exactly (those named, --layers, ConvLSTM always;
    else those chosen before, ConvLSTM when none; of those this version has: a named set it lacks
    is refused), and the sets the environment remembers (those named, else those chosen before; a
    set this version lacks stays chosen, for a later version may have it; nothing for ConvLSTM
    alone, the default)."""
    _require_supported(snapshot.flavour)
    supported = set(snapshot.flavour.supported_sets)
    named = ordered({BASE, *layers}) if layers is not None else None
    missing = [layer_set for layer_set in named or () if layer_set not in supported]
    if missing:
        raise errors.Unsupported(
            f"{snapshot.flavour.key} has no {missing[0]} source convlstm-patch can patch (it supports --layers "
            f"{','.join(map(str, snapshot.flavour.supported_sets))}); see README, 'Supported Keras versions'"
        )
    chosen = named if named is not None else snapshot.chosen
    patched = tuple(layer_set for layer_set in ordered({BASE, *chosen}) if layer_set in supported)
    return patched, (() if chosen in ((), (BASE,)) else chosen)


def already_patched(snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None) -> bool:
    """Decided from hashes alone (no transform): exactly the sets apply would leave patched are,
    every file as it should be, and the chosen sets as apply would leave them."""
    layer_sets, chosen = apply_target(snapshot, layers)
    return (
        snapshot.patched_sets == layer_sets
        and all(file.state == snapshot.expected(file) for file in snapshot.files)
        and snapshot.chosen == chosen
    )


def nothing_to_revert(snapshot: FlavourSnapshot) -> bool:
    """Decided from hashes alone: no backup to restore and no chosen sets to forget."""
    _require_supported(snapshot.flavour)
    return snapshot.manifest is None and not snapshot.chosen and snapshot.overall() == State.PRISTINE


def plan_apply(snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None, *, force: bool) -> FlavourChange:
    """Leave exactly apply_target's sets patched: their files transformed from the originals, the
    files of any other set patched before put back as they were."""
    layer_sets, chosen = apply_target(snapshot, layers)
    change = _plan(snapshot, Operation.APPLY, layer_sets, chosen, force=force)
    again = [s for s in layer_sets if layers is None and s != BASE and s not in snapshot.patched_sets]
    if again:
        return replace(
            change, warnings=(f"patching the layer sets chosen before as well: {names(again)}", *change.warnings)
        )
    return change


def plan_revert(snapshot: FlavourSnapshot, *, force: bool) -> FlavourChange:
    """Every file back as it was before patching, the backup and the chosen sets gone."""
    _require_supported(snapshot.flavour)
    return _plan(snapshot, Operation.REVERT, (), (), force=force)


def _plan(
    snapshot: FlavourSnapshot,
    operation: Operation,
    layer_sets: tuple[LayerSet, ...],
    chosen: tuple[LayerSet, ...],
    *,
    force: bool,
) -> FlavourChange:
    """The one plan of apply and revert: every file of the sets patched now or after, as it must
    be after (transformed for the sets it belongs to, else its original)."""
    flavour, manifest = snapshot.flavour, snapshot.manifest
    files = snapshot.files_of({*layer_sets, *snapshot.patched_sets})
    _require_backed_up(snapshot)
    _require_usable(snapshot, files, operation, force)
    originals = {file.target.relative: snapshot.original(file.target) for file in files}
    to_patch = [file for file in files if file.target.layer_sets & set(layer_sets)]
    patched, warnings = (
        patch_sources(flavour, [(file.target, originals[file.target.relative], layer_sets) for file in to_patch])
        if to_patch
        else ({}, [])
    )
    if operation == Operation.APPLY:
        require_guarded(flavour, patched, layer_sets)
    after = {relative: patched.get(relative, original) for relative, original in originals.items()}
    manifest_after = _manifest(
        snapshot, layer_sets, {f.target.relative: originals[f.target.relative] for f in to_patch}, patched
    )
    warnings += _warnings(snapshot, files, layer_sets, after, operation)
    return FlavourChange(
        flavour,
        operation,
        layer_sets if operation == Operation.APPLY else snapshot.patched_sets,
        tuple(
            FileChange(file.target, file.live, after[file.target.relative])
            for file in files
            if file.live != after[file.target.relative]
        ),
        manifest,
        manifest_after,
        originals,
        snapshot.chosen,
        chosen,
        tuple(warnings),
    )


def _require_backed_up(snapshot: FlavourSnapshot) -> None:
    """Our output with no backup to restore it from (`.convlstm-patch` deleted, or the environment
    copied without it: `cp -a site-packages/*` skips it): no original is known, so neither apply
    (even --force: it would take our output for the original) nor revert ("nothing to revert")."""
    manifest = snapshot.manifest
    for file in snapshot.files:
        if (
            file.state == State.MODIFIED
            and file.marked
            and (manifest is None or not manifest.file(file.target.relative))
        ):
            raise errors.BackupProblem(
                f"{file.target.relative} is patched, but its backup is gone (the {STATE_FOLDER} folder was deleted, "
                "or the environment copied without it); nothing was changed. Restore Keras with "
                f"`{snapshot.flavour.reinstall_command}`"
            )


def _require_usable(snapshot: FlavourSnapshot, files, operation: Operation, force: bool) -> None:
    """Refuse before transforming: a file missing with no original to patch or restore, or one
    edited by hand (apply: differs from RECORD; revert: edited after patching) unless forced."""
    flavour = snapshot.flavour
    for file in files:
        if file.state == State.MODIFIED and file.live is None:  # a folder, a FIFO, unreadable: even --force cannot
            raise errors.ModifiedFiles(
                f"{file.target.relative} of {flavour.key} {file.note}; reinstall it with `{flavour.reinstall_command}`"
            )
        if file.state == State.MISSING and snapshot.originals.get(file.target.relative) is None:
            raise errors.ModifiedFiles(
                f"{file.target.relative} of {flavour.key} is missing; reinstall it with `{flavour.reinstall_command}`"
            )
    modified = [file for file in files if file.state == State.MODIFIED]
    if modified and not force:
        first = modified[0]
        if (
            operation == Operation.REVERT
            or snapshot.manifest is not None
            and snapshot.manifest.file(first.target.relative)
        ):
            raise errors.ModifiedFiles(
                f"{first.target.relative} of {flavour.key} was edited after patching; "
                f"{operation} with --force to discard that edit"
            )
        raise errors.ModifiedFiles(
            f"{first.target.relative} of {flavour.key} {first.note}; restore it with "
            f"`{flavour.reinstall_command}` or patch it anyway with --force"
        )


def _manifest(
    snapshot: FlavourSnapshot, layer_sets: tuple[LayerSet, ...], originals: dict[str, bytes], patched: dict[str, bytes]
) -> Manifest | None:
    """The backup's manifest after the run: exactly the files of the sets left patched (none: no backup)."""
    if not layer_sets:
        return None
    flavour, manifest = snapshot.flavour, snapshot.manifest
    entries = tuple(
        BackedUpFile(relative, sha256_hex(originals[relative]), sha256_hex(patched[relative])) for relative in originals
    )
    if manifest is not None and manifest.files == entries and manifest.layer_sets == layer_sets:
        return manifest
    record = {target.relative: target.record_sha256 for target in flavour.files}
    assert flavour.layout is not None  # only a supported flavour is planned (_require_supported)
    return Manifest(
        distribution=flavour.distribution,
        version=flavour.version,
        layout=flavour.layout.name,
        tool_version=__version__,
        created=manifest.created if manifest is not None else datetime.now(timezone.utc).isoformat(timespec="seconds"),
        files=entries,
        layer_sets=layer_sets,
        forced=any(record.get(entry.path) not in (None, entry.before) for entry in entries),
    )


def _warnings(snapshot: FlavourSnapshot, files, layer_sets, after: dict[str, bytes], operation: Operation) -> list[str]:
    flavour, warnings = snapshot.flavour, []
    if operation == Operation.APPLY:
        dropped = [s for s in snapshot.patched_sets if s not in layer_sets]
        if dropped:
            warnings.append(f"put back as pip installed them: {names(dropped)} (not in --layers)")
        left_out = [s for s in snapshot.chosen if s not in layer_sets and s not in flavour.supported_sets]
        if left_out:
            warnings.append(
                f"{flavour.key} has no {names(left_out)} source convlstm-patch can patch (chosen before): left out"
            )
        if snapshot.unneeded_damaged_backup:
            warnings.append(f"replaced a damaged backup ({snapshot.unneeded_damaged_backup})")
    restored = [file for file in files if not file.target.layer_sets & set(layer_sets)]
    warnings += [
        f"{file.target.relative}: restored as it was before patching, which differs from RECORD"
        for file in restored
        if file.target.record_sha256
        and after[file.target.relative] != file.live
        and sha256_hex(after[file.target.relative]) != file.target.record_sha256
    ] + [
        f"{file.target.relative}: was missing; restored from the backup"
        for file in restored
        if file.state == State.MISSING
    ]
    return warnings


# -- diff -----------------------------------------------------------------------


def diff(snapshot: FlavourSnapshot) -> Outcome:
    """The unified diff of the focus sets' files: what the patch made (from the backup) or would make."""
    flavour = snapshot.flavour
    _require_supported(flavour)
    layer_sets = snapshot.focus()
    files = snapshot.files_of(layer_sets)
    patched = [file for file in files if snapshot.manifest is not None and snapshot.manifest.file(file.target.relative)]
    pending = [file for file in files if file not in patched]
    sets = apply_target(snapshot, layer_sets)[0]
    would, _ = (
        patch_sources(flavour, [(file.target, snapshot.original(file.target), sets) for file in pending])
        if pending
        else ({}, [])
    )
    pairs = [(file.target.relative, snapshot.originals[file.target.relative], file.live or b"") for file in patched]
    pairs += [(file.target.relative, snapshot.original(file.target), would[file.target.relative]) for file in pending]
    action = Action.PATCHED if not pending else Action.WOULD_PATCH
    edited = [(relative, text.where_not_utf8(after)) for relative, _, after in pairs]
    warnings = [
        f"{relative} is not UTF-8 text ({where}), shown with \\x escapes: it was edited by hand since it was patched"
        for relative, where in edited
        if where is not None
    ]
    return Outcome(flavour, action, [relative for relative, _, _ in pairs], warnings, diffs(pairs))


def diffs(pairs: Iterable[tuple[str, bytes, bytes]]) -> dict[str, str]:
    return {
        relative: "".join(
            difflib.unified_diff(
                text.readable(before).splitlines(keepends=True),
                text.readable(after).splitlines(keepends=True),
                fromfile=f"a/{relative}",
                tofile=f"b/{relative}",
            )
        )
        for relative, before, after in pairs
    }


# -- the transform ----------------------------------------------------------------


def patch_sources(
    flavour: Flavour, items: Iterable[tuple[TargetFile, bytes, Iterable[LayerSet]]]
) -> tuple[dict[str, bytes], list[str]]:
    """Each file's original transformed for the sets applied to it (those of ``layer_sets``
    it belongs to); raise before anything is written if one fails. Also the transform's warnings."""
    from patcher.transform import TransformError, transform_source  # libcst: slow import

    patched, warnings = {}, []
    for target, original, layer_sets in items:
        applied = ordered(set(layer_sets) & target.layer_sets)
        where = text.where_not_utf8(original)
        if where is not None:
            raise errors.TransformFailed(text.not_utf8(flavour, target.relative, where))
        try:
            source = original.decode("utf-8")
            result = transform_source(source, target.classes, layer_sets=applied)
            compile(result.code, str(target.path), "exec", dont_inherit=True)
        except (UnicodeDecodeError, TransformError, SyntaxError) as error:
            raise errors.TransformFailed(
                f"cannot patch {target.relative} of {flavour.key}: {error}. "
                "This Keras version is not supported yet; please report it with `convlstm-patch status` output"
            ) from None
        patched[target.relative] = result.code.encode("utf-8")
        warnings += [f"{target.relative}: {warning}" for warning in result.warnings]
    return patched, warnings


def unguarded(flavour: Flavour, patched: dict[str, bytes], layer_sets: Iterable[LayerSet]) -> list[str]:
    """Fail closed: the fused-kernel call sites of the whole package (as patched) that per-gate
    layers of these sets could reach unguarded (patcher/audit.py); empty when all are covered."""
    fused = [layer_set for layer_set in layer_sets if layer_set in FUSED_SETS]
    if not fused:
        return []
    from patcher.audit import UnreadableModule, audit, uncovered

    texts = {relative: data.decode("utf-8") for relative, data in patched.items()}
    try:
        sites = audit(flavour.site / flavour.package, flavour.package, texts)
    except UnreadableModule as error:
        # Fail closed: a module that does not parse cannot be shown to be guarded.
        if error.not_utf8 is not None:
            raise errors.TransformFailed(
                f"cannot audit the fused LSTM/GRU kernel calls: {text.not_utf8(flavour, error.path, error.not_utf8)}"
            ) from None
        raise errors.TransformFailed(
            f"cannot audit the fused LSTM/GRU kernel calls: {error.path} of {flavour.key} does not parse "
            f"({error.reason}); reinstall it with `{flavour.reinstall_command}`"
        ) from None
    return [str(site) for site in uncovered(sites, fused)]


def require_guarded(flavour: Flavour, patched: dict[str, bytes], layer_sets: Iterable[LayerSet]) -> None:
    sites = unguarded(flavour, patched, layer_sets)
    if sites:
        more = f" (and {len(sites) - 1} more)" if len(sites) > 1 else ""
        fused = ",".join(str(s) for s in ordered(layer_sets) if s in FUSED_SETS)
        raise errors.Unsupported(
            f"{flavour.key} calls a fused LSTM/GRU kernel where the patch cannot keep per-gate activations out, "
            f"so such layers could be silently wrong there: {sites[0]}{more}; nothing was changed. convlstm-patch "
            f"does not support --layers {fused} for this version yet (ConvLSTM alone still works); please report it"
        )


def _require_supported(flavour: Flavour) -> None:
    if flavour.layout is None:
        if flavour.why_unsupported:
            raise errors.Unsupported(flavour.why_unsupported)
        raise errors.Unsupported(
            f"{flavour.key} has no ConvLSTM source layout that convlstm-patch knows (keras 2.4 and 2.5 only "
            "re-export tensorflow.keras and have none); supported: keras 2.0-2.3, 2.6-2.15 and 3.x, tf_keras 2.14+ "
            "(see README, 'Supported Keras versions')"
        )
