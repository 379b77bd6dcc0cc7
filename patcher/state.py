"""Is each target file pristine, patched by us, or something else?

Decided from sha256 alone (RECORD for pristine, our manifest for patched), so
it needs neither libcst nor Keras.
"""

from __future__ import annotations

from dataclasses import dataclass

from patcher import errors
from patcher.backup import Manifest, backed_up_sources, read_manifest, stale_backups
from patcher.enums import TextEnum
from patcher.environment import Flavour, TargetFile
from patcher.hashing import sha256_hex
from patcher.marker import MARKER_PREFIX


class State(TextEnum):
    PRISTINE = "pristine"
    PATCHED = "patched"
    MODIFIED = "modified"  # neither the original nor our output
    MISSING = "missing"
    PARTIAL = "partial"  # flavour only: some files pristine, some patched
    UNSUPPORTED = "unsupported"  # flavour only: no known layout


@dataclass(frozen=True)
class FileState:
    target: TargetFile
    sha256: str | None
    state: State
    note: str = ""


@dataclass(frozen=True)
class FlavourState:
    flavour: Flavour
    manifest: Manifest | None
    files: tuple[FileState, ...]
    # What is wrong with this version's backup when it is damaged but not
    # needed: every live file matches RECORD (e.g. after the reinstall its
    # error advised). Such a backup counts as none (manifest is None):
    # `clean` removes it and `apply` replaces it.
    unneeded_damaged_backup: str | None = None

    @property
    def overall(self) -> State:
        """The flavour's state: its files' one state, or partial / modified / unsupported."""
        if self.flavour.layout is None:
            return State.UNSUPPORTED
        states = {file.state for file in self.files}
        if len(states) == 1:
            return states.pop()
        if states == {State.PRISTINE, State.PATCHED}:
            return State.PARTIAL
        return State.MODIFIED

    def of(self, state: State) -> list[FileState]:
        return [file for file in self.files if file.state == state]


def inspect(flavour: Flavour) -> FlavourState:
    try:
        manifest = read_manifest(flavour) if flavour.layout else None
        problem = None
    except errors.BackupProblem as error:
        manifest, problem = None, error
    files = tuple(_file_state(target, manifest) for target in flavour.files)
    as_in_record = bool(files) and all(
        file.target.record_sha256 is not None and file.sha256 == file.target.record_sha256 for file in files
    )
    if problem is None and manifest is not None and as_in_record:
        try:
            backed_up_sources(flavour, manifest)
        except errors.BackupProblem as error:
            problem = error
    if problem is None:
        return FlavourState(flavour, manifest, files)
    if not as_in_record:
        raise problem  # the backup is needed (the files are patched or edited): never guess
    files = tuple(_file_state(target, None) for target in flavour.files)
    return FlavourState(flavour, None, files, problem.message.split(";")[0])


def _file_state(target: TargetFile, manifest: Manifest | None) -> FileState:
    try:
        data = target.path.read_bytes()
    except FileNotFoundError:
        return FileState(target, None, State.MISSING, "file is missing")
    digest = sha256_hex(data)
    entry = manifest.file(target.relative) if manifest else None
    if entry is not None and digest == entry.after:
        return FileState(target, digest, State.PATCHED)
    if digest == target.record_sha256 or (entry is not None and digest == entry.before):
        return FileState(target, digest, State.PRISTINE)
    if target.record_sha256 is None and entry is None and not _has_marker(data):
        # No RECORD to compare with (rare, e.g. some system packages): trust
        # a file without our marker to be the original.
        return FileState(target, digest, State.PRISTINE, "no RECORD hash to check against")
    if _has_marker(data):
        return FileState(target, digest, State.MODIFIED, "carries our marker but matches no backup record")
    if target.from_lock:
        return FileState(target, digest, State.MODIFIED, "differs from this version's hash lock (it has no RECORD)")
    return FileState(target, digest, State.MODIFIED, "differs from the distribution's RECORD")


def _has_marker(data: bytes) -> bool:
    head = data[:4096].decode("utf-8", "replace")
    return any(line.startswith(MARKER_PREFIX) for line in head.splitlines()[:3])


def explain(state: FlavourState) -> list[str]:
    """Why the flavour is in its state, and what to do, for `status`."""
    flavour, notes = state.flavour, []
    if state.overall == State.UNSUPPORTED and flavour.why_unsupported:
        notes.append(flavour.why_unsupported)
    stale = stale_backups(flavour)
    if state.overall == State.PRISTINE and state.manifest is not None:
        notes.append(
            f"the patch is gone: the files were reinstalled since convlstm-patch patched them "
            f"({state.manifest.created}); run `convlstm-patch apply` to patch them again"
        )
    elif state.overall == State.PRISTINE and stale:
        versions = ", ".join(folder.name[len(flavour.distribution) + 1 :] for folder in stale)
        notes.append(
            f"the patch is gone: {flavour.distribution} was upgraded from {versions} to {flavour.version} "
            "(pip replaced the patched files); run `convlstm-patch apply`"
        )
    elif state.overall == State.PARTIAL:
        notes.append("some files are patched and some are not; run `convlstm-patch apply` or `revert` to settle them")
    notes.extend(
        f"stale backup of a version no longer installed: {folder} (never restored; remove with `convlstm-patch clean`)"
        for folder in stale
    )
    if state.unneeded_damaged_backup:
        notes.append(damaged_backup_note(state))
    for file in state.of(State.MISSING):
        fix = (
            "`convlstm-patch revert` restores it from the backup"
            if state.manifest is not None
            else f"reinstall it with `{flavour.reinstall_command}`"
        )
        notes.append(f"{file.target.relative} is missing; {fix}")
    return notes


def damaged_backup_note(state: FlavourState) -> str:
    return (
        f"{state.unneeded_damaged_backup}: that backup is damaged but not needed (every file matches RECORD) and "
        "never restored; remove it with `convlstm-patch clean` (`apply` replaces it)"
    )
