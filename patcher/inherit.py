"""What a file we write inherits: the owner, permission bits and extended attributes (ACLs) of
the file it replaces, or, for a new file or folder, what its folder gives new ones. So a user
can still revert, and pip still upgrade, what root patched (patcher/fsops.py writes)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

_UMASK: int | None = None


def new_file_mode(folder: Path) -> int:
    """The permission bits of a new file in ``folder``: what the umask allows, readable where
    the folder is, and group-writable where the folder is (an environment a team shares)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    mode = 0o666 & ~_UMASK
    try:
        folder_mode = folder.stat().st_mode
    except OSError:
        return mode
    # Readable by whoever can read the folder, whatever the umask: a Docker image patched as root
    # under umask 077 is run by an unprivileged user, whose `status` must read our state.
    mode |= folder_mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    if folder_mode & stat.S_IWGRP:
        mode |= stat.S_IRGRP | stat.S_IWGRP
    return mode


def new_folder_mode(folder: Path) -> int:
    """A new folder's bits: a new file's, searchable by whoever may read it (and no one else)."""
    mode = new_file_mode(folder)
    return mode | ((mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)) >> 2)


def copy_extended_attributes(source: Path, destination: Path) -> None:
    """ACLs and other extended attributes, as the replaced file had them (Linux; best effort)."""
    listxattr = getattr(os, "listxattr", None)
    if listxattr is None:
        return
    try:
        names = listxattr(source)
    except OSError:
        return
    for name in names:
        try:
            os.setxattr(destination, name, os.getxattr(source, name))
        except OSError:
            pass


def take_owner(path: Path, like: Path) -> None:
    """Run as root (`sudo convlstm-patch apply` on a user's venv), give ``path`` the owner of ``like``.

    A file replaced keeps its owner; a new file or folder takes the owner of
    the folder it is made in. So the user can still revert, and pip still
    upgrade, what root patched. A no-op for everyone else (who cannot chown).
    """
    geteuid = getattr(os, "geteuid", None)  # POSIX only: elsewhere (Windows) files have no uid to keep
    if geteuid is None or geteuid() != 0:
        return
    owner = like.stat()
    current = path.stat()
    if (current.st_uid, current.st_gid) != (owner.st_uid, owner.st_gid):
        os.chown(path, owner.st_uid, owner.st_gid)
