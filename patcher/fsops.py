"""File operations that never leave a half-written file."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from patcher import errors


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then os.replace.

    Keeps the permission bits of the file it replaces. A failure (read-only
    folder, disk full) leaves the old file untouched and no temp file behind.
    """
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    try:
        descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise write_error(path, error) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        take_owner(Path(temp), path if path.exists() else path.parent)
        os.replace(temp, path)
    except OSError as error:
        _remove_quietly(Path(temp))
        raise write_error(path, error) from None
    _fsync_folder(path.parent)


def link_copy(source: Path, destination: Path) -> None:
    """Make ``destination`` the file ``source`` is, needing no new disk space.

    A hard link (a temp name beside ``destination``, then os.replace), so
    keeping an original, or putting one back, works on a full disk; a copy
    only where the file system has no hard links. Keeps the permission bits
    of the file it replaces. Nothing ever writes into a linked file: every
    write replaces the path with a new file (atomic_write).
    """
    mode = destination.stat().st_mode & 0o7777 if destination.exists() else None
    temp = destination.parent / f".{destination.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        os.link(source, temp)
    except OSError as error:
        if error.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.ENOSYS):
            atomic_write(destination, source.read_bytes())
            return
        raise write_error(destination, error) from None
    try:
        if mode is not None and temp.stat().st_mode & 0o7777 != mode:
            os.chmod(temp, mode)
        os.replace(temp, destination)
    except OSError as error:
        _remove_quietly(temp)
        raise write_error(destination, error) from None
    _remove_quietly(temp)  # still there only if both already were the same file
    _fsync_folder(destination.parent)


def move(source: Path, destination: Path) -> None:
    """Rename ``source`` over ``destination``: no new space, the file itself (its inode) moves."""
    try:
        os.replace(source, destination)
    except OSError as error:
        raise write_error(destination, error) from None
    _fsync_folder(destination.parent)


def delete(path: Path) -> None:
    """Delete a file (gone already is fine)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise write_error(path, error) from None


def delete_tree(folder: Path) -> None:
    """Delete a folder of ours and everything in it (gone already is fine)."""
    if not folder.exists():
        return
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return
    except OSError as error:
        raise write_error(folder, error) from None


def delete_empty_folders(folder: Path, stop: Path) -> None:
    """Delete ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            os.rmdir(folder)
        except OSError:
            return  # not empty (or gone): the folders above are not empty either
        folder = folder.parent


def ensure_folder(folder: Path) -> None:
    """Make the folder (and its parents); new ones take the owner of the folder they are made in.

    Each is made under a temp name, given its owner, then renamed into place,
    so a run killed at any moment never leaves a folder of the wrong owner
    under its real name (only an empty temp folder, which the next run sweeps).
    """
    missing = []
    existing = folder
    while not existing.exists() and existing.parent != existing:
        missing.append(existing)
        existing = existing.parent
    for made in reversed(missing):
        temp = made.parent / f".{made.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            os.mkdir(temp)
            take_owner(temp, made.parent)
            os.rename(temp, made)
        except OSError as error:
            _remove_quietly(temp)
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY) and made.is_dir():
                continue  # another run made it meanwhile
            raise write_error(made / "x", error) from None
        _fsync_folder(made.parent)


def create_owned(path: Path) -> None:
    """Create an empty file at ``path`` unless there is one, with the owner of its folder from
    its first moment (made under a temp name, given its owner, then linked into place)."""
    if path.exists():
        return
    temp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(descriptor)
        take_owner(temp, path.parent)
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another run made it meanwhile
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.ENOSYS):
                raise
            os.replace(temp, path)  # no hard links here: a rename (another run's file, if any, is as good)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        _remove_quietly(temp)


def _remove_quietly(path: Path) -> None:
    try:
        os.rmdir(path) if path.is_dir() else os.unlink(path)
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


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where unsupported."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_error(path: Path, error: OSError) -> errors.WriteFailed:
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return errors.WriteFailed(
            f"cannot write {path.parent}: {error.strerror}. Run as the user that owns this environment, "
            "or use a virtual environment you own"
        )
    if error.errno == errno.ENOSPC:
        return errors.WriteFailed(f"no space left while writing {path}; free some disk space and run again")
    return errors.WriteFailed(f"cannot write {path}: {error.strerror or error}")


def remove_bytecode(source: Path, pycache_prefix: Path | None = None, *, best_effort: bool = False) -> None:
    """Delete every interpreter's cached .pyc of ``source`` so imports see the new text.

    Deleting (rather than trusting mtimes) also covers .pyc files compiled
    with --invalidation-mode unchecked-hash, which Python never re-validates.
    Bytecode lives in ``__pycache__`` beside the source, or, for an
    interpreter run with PYTHONPYCACHEPREFIX, in a mirror of the source's
    folder under that prefix. apply and revert call this once before their
    first write, so bytecode they cannot delete (a __pycache__ root compiled
    in a user's venv) fails the run while nothing is changed; a rollback
    calls it with ``best_effort``: putting the originals back must not stop
    half-way, and bytecode that could not be deleted is what was there before
    the run.
    """
    folders = [source.parent / "__pycache__"]
    if pycache_prefix is not None:
        folder = source.parent.absolute()
        folders.append(pycache_prefix / folder.relative_to(folder.anchor))
    for cache in folders:
        for compiled in cache.glob(f"{source.stem}.*.pyc"):
            try:
                compiled.unlink()
            except FileNotFoundError:
                pass
            except OSError as error:
                if best_effort:
                    continue
                raise errors.WriteFailed(
                    f"cannot delete the cached bytecode {compiled}: {error.strerror}; nothing was changed. "
                    f"Delete it as its owner (e.g. `sudo rm -r {cache}`), or run as the user that owns this environment"
                ) from None
