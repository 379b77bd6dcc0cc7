"""All or nothing, one at a time: the journal and the environment lock.

Before the first Keras file changes, ``apply`` and ``revert`` write a journal
(``<site>/.convlstm-patch/journal-<distribution>.json``); they remove it after
the last change. If a run dies in between (SIGKILL, power loss), the next
command finds the journal and rolls the flavour back to its backed-up
originals, so every file of a flavour is either all pristine or all patched.
The backup is complete whenever its manifest exists: files are written before
the manifest and deleted after it.

Runs on one environment are serialised by a lock file beside the journal.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from patcher import errors
from patcher.backup import STATE_FOLDER, read_manifest, remove_backup
from patcher.environment import Flavour
from patcher.fsops import atomic_write, ensure_folder

DEFAULT_LOCK_TIMEOUT = 300.0


@dataclass(frozen=True)
class Journal:
    operation: str  # "apply" | "revert"
    fresh_backup: bool  # apply made the backup itself (so rolling back removes it)


def journal_path(flavour: Flavour) -> Path:
    return flavour.site / STATE_FOLDER / f"journal-{flavour.distribution}.json"


def begin(flavour: Flavour, operation: str, fresh_backup: bool = False) -> None:
    path = journal_path(flavour)
    ensure_folder(path.parent)
    atomic_write(path, json.dumps({"operation": operation, "fresh_backup": fresh_backup}).encode())


def end(flavour: Flavour) -> None:
    journal_path(flavour).unlink(missing_ok=True)


def read_journal(flavour: Flavour) -> Journal | None:
    try:
        return Journal(**json.loads(journal_path(flavour).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        raise errors.BackupProblem(
            f"journal {journal_path(flavour)} is not valid ({type(error).__name__}); "
            f"restore Keras with `pip install --force-reinstall --no-deps {flavour.distribution}=={flavour.version}` "
            "and delete the journal"
        ) from None


def recover(flavour: Flavour) -> str | None:
    """Undo an interrupted apply or finish an interrupted revert; say what was done."""
    _sweep_temp_files(flavour)
    journal = read_journal(flavour)
    if journal is None:
        return None
    from patcher.operations import backed_up_sources, restore_originals  # avoids an import cycle

    manifest = read_manifest(flavour)
    if manifest is not None:
        restore_originals(flavour, backed_up_sources(flavour, manifest))
    if manifest is None or journal.operation == "revert" or journal.fresh_backup:
        remove_backup(flavour)
    end(flavour)
    return f"recovered an interrupted {journal.operation}: files restored to their originals"


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
def exclusive(flavours: list[Flavour], timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
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
    with contextlib.ExitStack() as stack:
        for site in sorted({flavour.site for flavour in flavours}):
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
            for path in folder.rglob("*"):
                _refuse_link(path)
        yield
