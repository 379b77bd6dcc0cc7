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
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable

from patcher import __version__, errors, text
from patcher.enums import TextEnum
from patcher.environment import Flavour, TargetFile
from patcher.hashing import sha256_hex
from patcher.layersets import BASE, FUSED_SETS, LayerSet, names, ordered
from patcher.snapshot import FlavourSnapshot, State
from patcher.store import BackedUpFile, Manifest, Operation
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


# -- apply ----------------------------------------------------------------------


def apply_sets(snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None) -> tuple[LayerSet, ...]:
    """The layer sets apply patches: ConvLSTM, those named, those chosen before and those
    patched already; a named set this version cannot patch is refused."""
    _require_supported(snapshot.flavour)
    supported = set(snapshot.flavour.supported_sets)
    missing = [layer_set for layer_set in ordered(layers or ()) if layer_set not in supported]
    if missing:
        raise errors.Unsupported(
            f"{snapshot.flavour.key} has no {missing[0]} source convlstm-patch can patch (it supports --layers "
            f"{','.join(map(str, snapshot.flavour.supported_sets))}); see README, 'Supported Keras versions'"
        )
    return ordered({BASE, *(layers or ()), *snapshot.remembered, *snapshot.patched_sets} & supported)


def remembered_after_apply(snapshot: FlavourSnapshot, layer_sets: tuple[LayerSet, ...]) -> tuple[LayerSet, ...]:
    """What the environment remembers after apply: the sets patched, plus those chosen before that this
    version cannot patch (a later version may); nothing when that is ConvLSTM alone, the default."""
    kept = ordered({*layer_sets, *snapshot.remembered})
    return () if kept == (BASE,) else kept


def already_patched(snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None) -> bool:
    """Decided from hashes alone (no transform): every set apply would patch is, and remembered."""
    layer_sets = apply_sets(snapshot, layers)
    return (
        set(layer_sets) <= set(snapshot.patched_sets)
        and all(file.state == State.PATCHED for file in snapshot.files_of(snapshot.patched_sets))
        and snapshot.remembered == remembered_after_apply(snapshot, layer_sets)
    )


def plan_apply(snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None, *, force: bool) -> FlavourChange:
    """Every file of the sets to patch, transformed from its original; a change for each that differs."""
    flavour = snapshot.flavour
    layer_sets = apply_sets(snapshot, layers)
    files = snapshot.files_of(layer_sets)
    for file in files:
        if file.state == State.MISSING:
            raise errors.ModifiedFiles(
                f"{file.target.relative} of {flavour.key} is missing; reinstall it with `{flavour.reinstall_command}`"
            )
    modified = [file for file in files if file.state == State.MODIFIED]
    if modified and not force:
        first = modified[0]
        raise errors.ModifiedFiles(
            f"{first.target.relative} of {flavour.key} {first.note}; restore it with "
            f"`{flavour.reinstall_command}` or patch it anyway with --force"
        )
    originals = {file.target.relative: snapshot.original(file.target) for file in files}
    patched, warnings = patch_sources(flavour, [(file.target, originals[file.target.relative], layer_sets) for file in files])
    require_guarded(flavour, patched, layer_sets)
    entries = tuple(
        BackedUpFile(relative, sha256_hex(originals[relative]), sha256_hex(patched[relative])) for relative in originals
    )
    manifest = snapshot.manifest
    if manifest is None or manifest.files != entries or manifest.layer_sets != layer_sets:
        record = {target.relative: target.record_sha256 for target in flavour.files}
        manifest = Manifest(
            distribution=flavour.distribution,
            version=flavour.version,
            layout=flavour.layout.name,
            tool_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            files=entries,
            layer_sets=layer_sets,
            forced=any(record.get(entry.path) not in (None, entry.before) for entry in entries),
        )
    again = [s for s in snapshot.remembered if s in layer_sets and s not in (BASE, *snapshot.patched_sets, *(layers or ()))]
    if again:
        warnings.append(f"patching the layer sets chosen before as well: {names(again)}")
    left_out = [s for s in snapshot.remembered if s not in layer_sets]
    if left_out:
        warnings.append(f"{flavour.key} has no {names(left_out)} source convlstm-patch can patch (chosen before): left out")
    if snapshot.unneeded_damaged_backup:
        warnings.append(f"replaced a damaged backup ({snapshot.unneeded_damaged_backup})")
    return FlavourChange(
        flavour,
        Operation.APPLY,
        layer_sets,
        tuple(
            FileChange(file.target, file.live, patched[file.target.relative])
            for file in files
            if file.live != patched[file.target.relative]
        ),
        snapshot.manifest,
        manifest,
        originals,
        snapshot.remembered,
        remembered_after_apply(snapshot, layer_sets),
        tuple(warnings),
    )


# -- revert ---------------------------------------------------------------------


def revert_sets(snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None) -> tuple[LayerSet, ...]:
    """The patched sets `revert` restores: those named (--layers), else every one."""
    patched = snapshot.patched_sets
    return ordered(set(layers) & set(patched)) if layers is not None else patched


def nothing_to_revert(snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None) -> bool:
    """Decided from hashes alone: no backup to restore and nothing to forget."""
    _require_supported(snapshot.flavour)
    if snapshot.manifest is not None:
        return not revert_sets(snapshot, layers)
    return not snapshot.remembered and snapshot.overall(layers) == State.PRISTINE


def plan_revert(snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None, *, force: bool) -> FlavourChange:
    """The originals of the sets to revert; a file another patched set shares keeps that set's edits."""
    flavour, manifest = snapshot.flavour, snapshot.manifest
    _require_supported(flavour)
    if manifest is None:
        off = [file for file in snapshot.files_of(snapshot.focus(layers)) if file.state != State.PRISTINE]
        if off:
            raise errors.BackupProblem(
                f"{off[0].target.relative} of {flavour.key} {off[0].note or 'is not pristine'} and there is no "
                f"backup in {snapshot_backup(snapshot)}; restore it with `{flavour.reinstall_command}`"
            )
        forget = () if layers is None else tuple(s for s in snapshot.remembered if s not in set(layers))
        return FlavourChange(flavour, Operation.REVERT, (), (), None, None, {}, snapshot.remembered, forget)
    layer_sets = revert_sets(snapshot, layers)
    remaining = tuple(s for s in manifest.layer_sets if s not in layer_sets)
    files = snapshot.files_of(layer_sets)
    edited = [file for file in files if file.state == State.MODIFIED]
    if edited and not force:
        raise errors.ModifiedFiles(
            f"{edited[0].target.relative} of {flavour.key} was edited after patching; "
            "revert with --force to discard that edit"
        )
    shared = [(file.target, snapshot.originals[file.target.relative], remaining) for file in files if file.target.layer_sets & set(remaining)]
    repatched, _ = patch_sources(flavour, shared) if shared else ({}, [])
    after = {file.target.relative: repatched.get(file.target.relative, snapshot.originals[file.target.relative]) for file in files}
    manifest_after = None
    if remaining:
        manifest_after = replace(
            manifest,
            files=tuple(
                replace(entry, after=sha256_hex(after[entry.path])) if entry.path in after else entry
                for entry in manifest.files
                if entry.path not in after or entry.path in repatched
            ),
            layer_sets=remaining,
        )
    warnings = [
        f"{file.target.relative}: restored as it was before patching, which differs from RECORD"
        for file in files
        if file.target.record_sha256 and after[file.target.relative] != file.live
        and file.target.relative not in repatched
        and sha256_hex(after[file.target.relative]) != file.target.record_sha256
    ] + [f"{file.target.relative}: was missing; restored from the backup" for file in files if file.state == State.MISSING]
    remembered = () if not remaining else (remaining if remaining != (BASE,) else ())
    return FlavourChange(
        flavour,
        Operation.REVERT,
        layer_sets if layers is not None else (),
        tuple(FileChange(file.target, file.live, after[file.target.relative]) for file in files if file.live != after[file.target.relative]),
        manifest,
        manifest_after,
        dict(snapshot.originals),
        snapshot.remembered,
        remembered,
        tuple(warnings),
    )


def snapshot_backup(snapshot: FlavourSnapshot) -> str:
    from patcher.store import backup_folder

    return str(backup_folder(snapshot.flavour))


# -- diff -----------------------------------------------------------------------


def diff(snapshot: FlavourSnapshot, layers: Iterable[LayerSet] | None) -> Outcome:
    """The unified diff of the focus sets' files: what the patch made (from the backup) or would make."""
    flavour = snapshot.flavour
    _require_supported(flavour)
    layer_sets = snapshot.focus(layers)
    files = snapshot.files_of(layer_sets)
    patched = [file for file in files if snapshot.manifest is not None and snapshot.manifest.file(file.target.relative)]
    pending = [file for file in files if file not in patched]
    would, _ = patch_sources(
        flavour, [(file.target, snapshot.original(file.target), apply_sets(snapshot, layer_sets)) for file in pending]
    ) if pending else ({}, [])
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
