"""All or nothing, one at a time: the journal, the one rollback, the environment lock.

Before the first Keras file changes, ``apply`` and ``revert`` write a journal
(``<site>/.convlstm-patch/journal-<distribution>.json``); they remove it after
the last change. Whatever cuts a run short, the flavour goes back through
:func:`rollback`: at once when a write fails (disk full, read-only folder) or
the verification fails, and from the journal in the next command when the run
died (SIGKILL, power loss). Every file of a flavour is therefore either all
pristine or all patched. The backup is complete whenever its manifest exists:
files are written before the manifest and deleted after it.

Runs on one environment are serialised by a lock file beside the journal.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from patcher import errors
from patcher.backup import STATE_FOLDER, backed_up_sources, read_manifest, remove_backup, restore_originals
from patcher.enums import TextEnum
from patcher.environment import Flavour, TargetFile
from patcher.fsops import atomic_write, ensure_folder, link_copy, move_back, remove_bytecode, take_owner

DEFAULT_LOCK_TIMEOUT = 300  # seconds


class Operation(TextEnum):
    APPLY = "apply"
    REVERT = "revert"


@dataclass(frozen=True)
class Journal:
    operation: Operation
    fresh_backup: bool = False  # apply made the backup: there was none before it


def journal_path(flavour: Flavour) -> Path:
    return flavour.site / STATE_FOLDER / f"journal-{flavour.distribution}.json"


@contextlib.contextmanager
def journaled(journals: list[tuple[Flavour, Journal]]) -> Iterator[None]:
    """Hold every flavour's journal on disk while the body changes their files.

    The flavours of one run are one transaction: every journal is written
    before the first file changes and removed after the body ends, and the
    body of apply includes the verification (a patch is not done until it is
    verified). A body that raises (disk full on the third file, the second
    flavour's folder read-only, a failed verification, Ctrl-C) is rolled back
    at once, every flavour, and the error goes on to the user; a run killed
    in the body leaves the journals, and the next command's recover() rolls
    back.
    """
    begun = []
    try:
        for flavour, _ in journals:
            # Left by a run killed after its journal was removed: never put back.
            shutil.rmtree(set_aside_folder(flavour), ignore_errors=True)
        for flavour, journal in journals:
            _write_journal(flavour, journal)
            begun.append((flavour, journal))
        yield
    except BaseException as error:
        problems = []
        for flavour, journal in begun:
            try:
                rollback(flavour, journal)
            except errors.PatchError as failure:
                problems.append(f"{flavour.key}: {failure.message}")
        if isinstance(error, KeyboardInterrupt):
            error = errors.Interrupted("interrupted (Ctrl-C); every change of this run was rolled back")
        if problems:
            message = (
                f"{error}; rolling back failed too ({'; '.join(problems)}): the next convlstm-patch command finishes it"
            )
            if not isinstance(error, errors.PatchError):
                raise errors.PatchError(message) from None
            error.message = message  # same kind, exit code and attached reports
            raise error from None
        if isinstance(error, errors.Interrupted):
            raise error from None
        raise
    for flavour, _ in journals:
        shutil.rmtree(set_aside_folder(flavour), ignore_errors=True)
        journal_path(flavour).unlink(missing_ok=True)  # last: the commit point


def rollback(flavour: Flavour, journal: Journal) -> list[str]:
    """The one undo: put the originals back from the backup; the files restored.

    Used by a failed write (journaled), a failed verification (workflow),
    an interrupted run (recover) and revert itself, which is the rollback of
    a finished apply. The journal is written first (unless it is already
    there) and removed last, so a rollback that is itself cut short is
    finished by the next command.
    """
    if not journal_path(flavour).exists():
        _write_journal(flavour, journal)
    # First the files as they were before an apply, set aside by rename: no
    # new disk space needed (a disk that filled up part way).
    restored = _move_back_set_aside(flavour) if journal.operation == Operation.APPLY else []
    manifest = read_manifest(flavour)
    if manifest is not None:
        restored += [r for r in restore_originals(flavour, backed_up_sources(flavour, manifest)) if r not in restored]
    # When a backup is deleted, and why. Here, once the files are the
    # originals again, and only if the backup has nothing left to say: it is
    # incomplete (no manifest: never trusted), or what is rolled back is a
    # revert (the patch is gone on purpose), or the apply being undone made it
    # (there was none before that run). A backup that existed before the run
    # is kept, so the environment is as it was. Backups of versions no longer
    # installed are never restored, and deleted only by `clean`.
    if manifest is None or journal.operation == Operation.REVERT or journal.fresh_backup:
        remove_backup(flavour)
    shutil.rmtree(set_aside_folder(flavour), ignore_errors=True)
    journal_path(flavour).unlink(missing_ok=True)
    return restored


def set_aside_folder(flavour: Flavour) -> Path:
    return flavour.site / STATE_FOLDER / f"set-aside-{flavour.distribution}"


def set_aside(flavour: Flavour, target: TargetFile) -> None:
    """Keep the live file as it is before apply replaces it (a hard link: no new space).

    A rollback renames it back (_move_back_set_aside), so undoing needs no
    new disk space either, and puts back the very file that was there.
    """
    folder = set_aside_folder(flavour)
    ensure_folder(folder)
    link_copy(target.path, folder / _flat(target.relative))


def _move_back_set_aside(flavour: Flavour) -> list[str]:
    folder = set_aside_folder(flavour)
    restored = []
    for target in flavour.files:
        kept = folder / _flat(target.relative)
        if kept.exists():
            changed = not (target.path.exists() and kept.samefile(target.path))
            move_back(kept, target.path)
            if changed:
                remove_bytecode(target.path, best_effort=True)
                restored.append(target.relative)
    return restored


def _flat(relative: str) -> str:
    return relative.replace("/", "%")


def read_journal(flavour: Flavour) -> Journal | None:
    try:
        data = json.loads(journal_path(flavour).read_text(encoding="utf-8"))
        return Journal(**{**data, "operation": Operation(data["operation"])})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise errors.BackupProblem(
            f"journal {journal_path(flavour)} is not valid ({type(error).__name__}); "
            f"restore Keras with `{flavour.reinstall_command}` and delete the journal"
        ) from None


def recover(flavour: Flavour) -> str | None:
    """Undo an interrupted apply or finish an interrupted revert; say what was done."""
    _sweep_temp_files(flavour)
    journal = read_journal(flavour)
    if journal is None:
        return None
    rollback(flavour, journal)
    return f"recovered an interrupted {journal.operation}: files restored to their originals"


def _write_journal(flavour: Flavour, journal: Journal) -> None:
    path = journal_path(flavour)
    ensure_folder(path.parent)
    atomic_write(path, json.dumps(asdict(journal)).encode())


def _refuse_link(path: Path) -> None:
    # The site folder is already resolved, so any difference between a path
    # and its resolved form is a link below it.
    if (path.exists() or path.is_symlink()) and path.resolve() != path.absolute():
        raise errors.UnsafePath(
            f"{path} is or passes through a symlink (to {path.resolve()}); convlstm-patch never writes "
            "through links. Replace the link with the real folder or file, then run again"
        )


def _sweep_temp_files(flavour: Flavour) -> None:
    """Delete what a killed atomic write leaves: temp files, never a real file."""
    leftovers = [path for target in flavour.files for path in target.path.parent.glob(f".{target.path.name}.*.tmp")]
    state_folder = flavour.site / STATE_FOLDER
    if state_folder.is_dir():
        leftovers += state_folder.rglob(".*.tmp")
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(flavours: list[Flavour], timeout: float = DEFAULT_LOCK_TIMEOUT, sites: tuple[Path, ...] = ()) -> Iterator[None]:
    """Hold the lock of every environment folder involved (in a fixed order).

    Never follows a symlink out of the Keras package or the backup folder:
    the target files and the state folder itself are checked before the lock
    file is created in it; what lies inside the state folder once the lock is
    held, when no other run can be deleting it.
    """
    import filelock

    for flavour in flavours:
        for path in [target.path for target in flavour.files] + [flavour.site / STATE_FOLDER]:
            _refuse_link(path)
    for site in sites:  # site folders with no flavour in them (clean after `pip uninstall keras`)
        _refuse_link(site / STATE_FOLDER)
    with contextlib.ExitStack() as stack:
        for site in sorted({flavour.site for flavour in flavours} | set(sites)):
            folder = site / STATE_FOLDER
            ensure_folder(folder)
            lock = filelock.FileLock(str(folder / "lock"), timeout=timeout)
            try:
                stack.enter_context(lock)
            except filelock.Timeout:
                raise errors.Busy(
                    f"another convlstm-patch has been working on {site} for over {timeout:.0f} s; "
                    "wait for it to finish, or run again with a longer --lock-timeout"
                ) from None
            except OSError as error:
                raise errors.WriteFailed(
                    f"cannot create the lock in {folder}: {error.strerror}. Run as the user that owns this "
                    "environment, or use a virtual environment you own"
                ) from None
            with contextlib.suppress(OSError):  # a root-owned lock only costs the owner a retry as root
                take_owner(folder / "lock", folder)
            for path in folder.rglob("*"):
                _refuse_link(path)
        yield
