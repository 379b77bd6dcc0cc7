"""apply, revert and diff for one flavour. Returns outcomes; never prints."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

from patcher import errors, transaction
from patcher.backup import (
    BackedUpFile,
    backed_up_sources,
    backup_folder,
    new_manifest,
    original_sources,
    remove_backup_folder,
    write_backup,
)
from patcher.enums import TextEnum
from patcher.environment import Flavour
from patcher.fsops import atomic_write, remove_bytecode
from patcher.hashing import sha256_hex
from patcher.planning import PlannedFile, plan
from patcher.spec import LayerSet
from patcher.state import FlavourState, State, damaged_backup_note, inspect
from patcher.transaction import Journal, Operation


class Action(TextEnum):
    PATCHED = "patched"
    ALREADY_PATCHED = "already-patched"
    WOULD_PATCH = "would-patch"
    REVERTED = "reverted"
    NOTHING_TO_REVERT = "nothing-to-revert"


@dataclass
class Outcome:
    flavour: Flavour
    action: Action
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """A flavour's patch computed in memory, ready to be written."""

    state: FlavourState
    planned: tuple[PlannedFile, ...] = ()

    @property
    def flavour(self) -> Flavour:
        return self.state.flavour

    @property
    def journal(self) -> Journal:
        """What rolling this patch back needs: delete the backup if this run makes it."""
        return Journal(Operation.APPLY, fresh_backup=self.state.manifest is None)


def prepare(flavour: Flavour, *, force: bool = False) -> Prepared:
    """Check the files and transform them in memory; writes nothing."""
    state = inspect(flavour)
    _require_supported(state)
    _require_layer_sets(flavour)
    if state.overall == State.PATCHED:
        return Prepared(state)
    for file in state.of(State.MISSING):
        raise errors.ModifiedFiles(
            f"{file.target.relative} of {flavour.key} is missing; reinstall it with `{flavour.reinstall_command}`"
        )
    modified = state.of(State.MODIFIED)
    if modified and not force:
        first = modified[0]
        raise errors.ModifiedFiles(
            f"{first.target.relative} of {flavour.key} {first.note}; restore it with "
            f"`{flavour.reinstall_command}` or patch it anyway with --force"
        )
    return Prepared(state, tuple(plan(flavour, original_sources(flavour, state.manifest))))


def commit(prepared: Prepared, *, dry_run: bool = False) -> Outcome:
    """Back up (unless a good backup exists), then write the patched files.

    Runs inside transaction.journaled() (workflow.apply_all), which holds
    prepared.journal on disk and rolls every flavour back if this raises.
    """
    flavour, planned = prepared.flavour, prepared.planned
    if not planned:
        return Outcome(flavour, Action.ALREADY_PATCHED, [file.target.relative for file in prepared.state.files])
    warnings = [f"{item.target.relative}: {warning}" for item in planned for warning in item.warnings]
    if dry_run:
        return Outcome(flavour, Action.WOULD_PATCH, [item.target.relative for item in planned], warnings, _diffs(planned))
    manifest = new_manifest(
        flavour,
        tuple(BackedUpFile(item.target.relative, sha256_hex(item.original), sha256_hex(item.patched)) for item in planned),
    )
    existing = prepared.state.manifest
    for item in planned:
        remove_bytecode(item.target.path)  # before the first write: bytecode we cannot delete changes nothing
    written = []
    if prepared.state.unneeded_damaged_backup:
        remove_backup_folder(backup_folder(flavour))  # replaced below; the journal says the backup is this run's
        warnings.append(f"replaced a damaged backup ({prepared.state.unneeded_damaged_backup})")
    if existing is None or existing.files != manifest.files:
        # A good backup of this version is never overwritten with other
        # bytes: the originals were read from it when it existed.
        write_backup(flavour, {item.target.relative: item.original for item in planned}, manifest)
    for item in planned:
        if item.target.path.read_bytes() != item.patched:
            transaction.set_aside(flavour, item.target)  # a rollback renames it back: undo needs no new space
            atomic_write(item.target.path, item.patched)
            written.append(item.target.relative)
            remove_bytecode(item.target.path)
    return Outcome(flavour, Action.PATCHED, written, warnings)


def revert(flavour: Flavour, *, force: bool = False) -> Outcome:
    """Check that the backup may be restored, then roll the patch back."""
    state = inspect(flavour)
    _require_supported(state)
    manifest = state.manifest
    if manifest is None:
        if state.overall == State.PRISTINE:
            notes = [damaged_backup_note(state)] if state.unneeded_damaged_backup else []
            return Outcome(flavour, Action.NOTHING_TO_REVERT, warnings=notes)
        first = state.of(State.MODIFIED)[0] if state.of(State.MODIFIED) else state.files[0]
        raise errors.BackupProblem(
            f"{first.target.relative} of {flavour.key} {first.note or 'is not pristine'} and there is no backup "
            f"in {backup_folder(flavour)}; restore it with `{flavour.reinstall_command}`"
        )
    edited = state.of(State.MODIFIED)
    if edited and not force:
        raise errors.ModifiedFiles(
            f"{edited[0].target.relative} of {flavour.key} was edited after patching; "
            "revert with --force to discard that edit"
        )
    originals = backed_up_sources(flavour, manifest)  # raises, before any change, if it may not be restored
    # --layers lstm,gru: only those (ConvLSTM, the base every patch has, goes only with all)
    if flavour.asked and LayerSet.CONVLSTM not in flavour.asked:
        return _revert_sets(flavour, manifest, originals)
    for file in state.files:
        remove_bytecode(file.target.path)  # before the first write: bytecode we cannot delete changes nothing
    restored = transaction.rollback(flavour, Journal(Operation.REVERT))
    warnings = [
        f"{file.target.relative}: restored as it was before patching, which differs from RECORD"
        for file in state.files
        if file.target.record_sha256
        and file.target.relative in originals
        and sha256_hex(originals[file.target.relative]) != file.target.record_sha256
    ] + [f"{file.target.relative}: was missing; restored from the backup" for file in state.of(State.MISSING)]
    return Outcome(flavour, Action.REVERTED, restored, warnings)


def _revert_sets(flavour: Flavour, manifest, originals: dict[str, bytes]) -> Outcome:
    """`revert --layers X`: restore only X's files and keep the other sets patched.

    Under the apply journal: if the run dies part way, the next command rolls
    the flavour back to all originals (the backup stays), never to a mix.
    """
    asked = {str(layer_set) for layer_set in flavour.asked}
    targets = [t for t in flavour.files if str(t.layer_set) in asked and t.relative in originals]
    if not targets:
        return Outcome(flavour, Action.NOTHING_TO_REVERT)
    relatives = {target.relative for target in targets}
    kept = replace(
        manifest,
        files=tuple(entry for entry in manifest.files if entry.path not in relatives),
        layer_sets=tuple(name for name in manifest.layer_sets if name not in asked),
    )
    restored = []
    with transaction.journaled([(flavour, Journal(Operation.APPLY, fresh_backup=False))]):
        for target in targets:
            if target.path.read_bytes() != originals[target.relative]:
                atomic_write(target.path, originals[target.relative])
                remove_bytecode(target.path)
                restored.append(target.relative)
        write_backup(flavour, {}, kept)  # the manifest no longer lists them; their copies are left unused
    return Outcome(flavour, Action.REVERTED, restored)


def diff(flavour: Flavour) -> Outcome:
    """The unified diff the patch makes (patched: from the backup) or would make."""
    state = inspect(flavour)
    _require_supported(state)
    # --layers: only those sets' files
    chosen = {str(layer_set) for layer_set in flavour.asked}
    if chosen:
        flavour = replace(flavour, files=tuple(t for t in flavour.files if str(t.layer_set) in chosen))
    if state.manifest is not None:
        originals = original_sources(flavour, state.manifest)
        items = [
            PlannedFile(target, originals[target.relative], target.path.read_bytes(), ())
            for target in flavour.files
        ]
        return Outcome(flavour, Action.PATCHED, [item.target.relative for item in items], [], _diffs(items))
    planned = plan(flavour, original_sources(flavour, None))
    return Outcome(flavour, Action.WOULD_PATCH, [item.target.relative for item in planned], [], _diffs(planned))


def _require_supported(state: FlavourState) -> None:
    if state.overall == State.UNSUPPORTED:
        flavour = state.flavour
        if flavour.why_unsupported:
            raise errors.Unsupported(flavour.why_unsupported)
        raise errors.Unsupported(
            f"{flavour.key} has no ConvLSTM source layout that convlstm-patch knows (keras 2.4 and 2.5 only "
            "re-export tensorflow.keras and have none); supported: keras 2.0-2.3, 2.6-2.15 and 3.x, tf_keras 2.14+ "
            "(see README, 'Supported Keras versions')"
        )


def _require_layer_sets(flavour: Flavour) -> None:
    """Refuse a --layers set this version's files do not allow."""
    missing = [layer_set for layer_set in flavour.asked if layer_set not in flavour.supported_sets]
    if missing:
        supported = ", ".join(map(str, flavour.supported_sets))
        raise errors.Unsupported(
            f"{flavour.key} has no {missing[0]} source convlstm-patch can patch (it supports --layers {supported}); "
            "see README, 'Supported Keras versions'"
        )


def _diffs(items: list[PlannedFile]) -> dict[str, str]:
    return {
        item.target.relative: "".join(
            difflib.unified_diff(
                item.original.decode("utf-8").splitlines(keepends=True),
                item.patched.decode("utf-8").splitlines(keepends=True),
                fromfile=f"a/{item.target.relative}",
                tofile=f"b/{item.target.relative}",
            )
        )
        for item in items
    }
