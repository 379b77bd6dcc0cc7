"""One at a time: the lock every run that writes holds on its environment.

A file lock (``filelock``) on ``<site-packages>/.convlstm-patch/lock`` per site
folder involved, taken in a fixed order. Another run waits up to
``--lock-timeout`` seconds, then fails with exit 11.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import final

from patcher import errors, fsops, pauses
from patcher.environment import Flavour
from patcher.store import lock_file, require_state_folder, state_folder

DEFAULT_LOCK_TIMEOUT = 300  # seconds


@final
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
        self._held: list[tuple[Path, int | None]] = []  # each lock file and its inode, once taken

    def __enter__(self) -> EnvironmentLock:
        import filelock

        for flavour in self.flavours:
            for target in flavour.files:
                refuse_link(target.path)
        for site in self.sites:
            refuse_link(state_folder(site))
            require_state_folder(site)
            refuse_link(lock_file(site))
        try:
            for site in self.sites:
                folder = state_folder(site)
                fsops.ensure_folder(folder)
                refuse_link(lock_file(site))
                # Made with its folder's owner from its first moment: a run as root killed
                # here must not leave a lock file its user cannot open.
                fsops.create_owned(lock_file(site))
                # Its mode as made (a team's group-writable lock stays so): filelock before 4 sets
                # 0o644 on the file it opens unless told a mode.
                mode = lock_file(site).stat().st_mode & 0o777
                lock = filelock.FileLock(str(lock_file(site)), timeout=self.timeout, mode=mode)
                try:
                    self._stack.enter_context(lock)
                except filelock.Timeout:
                    raise errors.Busy(
                        f"another convlstm-patch has been working on {site} for over {self.timeout:.0f} s; "
                        "wait for it to finish, or run again with a longer --lock-timeout"
                    ) from None
                except OSError as error:
                    raise fsops.write_error(lock_file(site), error) from None
                self._held.append((lock_file(site), _inode(lock_file(site))))
                for path in folder.rglob("*"):
                    refuse_link(path)
        except BaseException:
            self._stack.close()
            raise
        pauses.pause(pauses.LOCKED)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def held(self) -> bool:
        """Is every lock file still the one taken? One deleted meanwhile (by hand) lets another
        run take a new one: then this run is no longer alone."""
        return all(_inode(path) == inode for path, inode in self._held)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def refuse_link(path: Path) -> None:
    # The site folder is already resolved, so any difference between a path
    # and its resolved form is a link below it.
    if path.is_symlink() or ((path.exists()) and path.resolve() != path.absolute()):
        raise errors.UnsafePath(
            f"{path} is or passes through a symlink (to {path.resolve()}); convlstm-patch never writes "
            "through links. Replace the link with the real folder or file, then run again"
        )
