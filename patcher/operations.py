"""apply, revert and diff for one flavour. Returns outcomes; never prints."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from patcher import errors, transaction
from patcher.backup import (
    BackedUpFile,
    Manifest,
    backup_copy,
    backup_folder,
    new_manifest,
    remove_backup,
    write_backup,
)
from patcher.environment import Flavour
from patcher.fsops import atomic_write, remove_bytecode
from patcher.hashing import sha256_hex
from patcher.planning import PlannedFile, plan
from patcher.state import MISSING, MODIFIED, PATCHED, PRISTINE, UNSUPPORTED, FlavourState, inspect


@dataclass
class Outcome:
    flavour: Flavour
    action: str  # patched | already-patched | would-patch | reverted | nothing-to-revert
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


def prepare(flavour: Flavour, *, force: bool = False) -> Prepared:
    """Check the files and transform them in memory; writes nothing."""
    state = inspect(flavour)
    _require_supported(state)
    if state.state == PATCHED:
        return Prepared(state)
    for file in state.of(MISSING):
        raise errors.ModifiedFiles(
            f"{file.target.relative} of {flavour.key} is missing; reinstall it with "
            f"`pip install --force-reinstall --no-deps {flavour.distribution}=={flavour.version}`"
        )
    modified = state.of(MODIFIED)
    if modified and not force:
        first = modified[0]
        raise errors.ModifiedFiles(
            f"{first.target.relative} of {flavour.key} {first.note}; restore it with "
            f"`pip install --force-reinstall --no-deps {flavour.distribution}=={flavour.version}` "
            "or patch it anyway with --force"
        )
    return Prepared(state, tuple(plan(flavour, original_sources(flavour, state))))


def commit(prepared: Prepared, *, dry_run: bool = False) -> Outcome:
    """Back up (unless a good backup exists), then write the patched files."""
    flavour, planned = prepared.flavour, prepared.planned
    if not planned:
        return Outcome(flavour, "already-patched", [file.target.relative for file in prepared.state.files])
    warnings = [f"{item.target.relative}: {warning}" for item in planned for warning in item.warnings]
    if dry_run:
        return Outcome(flavour, "would-patch", [item.target.relative for item in planned], warnings, _diffs(planned))
    manifest = new_manifest(
        flavour,
        tuple(BackedUpFile(item.target.relative, sha256_hex(item.original), sha256_hex(item.patched)) for item in planned),
    )
    existing = prepared.state.manifest
    fresh_backup = existing is None or existing.files != manifest.files
    transaction.begin(flavour, "apply", fresh_backup)
    written: list[PlannedFile] = []
    try:
        if fresh_backup:
            # A good backup of this version is never overwritten with other
            # bytes: the originals were read from it when it existed.
            write_backup(flavour, {item.target.relative: item.original for item in planned}, manifest)
        for item in planned:
            if item.target.path.read_bytes() != item.patched:
                atomic_write(item.target.path, item.patched)
                remove_bytecode(item.target.path)
                written.append(item)
    except errors.PatchError:
        # e.g. disk full on the third file: put the first two back as they were.
        for item in written:
            atomic_write(item.target.path, item.original)
            remove_bytecode(item.target.path)
        if fresh_backup and existing is None:
            remove_backup(flavour)
        transaction.end(flavour)
        raise
    transaction.end(flavour)
    return Outcome(flavour, "patched", [item.target.relative for item in written], warnings)


def revert(flavour: Flavour, *, force: bool = False) -> Outcome:
    state = inspect(flavour)
    _require_supported(state)
    manifest = state.manifest
    if manifest is None:
        if state.state == PRISTINE:
            return Outcome(flavour, "nothing-to-revert")
        first = state.of(MODIFIED)[0] if state.of(MODIFIED) else state.files[0]
        raise errors.BackupProblem(
            f"{first.target.relative} of {flavour.key} {first.note or 'is not pristine'} and there is no backup "
            f"in {backup_folder(flavour)}; restore it with "
            f"`pip install --force-reinstall --no-deps {flavour.distribution}=={flavour.version}`"
        )
    edited = state.of(MODIFIED)
    if edited and not force:
        raise errors.ModifiedFiles(
            f"{edited[0].target.relative} of {flavour.key} was edited after patching; "
            "revert with --force to discard that edit"
        )
    originals = backed_up_sources(flavour, manifest)
    transaction.begin(flavour, "revert")
    restored = restore_originals(flavour, originals)
    warnings = [
        f"{file.target.relative}: restored as it was before patching, which differs from RECORD"
        for file in state.files
        if file.target.record_sha256 and sha256_hex(originals[file.target.relative]) != file.target.record_sha256
    ]
    remove_backup(flavour)
    transaction.end(flavour)
    return Outcome(flavour, "reverted", restored, warnings)


def restore_originals(flavour: Flavour, originals: dict[str, bytes]) -> list[str]:
    """Write back every target file that differs from its original; the ones written."""
    restored = []
    for target in flavour.files:
        data = originals[target.relative]
        if not target.path.exists() or target.path.read_bytes() != data:
            atomic_write(target.path, data)
            remove_bytecode(target.path)
            restored.append(target.relative)
    return restored


def diff(flavour: Flavour) -> Outcome:
    """The unified diff the patch makes (patched: from the backup) or would make."""
    state = inspect(flavour)
    _require_supported(state)
    if state.manifest is not None:
        originals = backed_up_sources(flavour, state.manifest)
        items = [
            PlannedFile(file.target, originals[file.target.relative], file.target.path.read_bytes(), ())
            for file in state.files
        ]
        return Outcome(flavour, "patched", [item.target.relative for item in items], [], _diffs(items))
    planned = plan(flavour, original_sources(flavour, state))
    return Outcome(flavour, "would-patch", [item.target.relative for item in planned], [], _diffs(planned))


def _require_supported(state: FlavourState) -> None:
    if state.state == UNSUPPORTED:
        flavour = state.flavour
        raise errors.Unsupported(
            f"{flavour.key} has no ConvLSTM source layout that convlstm-patch knows (keras 2.4 and 2.5 only "
            "re-export tensorflow.keras and have none); supported: keras 2.0-2.3, 2.6-2.15 and 3.x, tf_keras 2.14+ "
            "(see README, 'Supported Keras versions')"
        )


def original_sources(flavour: Flavour, state: FlavourState) -> dict[str, bytes]:
    """The pre-patch bytes: from the backup when there is one, else the live files."""
    if state.manifest is not None:
        return backed_up_sources(flavour, state.manifest)
    return {file.target.relative: file.target.path.read_bytes() for file in state.files}


def backed_up_sources(flavour: Flavour, manifest: Manifest) -> dict[str, bytes]:
    """Backup contents, each checked against the manifest and RECORD."""
    originals = {}
    for target in flavour.files:
        entry = manifest.file(target.relative)
        copy = backup_copy(flavour, target.relative)
        try:
            data = copy.read_bytes()
        except OSError:
            data = None
        if entry is None or data is None or sha256_hex(data) != entry.before:
            problem = "is missing or does not match its manifest"
        elif target.record_sha256 not in (None, entry.before) and not manifest.forced:
            problem = f"does not match the RECORD of {flavour.key}"
        else:
            originals[target.relative] = data
            continue
        raise errors.BackupProblem(
            f"the backup of {target.relative} in {backup_folder(flavour)} {problem}; nothing was changed. "
            f"Restore Keras with `pip install --force-reinstall --no-deps {flavour.distribution}=={flavour.version}`"
        )
    return originals


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
