"""All or nothing: the Transaction that carries out a command's decision.

A :class:`Transaction` carries out the changes a command decided (patcher/
planning.py) for every flavour of one environment at once, the way pip's
uninstall stashes files: the caller holds it, ``write`` changes the files,
leaving the context commits, and an exception rolls back. Unlike pip's, its
journal is on disk, one per environment and run
(``<site>/.convlstm-patch/journal.json``), written before the first change:

- it is bound to what is installed: per flavour, the distribution, version,
  dist-info and the sha256 of the RECORD pip wrote;
- it names every file the run changes, the package's and ours (backup copies,
  the backup's manifest, the chosen layer sets), each with the sha256 it
  expects before and after;
- its committed form is written beside it before the first change, so the
  commit point, renaming that over the journal, needs no new disk space and
  covers every flavour at once.

Beside each file it changes, a run keeps the file it replaces or deletes
(``.NAME.convlstm-patch-kept.tmp``, a hard link: no new space) and a hard link
to the file it writes (``.NAME.convlstm-patch-ours.tmp``). Each write is a
compare-and-swap (fsops.swap_in): it replaces only the very file that was
kept. Before the commit point the run checks that nothing changed under it:
every file is still the one it wrote and every distribution the one it found.
A failure rolls back with the one undo (patcher/recovery.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, final

from patcher import bytecode, errors, fsops, interrupts, pauses
from patcher.environment import Flavour, TargetFile
from patcher.hashing import sha256_hex, sha256_of
from patcher.layersets import LayerSet
from patcher.recovery import binding, finish, interference, quietly, replaced_since, sha_of, undo
from patcher.store import (
    Entry,
    Journal,
    Manifest,
    Operation,
    Phase,
    backup_copy,
    chosen_json,
    chosen_path,
    commit_path,
    journal_path,
    kept_path,
    manifest_path,
    ours_path,
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


@final  # one transaction per run: no subclass changes what __enter__ returns
class Transaction:
    """``with Transaction(changes, prefix, lock) as transaction: transaction.write(); <verify>`` —
    commits when the body ends, rolls every flavour back if it raises."""

    def __init__(self, changes: Iterable[FlavourChange], pycache_prefix: Path | None = None, lock=None) -> None:
        self.changes = [change for change in changes if _changes_anything(change)]
        self.pycache_prefix = pycache_prefix
        self.lock = lock  # the EnvironmentLock held: still ours right before the commit point?
        sites = sorted({change.flavour.site for change in self.changes})
        assert len(sites) <= 1, "one site folder a transaction (commands._require_one_site)"
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
        try:
            fsops.ensure_folder(state_folder(site))
            _write_json(journal_path(site), self.journal.to_json())
            _write_json(commit_path(site), replace(self.journal, phase=Phase.COMMITTED).to_json())
        except BaseException as failure:  # noqa: BLE001  (Ctrl-C and bugs too: the journal goes, then it re-raises)
            # Nothing else was changed yet: whatever of the journal exists goes (a second Ctrl-C waits).
            error: BaseException = failure
            try:
                with interrupts.deferred():
                    for path in (commit_path(site), journal_path(site)):
                        quietly(fsops.delete, path)
            except KeyboardInterrupt as signal:
                error = signal
            if journal_path(site).exists() and isinstance(error, errors.PatchError):
                error.message += "; the next convlstm-patch command removes the journal it began"
            raise _as_interrupted(error, "nothing was changed") from None
        return self

    def write(self) -> None:
        """Change every file. Bytecode first: bytecode we cannot delete changes nothing."""
        if self.site is None:
            return  # nothing to change
        for write in self.writes:
            if write.entry.package:
                bytecode.remove(self.site / write.entry.path, self.pycache_prefix)
        for write in self.writes:
            _carry_out(self.site, write, self.pycache_prefix)
        pauses.pause(pauses.WRITTEN)

    def __exit__(self, kind, error, traceback) -> Literal[False]:
        if self.site is None or self.journal is None:
            return False
        site, journal = self.site, self.journal
        if error is not None:
            self._roll_back(error)
        try:
            changed_under = interference(site, journal)
            if changed_under is not None:
                raise errors.ModifiedFiles(changed_under)
            _require_originals(site, journal)
            if self.lock is not None and not self.lock.held():
                raise errors.Busy(
                    "the environment's lock file was deleted while this run held it, so another run may be "
                    "working here too; run the command again"
                )
        except BaseException as failure:  # noqa: BLE001  (anything: roll back, then re-raise)
            self._roll_back(failure)
        # The commit point, for every flavour at once: one rename, no new space, never half-done
        # (Ctrl-C waits for it). From here on an interruption is finished, not undone.
        committed = False
        try:
            with interrupts.deferred():
                fsops.move(commit_path(site), journal_path(site))
                committed = True
        except KeyboardInterrupt:
            if not committed:
                self._roll_back(KeyboardInterrupt())
            interrupted = True
        except BaseException as failure:  # noqa: BLE001  (anything: roll back, then re-raise)
            self._roll_back(failure)
        else:
            interrupted = False
        try:
            finish(site, journal)
        except KeyboardInterrupt:
            interrupted = True
        except errors.PatchError as failure:
            raise errors.PatchError(
                f"the change is complete, but cleaning up after it failed ({failure.message}); the next "
                "convlstm-patch command finishes it"
            ) from None
        if interrupted:
            raise errors.Interrupted(
                "interrupted (Ctrl-C) after the change was complete; the next convlstm-patch command finishes its "
                "cleanup, if any is left"
            )
        return False

    def _roll_back(self, error: BaseException) -> None:
        """Undo every flavour (Ctrl-C waits for it: a few renames), then raise ``error`` (Ctrl-C as
        one Error line, exit 130); an interference found meanwhile is said instead of ``error``."""
        assert self.site is not None and self.journal is not None  # rolled back only once begun
        site, journal = self.site, self.journal
        replaced = replaced_since(site, journal) if not isinstance(error, errors.ModifiedFiles) else None
        if replaced is not None and not isinstance(error, KeyboardInterrupt):
            error = errors.ModifiedFiles(replaced)  # what made the run fail (a verification of files pip replaced)
        left: dict[str, list[str]] = {}
        try:
            with interrupts.deferred():
                left = undo(site, journal, self.pycache_prefix)
        except KeyboardInterrupt as signal:
            error = signal  # asked to stop while rolling back: the rollback finished first
        except BaseException as failure:  # noqa: BLE001  (a failed rollback is reported, never lost)
            # The journal is still there: the next command settles the run.
            problem = failure.message if isinstance(failure, errors.PatchError) else type(failure).__name__
            message = (
                "interrupted (Ctrl-C)" if isinstance(error, KeyboardInterrupt)
                else error.message if isinstance(error, errors.PatchError) else str(error) or type(error).__name__
            )  # fmt: skip
            kind = errors.Interrupted if isinstance(error, KeyboardInterrupt) else errors.PatchError
            raise kind(
                f"{message}; rolling back failed too ({problem}): the next convlstm-patch command finishes it"
            ) from None
        changed = sorted(path for paths in left.values() for path in paths)
        if changed and isinstance(error, errors.PatchError):
            error.message += f" ({', '.join(changed)} changed meanwhile by another program: left as found)"
        raise _as_interrupted(error, "every change of this run was rolled back") from None


def _as_interrupted(error: BaseException, what: str) -> BaseException:
    if isinstance(error, KeyboardInterrupt):
        return errors.Interrupted(f"interrupted (Ctrl-C); {what}")
    return error


# -- carrying a change out -------------------------------------------------------------------------


def _writes(change: FlavourChange) -> list[Write]:
    """Every file the change writes or deletes, in one order for apply and revert: the new
    backup copies before the files they keep, the files, then the copies no longer needed (after
    their files are originals again), the manifest and the chosen sets."""
    flavour = change.flavour
    copies_before, copies_after = _paths(change.manifest_before), _paths(change.manifest_after)
    writes: list[Write] = []

    def ours(path: Path, data: bytes | None, covers: str | None = None, link_from: Path | None = None) -> None:
        before, after = sha_of(path), sha256_of(data)
        if before != after:
            relative = str(path.relative_to(flavour.site))
            writes.append(Write(Entry(relative, before, after, flavour.distribution, False, covers), data, link_from))

    for relative in sorted(copies_after - copies_before):
        original = change.originals[relative]
        live = flavour.site / relative
        ours(backup_copy(flavour, relative), original, relative, live if sha_of(live) == sha256_hex(original) else None)
    for file in change.files:
        kept_original = change.originals.get(file.target.relative)
        copy = backup_copy(flavour, file.target.relative)
        restoring = kept_original == file.after and sha_of(copy) == sha256_hex(file.after)
        entry = Entry(file.target.relative, sha256_of(file.before), sha256_hex(file.after), flavour.distribution, True)
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
    """One file: keep what is there beside it, then write, link or delete, replacing only the
    very file kept (a compare-and-swap): a file another program put there meanwhile stays."""
    entry = write.entry
    path, kept, ours = site / entry.path, kept_path(site, entry.path), ours_path(site, entry.path)
    try:
        if sha_of(path) != entry.before:
            raise fsops.Changed(path)
        if entry.before is not None:
            fsops.keep(path, kept)
            if sha_of(kept) != entry.before:
                raise fsops.Changed(path)
            if entry.after is None:
                fsops.take_away(path, kept, entry.before)  # a deletion: put back by renaming the kept file
                return
        fsops.ensure_folder(path.parent)
        temp = fsops.stage(path, write.data, write.link_from)
        try:
            fsops.keep(temp, ours)
            fsops.swap_in(temp, path, kept if entry.before is not None else None, entry.before)
        finally:
            fsops.remove_quietly(temp)  # gone once swapped in; still there if this failed
    except fsops.Changed:
        raise errors.ModifiedFiles(
            f"{entry.path} was changed by another program (pip?) while convlstm-patch was working on it; this run "
            "was rolled back and left that file as the other program left it. Run the command again once it has finished"
        ) from None
    if entry.package:
        bytecode.remove(path, pycache_prefix)


def _require_originals(site: Path, journal: Journal) -> None:
    """A backup copy goes only when the file it covers is its original again, byte for byte."""
    for entry in journal.entries:
        if entry.covers is not None and entry.after is None and sha_of(site / entry.covers) != entry.before:
            distribution = entry.distribution
            raise errors.BackupProblem(
                f"{entry.covers} of {distribution} is not its original after the revert, so its backup is kept; "
                f"run `convlstm-patch revert` again, or reinstall {distribution}"
            )


# -- small helpers ---------------------------------------------------------------------------------


def _changes_anything(change: FlavourChange) -> bool:
    return (
        bool(change.files)
        or change.manifest_after != change.manifest_before
        or (change.chosen_after != change.chosen_before)
    )


def _paths(manifest: Manifest | None) -> set[str]:
    return {entry.path for entry in manifest.files} if manifest else set()


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _write_json(path: Path, data: dict) -> None:
    fsops.ensure_folder(path.parent)
    fsops.atomic_write(path, _json_bytes(data))
