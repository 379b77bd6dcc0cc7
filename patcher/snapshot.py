"""What an environment holds, read once: every decision is made from a snapshot.

A snapshot of a flavour holds its live target files (bytes and sha256), its
backup (the manifest, validated, and the originals it covers), the layer sets
the user chose, the journal of a run under way and the backups of other
versions. Commands that write read it under the environment's lock
(patcher/commands.py) and pass it down; nothing below re-reads these files
to decide. Each file's state is decided from sha256 alone (RECORD for
pristine, the manifest for patched), so this needs neither libcst nor Keras.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from patcher import errors, fsops
from patcher.enums import TextEnum
from patcher.environment import Flavour, TargetFile
from patcher.envlock import EnvironmentLock
from patcher.hashing import sha256_hex, sha256_of
from patcher.layersets import BASE, LayerSet, names, ordered
from patcher.marker import MARKER_PREFIX
from patcher.recovery import recover_all, sweep_temp_files, temp_files_of
from patcher.store import (
    Journal,
    Manifest,
    journal_path,
    kept_path,
    read_chosen,
    read_journal,
    read_manifest,
    read_originals,
    stale_backups,
    state_folder,
)


class State(TextEnum):
    PRISTINE = "pristine"
    PATCHED = "patched"
    MODIFIED = "modified"  # neither the original nor our output
    MISSING = "missing"
    PARTIAL = "partial"  # flavour only: some layer sets or files patched, others not
    UNSUPPORTED = "unsupported"  # flavour only: no known layout


@dataclass(frozen=True)
class FileState:
    target: TargetFile
    live: bytes | None = field(repr=False)  # None: missing
    sha256: str | None
    state: State
    note: str = ""

    @property
    def marked(self) -> bool:
        """Does it carry our marker (our output, whatever its backup says)?"""
        return self.live is not None and _has_marker(self.live)


@dataclass(frozen=True)
class FlavourSnapshot:
    flavour: Flavour
    files: tuple[FileState, ...] = ()  # every target file of every layer set the version supports
    manifest: Manifest | None = None  # this version's backup (None: none, or damaged and not needed)
    originals: dict[str, bytes] = field(default_factory=dict, repr=False)  # its copies, checked
    chosen: tuple[LayerSet, ...] = ()  # the layer sets the user chose (apply --layers), from any version
    journal: Journal | None = None  # a run under way, or killed: recover before deciding
    stale: tuple[Path, ...] = ()  # backups of versions no longer installed
    # What is wrong with this version's backup when it is damaged but not
    # needed (every live file matches RECORD, e.g. after the reinstall its
    # error advised): it counts as none; `clean` removes it, `apply` replaces it.
    unneeded_damaged_backup: str | None = None

    @property
    def patched_sets(self) -> tuple[LayerSet, ...]:
        return self.manifest.layer_sets if self.manifest is not None else ()

    def focus(self) -> tuple[LayerSet, ...]:
        """The layer sets a command looks at: the patched ones, else those `apply` would patch
        (chosen before; ConvLSTM on an environment never patched)."""
        sets = set(self.patched_sets) or {BASE, *self.chosen}
        return ordered(sets & set(self.flavour.supported_sets))

    def files_of(self, layer_sets: Iterable[LayerSet]) -> tuple[FileState, ...]:
        wanted = set(layer_sets)
        return tuple(file for file in self.files if file.target.layer_sets & wanted)

    def of(self, state: State, layer_sets: Iterable[LayerSet] | None = None) -> list[FileState]:
        files = self.files if layer_sets is None else self.files_of(layer_sets)
        return [file for file in files if file.state == state]

    def expected(self, file: FileState) -> State:
        """What a file should be: patched if a patched set covers it, else pristine."""
        return State.PATCHED if file.target.layer_sets & set(self.patched_sets) else State.PRISTINE

    def overall(self) -> State:
        """The flavour's state over the files of its focus."""
        if self.flavour.layout is None:
            return State.UNSUPPORTED
        sets = self.focus()
        files = self.files_of(sets)
        states = {file.state for file in files}
        if State.MODIFIED in states:
            return State.MODIFIED
        if State.MISSING in states:
            return State.MISSING
        if all(file.state == self.expected(file) for file in files):
            patched = [layer_set for layer_set in sets if layer_set in self.patched_sets]
            return State.PATCHED if patched == list(sets) else State.PRISTINE if not patched else State.PARTIAL
        return State.PRISTINE if states == {State.PRISTINE} else State.PARTIAL

    def original(self, target: TargetFile) -> bytes:
        """The pre-patch bytes of a file: the backup's copy, else the live file."""
        data = self.originals.get(target.relative)
        if data is None:
            file = next(file for file in self.files if file.target == target)
            data = file.live
            what = "is missing" if file.state == State.MISSING else file.note
        if data is None:
            raise errors.ModifiedFiles(
                f"{target.relative} of {self.flavour.key} {what}; reinstall it with `{self.flavour.reinstall_command}`"
            )
        return data

    @property
    def fingerprint(self) -> tuple:
        """What a concurrent run would change: to tell whether two reads saw the same state."""
        return (
            self.flavour.key,
            self.journal is not None,
            self.manifest.to_json() if self.manifest else None,
            tuple(file.sha256 for file in self.files),
            self.chosen,
            self.unneeded_damaged_backup,
        )


@dataclass(frozen=True)
class Snapshot:
    flavours: tuple[FlavourSnapshot, ...]

    @property
    def interrupted(self) -> bool:
        """A journal is present: a run is under way or was killed, and must be recovered first."""
        return any(flavour.journal is not None for flavour in self.flavours)

    @property
    def fingerprint(self) -> tuple:
        return tuple(flavour.fingerprint for flavour in self.flavours)


def settled(
    flavours: Iterable[Flavour],
    pycache_prefix: Path | None,
    lock_timeout: float,
    said: list[str],
    *,
    settle: bool = True,
) -> Snapshot:
    """A snapshot no run is changing; what settling an interrupted run did goes into ``said``.

    Without a journal, two reads that agree are settled, and no lock is
    taken (a user who cannot write the environment still gets an answer).
    With one, a run is under way (it holds the lock: wait for it) or was
    killed (take the lock and recover it; with ``settle`` False, as for a dry
    run, refuse instead). A user who cannot take the lock waits for the
    journal to go; on a read-only file system nobody can be writing, so that
    is said at once. A failure of the recovery itself is its own error, never
    a wait.
    """
    flavours = list(flavours)
    deadline = time.monotonic() + lock_timeout
    swept = not settle  # the one sweep of a call is done (or not to be done)
    while True:
        first = _read_quietly(flavours)
        if first is not None and not first.interrupted:
            second = _read_quietly(flavours)
            if second is not None and second.fingerprint == first.fingerprint:
                if not swept:
                    swept, before = True, len(said)
                    _sweep_if_free(flavours, said, pycache_prefix)
                    if len(said) > before:
                        continue  # it put files back: read them again
                return second
        elif _journals(flavours):
            if not settle:
                raise errors.PatchError(
                    f"a convlstm-patch run in {flavours[0].site} is under way or was interrupted; a dry run writes "
                    "nothing, so it cannot settle it: run `convlstm-patch status` (it settles an interrupted run), then "
                    "this again"
                )
            lock = EnvironmentLock(flavours, max(0.0, deadline - time.monotonic()))
            try:
                lock.__enter__()
            except errors.WriteFailed as failure:
                if failure.read_only:
                    raise errors.WriteFailed(
                        f"a convlstm-patch run was interrupted in {flavours[0].site}, which is read-only now, so it "
                        "cannot be settled: run any convlstm-patch command where the environment can be written"
                    ) from None
                if not failure.not_allowed:  # a full disk, an I/O error: waiting would not help
                    raise errors.WriteFailed(
                        f"{failure.message}; a convlstm-patch run interrupted in {flavours[0].site} waits to be "
                        "settled: nothing was changed, and the next convlstm-patch command settles it"
                    ) from None
                # cannot create or open the lock (a user who cannot write here): wait for the journal to go
            else:
                try:
                    recover_all(flavours, said, pycache_prefix)
                    return read(flavours)
                finally:
                    lock.__exit__(None, None, None)
        if time.monotonic() >= deadline:
            raise errors.Busy(
                f"another convlstm-patch is changing {flavours[0].site} (or one was interrupted and needs a user "
                "who can write the environment to settle it); run again when it has finished"
            )
        time.sleep(0.05)


def _sweep_if_free(flavours: list[Flavour], said: list[str], pycache_prefix: Path | None) -> None:
    """A run killed before its journal was in place leaves only temp files (of the state folder,
    the lock file, the journal): it had changed nothing, so there is nothing to recover, but
    they should go. A run whose journal was deleted by hand leaves originals kept beside their
    files, which may have to go back (sweep_temp_files): looked for too, so that what a reader
    answers never depends on which other leftovers there are. A reader that can take the lock
    at once sweeps; one that cannot (a user who cannot write here, a run under way that may be
    writing them) leaves them to the next run that writes. (Every other temp file comes with a
    journal, and recovery sweeps it.) What it put back goes into ``said``, a line each."""
    sites = _sites(flavours)
    if (
        not any(temp_files_of(state_folder(site)) for site in sites)
        and not any(next(state_folder(site).glob(".*.tmp"), None) for site in sites)
        and not any(
            os.path.lexists(kept_path(flavour.site, target.relative))
            for flavour in flavours
            for target in flavour.files
        )
    ):
        return
    try:
        with EnvironmentLock(flavours, 0):
            sweep_temp_files(flavours, said, pycache_prefix)
    except (errors.Busy, errors.WriteFailed, errors.UnsafePath):
        pass


def unchanged(flavours: Iterable[Flavour], before: Snapshot) -> bool:
    """Does the environment still hold what ``before`` read (no run changed it meanwhile)?"""
    now = _read_quietly(list(flavours))
    return now is not None and now.fingerprint == before.fingerprint


def _read_quietly(flavours: list[Flavour]) -> Snapshot | None:
    """A snapshot, or None when it cannot be read consistently right now (a run is changing the backup)."""
    try:
        return read(flavours)
    except errors.BackupProblem:
        if _journals(flavours):
            return None
        raise


def _journals(flavours: list[Flavour]) -> bool:
    return any(journal_path(site).exists() for site in _sites(flavours))


def _reinstall(flavours: Iterable[Flavour], site: Path) -> str:
    return " and ".join(f"`{flavour.reinstall_command}`" for flavour in flavours if flavour.site == site)


def _sites(flavours: Iterable[Flavour]) -> list[Path]:
    return sorted({flavour.site for flavour in flavours})


def read(flavours: Iterable[Flavour]) -> Snapshot:
    flavours = list(flavours)
    journals = {site: read_journal(site, _reinstall(flavours, site)) for site in _sites(flavours)}
    return Snapshot(tuple(_read_flavour(flavour, journals[flavour.site]) for flavour in flavours))


def _read_flavour(flavour: Flavour, journal: Journal | None) -> FlavourSnapshot:
    """Read one flavour. With a journal present in its site folder only the journal is read:
    the rest may be half-way through a change until the journal is recovered."""
    if journal is not None:
        return FlavourSnapshot(flavour, journal=journal)
    chosen = read_chosen(flavour)
    stale = tuple(stale_backups(flavour))
    if flavour.layout is None:
        return FlavourSnapshot(flavour, chosen=chosen, stale=stale)
    live = {target.relative: _read(target.path) for target in flavour.files}
    try:
        manifest = read_manifest(flavour)
        originals = read_originals(flavour, manifest) if manifest is not None else {}
        problem = None
    except errors.BackupProblem as error:
        manifest, originals, problem = None, {}, error
    if problem is not None:
        as_in_record = bool(flavour.files) and all(
            target.record_sha256 is not None and sha256_of(live[target.relative]) == target.record_sha256
            for target in flavour.files
        )
        if not as_in_record:
            raise problem  # the backup is needed (the files are patched or edited): never guess
    files = tuple(_file_state(target, live[target.relative], manifest) for target in flavour.files)
    damaged = problem.damage if problem is not None else None
    return FlavourSnapshot(flavour, files, manifest, originals, chosen, None, stale, damaged)


def _read(path: Path) -> bytes | str | None:
    """The file's bytes; None when missing; what is wrong, when something else is there."""
    try:
        return fsops.read_file(path)
    except fsops.Unreadable as problem:
        return problem.reason


def _file_state(target: TargetFile, data: bytes | str | None, manifest: Manifest | None) -> FileState:
    if data is None:
        return FileState(target, None, None, State.MISSING, "file is missing")
    if isinstance(data, str):  # a folder, a FIFO, an unreadable file: neither ours nor pip's
        return FileState(target, None, None, State.MODIFIED, data)
    digest = sha256_hex(data)
    entry = manifest.file(target.relative) if manifest else None
    if entry is not None and digest == entry.after:
        return FileState(target, data, digest, State.PATCHED)
    if digest == target.record_sha256 or (entry is not None and digest == entry.before):
        return FileState(target, data, digest, State.PRISTINE)
    marked = _has_marker(data)
    if target.record_sha256 is None and entry is None and not marked:
        # No RECORD to compare with (rare, e.g. some system packages): trust
        # a file without our marker to be the original.
        return FileState(target, data, digest, State.PRISTINE, "no RECORD hash to check against")
    if entry is not None:
        note = "was edited after patching"
    elif marked:
        note = "carries our marker but matches no backup record"
    else:
        note = f"differs from {target.hash_source}"
    return FileState(target, data, digest, State.MODIFIED, note)


def _has_marker(data: bytes) -> bool:
    head = data[:4096].decode("utf-8", "replace")
    return any(line.startswith(MARKER_PREFIX) for line in head.splitlines()[:3])


def explain(snapshot: FlavourSnapshot) -> list[str]:
    """Why the flavour is in its state, and what to do, for `status`."""
    flavour, notes = snapshot.flavour, []
    overall = snapshot.overall()
    if overall == State.UNSUPPORTED and flavour.why_unsupported:
        notes.append(flavour.why_unsupported)
    again = [layer_set for layer_set in snapshot.chosen if layer_set != BASE]
    with_sets = f", with the layer sets chosen before ({names(snapshot.chosen)})" if again else ""
    if overall == State.PRISTINE and snapshot.manifest is not None:
        if set(snapshot.focus()) & set(snapshot.patched_sets):
            notes.append(
                f"the patch is gone: the files were reinstalled since convlstm-patch patched them "
                f"({snapshot.manifest.created}), or put back when an interrupted run was settled; run "
                f"`convlstm-patch apply` to patch them again{with_sets}"
            )
    elif overall == State.PRISTINE and snapshot.stale:
        versions = ", ".join(folder.name[len(flavour.distribution) + 1 :] for folder in snapshot.stale)
        notes.append(
            f"the patch is gone: {flavour.project} was upgraded from {versions} to {flavour.version} "
            f"({flavour.installer} replaced the patched files); run `convlstm-patch apply`{with_sets}"
        )
    elif overall == State.PRISTINE and again and snapshot.manifest is None:
        notes.append(f"`convlstm-patch apply` patches the layer sets chosen before: {names(snapshot.chosen)}")
    elif overall == State.PARTIAL:
        notes.append("some files are patched and some are not; run `convlstm-patch apply` or `revert` to settle them")
    elif overall == State.PATCHED:
        supported = set(flavour.supported_sets)
        wanted = ordered({BASE, *snapshot.chosen} & supported)
        if snapshot.chosen and wanted != snapshot.patched_sets:
            notes.append(f"`convlstm-patch apply` patches the layer sets chosen: {names(wanted)}")
    notes.extend(
        f"stale backup of a version no longer installed: {folder} (never restored; remove with `convlstm-patch clean`)"
        for folder in snapshot.stale
    )
    if snapshot.unneeded_damaged_backup:
        notes.append(damaged_backup_note(snapshot))
    for file in snapshot.of(State.MISSING, snapshot.focus()):
        fix = (
            "`convlstm-patch revert` restores it from the backup"
            if snapshot.manifest is not None and snapshot.manifest.file(file.target.relative)
            else f"reinstall it with `{flavour.reinstall_command}`"
        )
        notes.append(f"{file.target.relative} is missing; {fix}")
    return notes


def damaged_backup_note(snapshot: FlavourSnapshot) -> str:
    return (
        f"{snapshot.unneeded_damaged_backup}: that backup is damaged but not needed (every file matches RECORD) and "
        "never restored; remove it with `convlstm-patch clean` (`apply` replaces it)"
    )
