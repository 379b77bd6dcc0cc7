"""All or nothing, one at a time: the environment's lock and the transaction.

A :class:`Transaction` carries out the changes a command decided (patcher/
planning.py), for every flavour of one environment at once, the way pip's
uninstall stashes files: the caller holds it, ``write`` changes the files,
leaving the context commits, and an exception rolls back. Unlike pip's, its
journal is on disk (``<site>/.convlstm-patch/journal-<distribution>.json``),
written before the first change: it names every file with its sha256 before
and after, the backup's manifest before and after, and the remembered layer
sets before and after. So whatever cuts a run short, :func:`undo` puts back
exactly what was there: at once when a write or the verification fails or on
Ctrl-C, and from the journal in the next command when the run died (SIGKILL,
power loss). Undo needs no new disk space: each file a run replaces is first
kept as a hard link in the set-aside folder and renamed back.

A run commits by marking its journal committed; only then are backups (or
copies of them) deleted, and only when every file they cover is
byte-identical in place to its original (:func:`_require_in_place`). A run
killed after its commit point is finished by the next command, not undone.

Runs on one environment are serialised by :class:`EnvironmentLock`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from patcher import errors, pauses
from patcher.environment import Flavour, TargetFile
from patcher.fsops import atomic_write, ensure_folder, link_copy, move_back, remove_bytecode, take_owner
from patcher.hashing import sha256_hex
from patcher.layersets import LayerSet
from patcher.store import (
    Journal,
    JournalFile,
    Manifest,
    Operation,
    Phase,
    backup_copy,
    backup_folder,
    journal_path,
    lock_file,
    manifest_path,
    read_journal,
    remembered_json,
    remembered_path,
    set_aside_folder,
    set_aside_path,
    state_folder,
)

DEFAULT_LOCK_TIMEOUT = 300  # seconds


@dataclass(frozen=True)
class FileChange:
    target: TargetFile
    before: bytes | None  # the live file before the run (None: missing)
    after: bytes


@dataclass(frozen=True)
class FlavourChange:
    """What one run changes in one flavour: decided from a snapshot read under the lock."""

    flavour: Flavour
    operation: Operation
    layer_sets: tuple[LayerSet, ...]  # the sets the run acts on
    files: tuple[FileChange, ...]  # only files whose bytes change
    manifest_before: Manifest | None
    manifest_after: Manifest | None  # None: no backup after the run
    originals: dict[str, bytes] = field(repr=False, default_factory=dict)  # what manifest_after covers
    remembered_before: tuple[LayerSet, ...] = ()
    remembered_after: tuple[LayerSet, ...] = ()
    warnings: tuple[str, ...] = ()

    def journal(self) -> Journal:
        return Journal(
            operation=self.operation,
            layer_sets=self.layer_sets,
            files=tuple(
                JournalFile(change.target.relative, _sha(change.before), sha256_hex(change.after))
                for change in self.files
            ),
            manifest_before=self.manifest_before.to_json() if self.manifest_before else None,
            manifest_after=self.manifest_after.to_json() if self.manifest_after else None,
            remembered_before=self.remembered_before,
            remembered_after=self.remembered_after,
        )


class Transaction:
    """``with Transaction(changes, prefix) as transaction: transaction.write(); <verify>`` —
    commits when the body ends, rolls every flavour back if it raises."""

    def __init__(self, changes: Iterable[FlavourChange], pycache_prefix: Path | None = None) -> None:
        self.changes = [change for change in changes if _changes_anything(change)]
        self.pycache_prefix = pycache_prefix
        self._begun: list[FlavourChange] = []

    def __enter__(self) -> Transaction:
        try:
            for change in self.changes:
                # Left by a run killed after its commit point: never put back.
                shutil.rmtree(set_aside_folder(change.flavour), ignore_errors=True)
            for change in self.changes:
                _write_journal(change.flavour, change.journal())
                self._begun.append(change)
        except BaseException as error:
            self._roll_back(error)
        return self

    def write(self) -> None:
        """Change every file. Bytecode first: bytecode we cannot delete changes nothing."""
        for change in self.changes:
            for file in change.files:
                remove_bytecode(file.target.path, self.pycache_prefix)
        for change in self.changes:
            _write(change, self.pycache_prefix)
        pauses.pause(pauses.WRITTEN)

    def __exit__(self, kind, error, traceback) -> bool:
        if error is not None:
            self._roll_back(error)
        try:
            for change in self.changes:
                _require_in_place(change.flavour, change.journal())
        except BaseException as failure:  # a run that cannot commit is rolled back
            self._roll_back(failure)
        # The commit point: from here on an interruption is finished, not undone.
        committed = [replace(change.journal(), phase=Phase.COMMITTED) for change in self.changes]
        for change, journal in zip(self.changes, committed):
            _write_journal(change.flavour, journal)
        try:
            for change, journal in zip(self.changes, committed):
                finish(change.flavour, journal)
        except KeyboardInterrupt:
            raise errors.Interrupted(
                "interrupted (Ctrl-C) after the change was complete; the next convlstm-patch command finishes its cleanup"
            ) from None
        return False

    def _roll_back(self, error: BaseException) -> None:
        """Undo every flavour begun, then raise ``error`` (Ctrl-C as one Error line, exit 130)."""
        problems = []
        for change in self._begun:
            if journal_path(change.flavour).exists():
                try:
                    undo(change.flavour, change.journal(), self.pycache_prefix)
                except errors.PatchError as failure:
                    problems.append(f"{change.flavour.key}: {failure.message}")
        if isinstance(error, KeyboardInterrupt):
            error = errors.Interrupted("interrupted (Ctrl-C); every change of this run was rolled back")
        if problems:
            message = f"{error}; rolling back failed too ({'; '.join(problems)}): the next convlstm-patch command finishes it"
            if not isinstance(error, errors.PatchError):
                raise errors.PatchError(message) from None
            error.message = message  # same kind, exit code and attached reports
        raise error from None


def recover_all(flavours: Iterable[Flavour], pycache_prefix: Path | None = None) -> list[str]:
    """Under the lock: settle every interrupted run, and delete what killed writes left; what was done."""
    flavours = list(flavours)
    sweep_temp_files(flavours)
    notes = []
    for flavour in flavours:
        journal = read_journal(flavour)
        if journal is not None:
            notes.append(f"{flavour.key}: {recover(flavour, journal, pycache_prefix)}")
    return notes


def recover(flavour: Flavour, journal: Journal, pycache_prefix: Path | None = None) -> str:
    """Settle a run that was cut short: undo it, or finish it after its commit point. Says which."""
    if journal.phase == Phase.COMMITTED:
        finish(flavour, journal)
        return f"recovered an interrupted {journal.description}: it had completed; finished its cleanup"
    undo(flavour, journal, pycache_prefix)
    return f"recovered an interrupted {journal.description}: rolled back, every file is as it was before it"


def undo(flavour: Flavour, journal: Journal, pycache_prefix: Path | None = None) -> list[str]:
    """The one undo: put back every file, the manifest and the remembered layer sets as they
    were before the run; the files put back. The journal is removed last, so an undo that is
    itself cut short is done again by the next command."""
    site, restored = flavour.site, []
    for entry in journal.files:
        path, kept = site / entry.path, set_aside_path(flavour, entry.path)
        if kept.exists():
            changed = not (path.exists() and kept.samefile(path))
            move_back(kept, path)
        elif _sha_of(path) == entry.before:
            continue  # never replaced: the run stopped before it
        elif entry.before is None:
            path.unlink(missing_ok=True)  # it was missing before the run (revert restored it)
            changed = True
        else:
            raise errors.BackupProblem(
                f"cannot put {entry.path} back as it was before the interrupted run (no copy of it is left); "
                f"nothing else was changed. Restore Keras with `{flavour.reinstall_command}`"
            )
        if changed:
            remove_bytecode(path, pycache_prefix, best_effort=True)
            restored.append(entry.path)
    if journal.manifest_before is None:
        if journal.manifest_after is not None:  # the run made this backup: it goes with the run
            _delete_backup(flavour, journal.manifest_after)
    else:
        _write_json(manifest_path(flavour), journal.manifest_before)
        _delete_copies(flavour, _paths(journal.manifest_after) - _paths(journal.manifest_before))
    _write_remembered(flavour, journal.remembered_before)
    shutil.rmtree(set_aside_folder(flavour), ignore_errors=True)
    journal_path(flavour).unlink(missing_ok=True)
    return restored


def finish(flavour: Flavour, journal: Journal) -> None:
    """After the commit point: delete what the run made unneeded, then the journal.

    A backup, or a copy of one, goes only when every file it covers is in
    place and byte-identical to its original; otherwise it is kept and the
    command fails (exit 8), the journal with it.
    """
    _require_in_place(flavour, journal)
    gone = _paths(journal.manifest_before) - _paths(journal.manifest_after)
    if gone:
        pauses.pause(pauses.BEFORE_BACKUP_DELETE)
    if journal.manifest_after is None and journal.manifest_before is not None:
        _delete_backup(flavour, journal.manifest_before)
    else:
        _delete_copies(flavour, gone)
    shutil.rmtree(set_aside_folder(flavour), ignore_errors=True)
    journal_path(flavour).unlink(missing_ok=True)


def delete_unneeded_backup(folder: Path) -> None:
    """`clean`: a backup never restored (another version's, or damaged and not needed).
    Manifest first: a backup without its manifest is never trusted or restored."""
    (folder / "manifest.json").unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def _write(change: FlavourChange, pycache_prefix: Path | None) -> None:
    flavour = change.flavour
    if change.operation == Operation.APPLY:
        # The backup is complete (copies, then its manifest) before the first file changes.
        new = {entry.path for entry in change.manifest_after.files} - _paths(_json(change.manifest_before))
        for relative in sorted(new):
            _keep_original(flavour, relative, change.originals[relative])
        if change.manifest_after != change.manifest_before:
            _write_json(manifest_path(flavour), change.manifest_after.to_json())
    for file in change.files:
        path = file.target.path
        if path.exists():
            ensure_folder(set_aside_folder(flavour))
            link_copy(path, set_aside_path(flavour, file.target.relative))  # a rollback renames it back
        copy = backup_copy(flavour, file.target.relative)
        if change.originals.get(file.target.relative) == file.after and _sha_of(copy) == sha256_hex(file.after):
            link_copy(copy, path)  # the original, from its backup copy: no new space
        else:
            atomic_write(path, file.after)
        remove_bytecode(path, pycache_prefix)
    if change.operation == Operation.REVERT and change.manifest_after is not None:
        if change.manifest_after != change.manifest_before:
            _write_json(manifest_path(flavour), change.manifest_after.to_json())
    if change.remembered_after != change.remembered_before:
        _write_remembered(flavour, change.remembered_after)


def _keep_original(flavour: Flavour, relative: str, data: bytes) -> None:
    """A backup copy: a hard link of the live file when it is the original (no new space)."""
    copy = backup_copy(flavour, relative)
    ensure_folder(copy.parent)
    live = flavour.site / relative
    if live.exists() and live.read_bytes() == data:
        link_copy(live, copy)
    else:
        atomic_write(copy, data)


def _require_in_place(flavour: Flavour, journal: Journal) -> None:
    """Every file whose backup copy the run drops is its original again, byte for byte."""
    before = {entry["path"]: entry["before"] for entry in (journal.manifest_before or {}).get("files", ())}
    kept = _paths(journal.manifest_after)
    for relative, original in before.items():
        if relative in kept:
            continue
        if _sha_of(flavour.site / relative) != original:
            raise errors.BackupProblem(
                f"{relative} of {flavour.key} is not its original after the revert, so its backup in "
                f"{backup_folder(flavour)} is kept; run `convlstm-patch revert` again, or restore Keras with "
                f"`{flavour.reinstall_command}`"
            )


def _delete_backup(flavour: Flavour, manifest: dict) -> None:
    """The backup of this version goes: only once every file it covers is its original in place."""
    for entry in manifest["files"]:
        if _sha_of(flavour.site / entry["path"]) != entry["before"]:
            raise errors.BackupProblem(
                f"{entry['path']} of {flavour.key} differs from its original, so the backup in "
                f"{backup_folder(flavour)} is kept; run `convlstm-patch revert`, or restore Keras with "
                f"`{flavour.reinstall_command}`"
            )
    delete_unneeded_backup(backup_folder(flavour))


def _delete_copies(flavour: Flavour, relatives: Iterable[str]) -> None:
    for relative in relatives:
        backup_copy(flavour, relative).unlink(missing_ok=True)


def _changes_anything(change: FlavourChange) -> bool:
    return bool(change.files) or change.manifest_after != change.manifest_before or (
        change.remembered_after != change.remembered_before
    )


def _paths(manifest: dict | None) -> set[str]:
    return {entry["path"] for entry in manifest["files"]} if manifest else set()


def _json(manifest: Manifest | None) -> dict | None:
    return manifest.to_json() if manifest else None


def _sha(data: bytes | None) -> str | None:
    return sha256_hex(data) if data is not None else None


def _sha_of(path: Path) -> str | None:
    try:
        return sha256_hex(path.read_bytes())
    except FileNotFoundError:
        return None


def _write_json(path: Path, data: dict) -> None:
    ensure_folder(path.parent)
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def _write_remembered(flavour: Flavour, layer_sets: tuple[LayerSet, ...]) -> None:
    path = remembered_path(flavour)
    if layer_sets:
        _write_json(path, remembered_json(layer_sets))
    else:
        path.unlink(missing_ok=True)


def _write_journal(flavour: Flavour, journal: Journal) -> None:
    _write_json(journal_path(flavour), journal.to_json())


class EnvironmentLock:
    """Hold the lock of every environment folder involved (in a fixed order).

    Never follows a symlink out of the Keras package or the state folder: the
    target files, the state folder and the lock file are checked before the
    lock is taken; what lies inside the state folder once it is held, when no
    other run can be deleting it.
    """

    def __init__(self, flavours: Iterable[Flavour], timeout: float = DEFAULT_LOCK_TIMEOUT, sites: Iterable[Path] = ()):
        self.flavours = list(flavours)
        self.sites = sorted({flavour.site for flavour in self.flavours} | set(sites))
        self.timeout = timeout
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> EnvironmentLock:
        import filelock

        for flavour in self.flavours:
            for target in flavour.files:
                _refuse_link(target.path)
        for site in self.sites:
            _refuse_link(state_folder(site))
            _refuse_link(lock_file(site))
        try:
            for site in self.sites:
                folder = state_folder(site)
                ensure_folder(folder)
                _refuse_link(lock_file(site))
                lock = filelock.FileLock(str(lock_file(site)), timeout=self.timeout)
                try:
                    self._stack.enter_context(lock)
                except filelock.Timeout:
                    raise errors.Busy(
                        f"another convlstm-patch has been working on {site} for over {self.timeout:.0f} s; "
                        "wait for it to finish, or run again with a longer --lock-timeout"
                    ) from None
                except OSError as error:
                    raise errors.WriteFailed(
                        f"cannot create the lock in {folder}: {error.strerror}. Run as the user that owns this "
                        "environment, or use a virtual environment you own"
                    ) from None
                with contextlib.suppress(OSError):  # a root-owned lock only costs the owner a retry as root
                    take_owner(lock_file(site), folder)
                for path in folder.rglob("*"):
                    _refuse_link(path)
        except BaseException:
            self._stack.close()
            raise
        pauses.pause(pauses.LOCKED)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


def _refuse_link(path: Path) -> None:
    # The site folder is already resolved, so any difference between a path
    # and its resolved form is a link below it.
    if path.is_symlink() or ((path.exists()) and path.resolve() != path.absolute()):
        raise errors.UnsafePath(
            f"{path} is or passes through a symlink (to {path.resolve()}); convlstm-patch never writes "
            "through links. Replace the link with the real folder or file, then run again"
        )


def temp_files_of(path: Path) -> list[Path]:
    """The temp files a killed atomic write of ``path`` left (fsops names them .NAME.*.tmp)."""
    return list(path.parent.glob(f".{path.name}.*.tmp"))


def sweep_temp_files(flavours: Iterable[Flavour]) -> None:
    """Delete what killed atomic writes left: temp files, never a real file (under the lock: a
    running write's temp file is not a leftover)."""
    for flavour in flavours:
        leftovers = [path for target in flavour.files for path in temp_files_of(target.path)]
        folder = state_folder(flavour.site)
        if folder.is_dir():
            leftovers += folder.rglob(".*.tmp")
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)

