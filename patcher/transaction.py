"""All or nothing: the Transaction that carries out a command's decision, and recovery.

A :class:`Transaction` carries out the changes a command decided (patcher/
planning.py) for every flavour of one environment at once, the way pip's
uninstall stashes files: the caller holds it, ``write`` changes the files,
leaving the context commits, and an exception rolls back. Unlike pip's, its
journal is on disk, one per environment and run
(``<site>/.convlstm-patch/journal.json``), written before the first change:

- it is bound to what is installed: per flavour, the distribution, version,
  dist-info and the identity of the RECORD pip wrote; recovery never touches
  a distribution's files once pip has replaced, removed or reinstalled it;
- it names every file the run changes, the package's and ours (backup copies,
  the backup's manifest, the chosen layer sets), each with the sha256 it
  expects before and after. Recovery moves a file only when the live file has
  exactly the hash it expects, so it never writes over what someone else put
  there, and never puts one version's file into another;
- its committed form is written beside it before the first change, so the
  commit point, renaming that over the journal, needs no new disk space and
  covers every flavour at once.

Every file a run replaces or deletes is first kept in the set-aside folder (a
hard link, or the file itself renamed), so the one undo (:func:`undo`) only
renames files back and deletes files the run made: it needs no new space and
runs at once when a write fails (disk full, read-only folder), when the
verification fails, or on Ctrl-C, and from the journal in the next command when
the run died (SIGKILL, power loss). A backup copy goes only once the file it
covers is its original again (checked right before the commit point); a run
killed after the commit point is finished by the next command, not undone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from patcher import errors, fsops, pauses
from patcher.environment import Flavour, TargetFile
from patcher.hashing import sha256_hex
from patcher.layersets import LayerSet
from patcher.store import (
    Binding,
    Entry,
    Journal,
    Manifest,
    Operation,
    Phase,
    backup_copy,
    backups_root,
    commit_path,
    journal_path,
    manifest_path,
    read_journal,
    chosen_json,
    chosen_path,
    set_aside_folder,
    set_aside_path,
    state_folder,
)


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
    chosen_before: tuple[LayerSet, ...] = ()
    chosen_after: tuple[LayerSet, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Write:
    """One file's change: its journal entry and where its new bytes come from."""

    entry: Entry
    data: bytes | None = field(repr=False, default=None)  # None: the file is deleted
    link_from: Path | None = None  # the same bytes as this file: linked, needing no new space


class Transaction:
    """``with Transaction(changes, prefix) as transaction: transaction.write(); <verify>`` —
    commits when the body ends, rolls every flavour back if it raises."""

    def __init__(self, changes: Iterable[FlavourChange], pycache_prefix: Path | None = None) -> None:
        self.changes = [change for change in changes if _changes_anything(change)]
        self.pycache_prefix = pycache_prefix
        sites = sorted({change.flavour.site for change in self.changes})
        if len(sites) > 1:
            raise errors.Unsupported(separate_sites_message(sites))
        self.site = sites[0] if sites else None
        self.journal: Journal | None = None
        self.writes: list[Write] = []

    def __enter__(self) -> Transaction:
        if self.site is None:
            return self
        site = self.site
        self.writes = [write for change in self.changes for write in _writes(change)]
        operations = {change.operation for change in self.changes}
        self.journal = Journal(
            operation=operations.pop(),
            layer_sets=max((change.layer_sets for change in self.changes), key=len),
            bindings=tuple(binding(change.flavour) for change in self.changes),
            entries=tuple(write.entry for write in self.writes),
        )
        # Left by a run killed after its commit point, or by hand: never put back.
        fsops.delete_tree(set_aside_folder(site))
        try:
            fsops.ensure_folder(state_folder(site))
            _write_json(journal_path(site), self.journal.to_json())
            _write_json(commit_path(site), replace(self.journal, phase=Phase.COMMITTED).to_json())
        except BaseException as error:
            # Nothing else was changed yet: whatever of the journal exists goes.
            for path in (commit_path(site), journal_path(site)):
                _quietly(fsops.delete, path)
            if journal_path(site).exists() and isinstance(error, errors.PatchError):
                error.message += "; the next convlstm-patch command removes the journal it began"
            raise _as_interrupted(error, "nothing was changed") from None
        return self

    def write(self) -> None:
        """Change every file. Bytecode first: bytecode we cannot delete changes nothing."""
        for write in self.writes:
            if write.entry.package:
                fsops.remove_bytecode(self.site / write.entry.path, self.pycache_prefix)
        for write in self.writes:
            _carry_out(self.site, write, self.pycache_prefix)
        pauses.pause(pauses.WRITTEN)

    def __exit__(self, kind, error, traceback) -> bool:
        if self.site is None or self.journal is None:
            return False
        site = self.site
        if error is not None:
            self._roll_back(error)
        try:
            _require_originals(site, self.journal)
            # The commit point, for every flavour at once: from here on an interruption is
            # finished, not undone. A rename: it needs no new space.
            fsops.move(commit_path(site), journal_path(site))
        except BaseException as failure:
            self._roll_back(failure)
        try:
            finish(site, self.journal)
        except KeyboardInterrupt:
            raise errors.Interrupted(
                "interrupted (Ctrl-C) after the change was complete; the next convlstm-patch command finishes its cleanup"
            ) from None
        except errors.PatchError as failure:
            raise errors.PatchError(
                f"the change is complete, but cleaning up after it failed ({failure.message}); the next "
                "convlstm-patch command finishes it"
            ) from None
        return False

    def _roll_back(self, error: BaseException) -> None:
        """Undo every flavour, then raise ``error`` (Ctrl-C as one Error line, exit 130)."""
        try:
            left = undo(self.site, self.journal, self.pycache_prefix)
        except BaseException as failure:
            # The journal is still there: the next command settles the run.
            problem = failure.message if isinstance(failure, errors.PatchError) else type(failure).__name__
            message = error.message if isinstance(error, errors.PatchError) else str(error) or type(error).__name__
            raise errors.PatchError(
                f"{message}; rolling back failed too ({problem}): the next convlstm-patch command finishes it"
            ) from None
        changed = sorted(path for paths in left.values() for path in paths)
        if changed and isinstance(error, errors.PatchError):
            error.message += f" ({', '.join(changed)} changed meanwhile by another program: left as found)"
        raise _as_interrupted(error, "every change of this run was rolled back") from None


def separate_sites_message(sites: list[Path]) -> str:
    return (
        f"keras and tf_keras are installed in different folders ({' and '.join(map(str, sites))}), which "
        "convlstm-patch does not change in one step; change them one at a time: `--only keras`, then `--only tf_keras`"
    )


def _as_interrupted(error: BaseException, what: str) -> BaseException:
    if isinstance(error, KeyboardInterrupt):
        return errors.Interrupted(f"interrupted (Ctrl-C); {what}")
    return error


def binding(flavour: Flavour) -> Binding:
    """What is installed now: the distribution's dist-info and the identity of its RECORD."""
    return Binding(flavour.distribution, flavour.version, flavour.dist_info, record_identity(flavour.site, flavour.dist_info))


def record_identity(site: Path, dist_info: str) -> str:
    """sha256, inode and mtime of the RECORD pip wrote (its METADATA where it has none): a
    reinstall of the same version writes a new one. Empty when there is none."""
    if not dist_info:
        return ""
    for name in ("RECORD", "METADATA"):
        path = site / dist_info / name
        try:
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
        return f"{digest}:{stat.st_ino}:{stat.st_mtime_ns}"
    return ""


def _still_installed(site: Path, bound: Binding) -> bool:
    return bool(bound.record) and record_identity(site, bound.dist_info) == bound.record


# -- recovery -----------------------------------------------------------------------------------


def recover_all(flavours: Iterable[Flavour], pycache_prefix: Path | None = None, sites: Iterable[Path] = ()) -> list[str]:
    """Under the lock: settle the interrupted run of each site folder (the flavours', and
    ``sites``), and delete what killed writes left; what was done, one line per flavour the run changed."""
    flavours = list(flavours)
    notes = []
    for site in sorted({flavour.site for flavour in flavours} | set(sites)):
        journal = read_journal(site)
        if journal is not None:
            notes += recover(site, journal, pycache_prefix)
        elif set_aside_folder(site).exists():
            fsops.delete_tree(set_aside_folder(site))  # a finished run's, or its journal deleted by hand
    sweep_temp_files(flavours)
    return notes


def recover(site: Path, journal: Journal, pycache_prefix: Path | None = None) -> list[str]:
    """Settle a run that was cut short: undo it, or finish it after its commit point. Says which."""
    prefix = f"recovered an interrupted {journal.description}"
    if journal.phase == Phase.COMMITTED:
        finish(site, journal)
        return [f"{_key(bound)}: {prefix}: it had completed; finished its cleanup" for bound in journal.bindings]
    left = undo(site, journal, pycache_prefix)
    notes = []
    for bound in journal.bindings:
        if not _still_installed(site, bound):
            notes.append(
                f"{_key(bound)}: {prefix}: pip has replaced, reinstalled or removed {bound.distribution} "
                f"{bound.version} since, so its files were left as pip installed them (a backup of it is "
                "removed by `convlstm-patch clean`)"
            )
        elif left.get(bound.distribution):
            notes.append(
                f"{_key(bound)}: {prefix}: rolled back, except {', '.join(left[bound.distribution])}, changed "
                "since by something else and left as found"
            )
        else:
            notes.append(f"{_key(bound)}: {prefix}: rolled back, every file is as it was before it")
    return notes


def undo(site: Path, journal: Journal, pycache_prefix: Path | None = None) -> dict[str, list[str]]:
    """The one undo: put every file back as it was before the run, from the set-aside, renaming
    only (no new space). A file is moved only when it holds exactly what the run left there,
    and never into a distribution pip has replaced since. The journal goes last, so an undo
    that is itself cut short is done again by the next command. Returns, per distribution,
    the files left as found because something else changed them."""
    current = {bound.distribution: _still_installed(site, bound) for bound in journal.bindings}
    left: dict[str, list[str]] = {}
    for entry in reversed(journal.entries):
        if entry.package and not current.get(entry.distribution, False):
            continue
        path, kept = site / entry.path, set_aside_path(site, entry.path)
        live = _sha_of(path)
        if live == entry.before:
            continue  # never changed (the run stopped before it), or already put back
        if live != entry.after:
            left.setdefault(entry.distribution, []).append(entry.path)
            continue
        if entry.before is None:
            fsops.delete(path)  # the run made it
        elif _sha_of(kept) == entry.before:
            fsops.move(kept, path)
        else:
            left.setdefault(entry.distribution, []).append(entry.path)
            continue
        if entry.package:
            fsops.remove_bytecode(path, pycache_prefix, best_effort=True)
    fsops.delete_tree(set_aside_folder(site))
    fsops.delete(commit_path(site))
    fsops.delete(journal_path(site))
    return left


def finish(site: Path, journal: Journal) -> None:
    """After the commit point: delete what the run set aside (the files it replaced, the backup
    copies it dropped), the folders left empty, then the journal."""
    dropped = [entry for entry in journal.entries if entry.covers is not None and entry.after is None]
    if dropped:
        pauses.pause(pauses.BEFORE_BACKUP_DELETE)
    fsops.delete_tree(set_aside_folder(site))
    for entry in dropped:
        fsops.delete_empty_folders((site / entry.path).parent, backups_root(site))
    fsops.delete(commit_path(site))
    fsops.delete(journal_path(site))


def delete_unneeded_backup(folder: Path) -> None:
    """`clean`: a backup never restored (another version's, or damaged and not needed).
    Manifest first: a backup without its manifest is never trusted or restored."""
    fsops.delete(folder / "manifest.json")
    fsops.delete_tree(folder)


# -- carrying a change out -------------------------------------------------------------------------


def _writes(change: FlavourChange) -> list[Write]:
    """Every file the change writes or deletes, in one order for apply and revert: the new
    backup copies before the files they keep, the files, then the copies no longer needed (after
    their files are originals again), the manifest and the chosen sets."""
    flavour = change.flavour
    copies_before, copies_after = _paths(change.manifest_before), _paths(change.manifest_after)
    writes: list[Write] = []

    def ours(path: Path, data: bytes | None, covers: str | None = None, link_from: Path | None = None) -> None:
        before, after = _sha_of(path), (sha256_hex(data) if data is not None else None)
        if before != after:
            relative = str(path.relative_to(flavour.site))
            writes.append(Write(Entry(relative, before, after, flavour.distribution, False, covers), data, link_from))

    for relative in sorted(copies_after - copies_before):
        original = change.originals[relative]
        live = flavour.site / relative
        ours(backup_copy(flavour, relative), original, relative, live if _sha_of(live) == sha256_hex(original) else None)
    for file in change.files:
        original = change.originals.get(file.target.relative)
        copy = backup_copy(flavour, file.target.relative)
        restoring = original == file.after and _sha_of(copy) == sha256_hex(file.after)
        entry = Entry(file.target.relative, _sha(file.before), sha256_hex(file.after), flavour.distribution, True)
        writes.append(Write(entry, file.after, copy if restoring else None))
    for relative in sorted(copies_before - copies_after):
        ours(backup_copy(flavour, relative), None, relative)
    if change.manifest_after != change.manifest_before:
        manifest = change.manifest_after
        ours(manifest_path(flavour), _json_bytes(manifest.to_json()) if manifest is not None else None)
    if change.chosen_after != change.chosen_before:
        chosen = change.chosen_after
        ours(chosen_path(flavour), _json_bytes(chosen_json(chosen)) if chosen else None)
    return writes


def _carry_out(site: Path, write: Write, pycache_prefix: Path | None) -> None:
    """One file: keep what is there in the set-aside, then write, link or delete."""
    entry = write.entry
    path, kept = site / entry.path, set_aside_path(site, entry.path)
    if _sha_of(path) != entry.before:
        raise errors.ModifiedFiles(
            f"{entry.path} changed while convlstm-patch was working on it (pip, or another program?); "
            "nothing was changed. Run the command again"
        )
    if entry.before is not None:
        fsops.ensure_folder(kept.parent)
        if entry.after is None:
            fsops.move(path, kept)  # a deletion is a rename: put back by renaming
            return
        fsops.link_copy(path, kept)
    fsops.ensure_folder(path.parent)
    if write.link_from is not None:
        fsops.link_copy(write.link_from, path)
    else:
        fsops.atomic_write(path, write.data)
    if entry.package:
        fsops.remove_bytecode(path, pycache_prefix)


def _require_originals(site: Path, journal: Journal) -> None:
    """A backup copy goes only when the file it covers is its original again, byte for byte."""
    for entry in journal.entries:
        if entry.covers is not None and entry.after is None and _sha_of(site / entry.covers) != entry.before:
            distribution = entry.distribution
            raise errors.BackupProblem(
                f"{entry.covers} of {distribution} is not its original after the revert, so its backup is kept; "
                f"run `convlstm-patch revert` again, or reinstall {distribution}"
            )


# -- leftovers of killed writes --------------------------------------------------------------------


def temp_files_of(path: Path) -> list[Path]:
    """The temp files a killed write of ``path`` left (fsops names them .NAME.*.tmp)."""
    return list(path.parent.glob(f".{path.name}.*.tmp"))


def sweep_temp_files(flavours: Iterable[Flavour]) -> None:
    """Delete what killed writes left: temp files and folders, never a real one (under the
    lock: a running write's temp file is not a leftover)."""
    for flavour in flavours:
        leftovers = [path for target in flavour.files for path in temp_files_of(target.path)]
        folder = state_folder(flavour.site)
        if folder.is_dir():
            leftovers += folder.rglob(".*.tmp")
        leftovers += flavour.site.glob(f".{folder.name}.*.tmp")  # the state folder, made under a temp name
        for leftover in sorted(leftovers, key=lambda path: len(path.parts), reverse=True):
            _quietly(fsops.delete_tree if leftover.is_dir() else fsops.delete, leftover)


# -- small helpers ---------------------------------------------------------------------------------


def _changes_anything(change: FlavourChange) -> bool:
    return bool(change.files) or change.manifest_after != change.manifest_before or (
        change.chosen_after != change.chosen_before
    )


def _paths(manifest: Manifest | None) -> set[str]:
    return {entry.path for entry in manifest.files} if manifest else set()


def _key(bound: Binding) -> str:
    return f"{bound.distribution}-{bound.version}"


def _sha(data: bytes | None) -> str | None:
    return sha256_hex(data) if data is not None else None


def _sha_of(path: Path) -> str | None:
    try:
        return sha256_hex(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _write_json(path: Path, data: dict) -> None:
    fsops.ensure_folder(path.parent)
    fsops.atomic_write(path, _json_bytes(data))


def _quietly(function, path: Path) -> None:
    try:
        function(path)
    except errors.PatchError:
        pass
