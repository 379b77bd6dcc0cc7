"""File operations that never leave a half-written file, and never write over a file that is
not the one expected.

Every write makes the new file beside its target under a temp name, complete
(fsynced, with the permission bits, owner and extended attributes of the file
it replaces), then renames it into place. :func:`swap_in` does that rename as
a compare-and-swap where the platform can (Linux's RENAME_EXCHANGE): it
replaces the target only if the target is still the very file the caller set
aside, so a file pip put there meanwhile is never overwritten.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from patcher import errors, inherit
from patcher.hashing import sha256_hex


class Changed(Exception):
    """The file at a path is not the one a compare-and-swap expected: another program replaced it."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


class Unreadable(Exception):
    """Where a file belongs there is something that is not a readable regular file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason


# What a file system says when it cannot make a hard link (or, EPERM, may not: protected_hardlinks).
_NO_LINKS = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.ENOSYS)


def read_file(path: Path) -> bytes | None:
    """A regular file's bytes; None when nothing is there. A folder, a FIFO (never opened: it
    would block) or a file that cannot be read raises Unreadable, saying which."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise Unreadable(path, f"cannot be read ({error.strerror})") from None
    if stat.S_ISDIR(mode):
        raise Unreadable(path, "is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise Unreadable(path, "is not a regular file (a FIFO, socket or device)")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise Unreadable(path, f"cannot be read ({error.strerror})") from None


def atomic_write(path: Path, data: bytes, like: Path | None = None) -> None:
    """Write via a temp file in the same folder, fsync, then rename over ``path`` (whatever is
    there). A failure (read-only folder, disk full) leaves the old file untouched and no temp
    file behind."""
    temp = stage(path, data, like=like)
    try:
        os.replace(temp, path)
    except OSError as error:
        remove_quietly(temp)
        raise write_error(path, error) from None
    _fsync_folder(path.parent)


def stage(path: Path, data: bytes | None = None, link_from: Path | None = None, like: Path | None = None) -> Path:
    """The new file for ``path``, complete, beside it under a temp name: ``data`` written and
    fsynced, with the permission bits, owner and extended attributes (ACLs) of the file at
    ``path``, or, for a new file, what its folder gives new files; or a hard link of
    ``link_from`` (no new space), which is that very file, its mode and owner included (where
    there are no hard links, a copy with its mode, owner and attributes)."""
    if like is None and link_from is not None:
        like = link_from  # a copy of it stands for that very file
    like = like or (path if path.exists() else None)  # whose mode, owner and attributes it takes
    temp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        linked = False
        if link_from is not None:
            try:
                os.link(link_from, temp)
                linked = True
            except OSError as error:
                if error.errno not in _NO_LINKS:
                    raise
                data = link_from.read_bytes() if data is None else data
        if not linked and data is not None:
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        if linked:
            # The very file ``link_from`` is (its inode): it keeps its own mode, owner and
            # attributes; changing them here would change the original's too.
            return temp
        mode = like.stat().st_mode & 0o7777 if like is not None else inherit.new_file_mode(path.parent)
        if temp.stat().st_mode & 0o7777 != mode:
            os.chmod(temp, mode)
        inherit.take_owner(temp, like or path.parent)
        if like is not None:
            inherit.copy_extended_attributes(like, temp)
    except OSError as error:
        remove_quietly(temp)
        raise write_error(path, error) from None
    except BaseException:
        remove_quietly(temp)  # Ctrl-C (or a bug): no temp file left behind
        raise
    return temp


def swap_in(temp: Path, path: Path, expected: Path | None, sha: str | None = None) -> None:
    """Rename ``temp`` over ``path`` if ``path`` is still the file ``expected`` is (the same
    inode), or, ``expected`` None, if nothing is at ``path``; else leave both as they are and
    raise Changed.

    With RENAME_EXCHANGE (Linux) the check and the rename are one step: the two are swapped,
    and swapped back if what came out is not the expected file. Elsewhere the check comes
    right before the rename.
    """
    try:
        if expected is None:
            try:
                os.link(temp, path)  # fails if anything is there: create-if-absent in one step
            except FileExistsError:
                raise Changed(path) from None
            except OSError as error:
                if error.errno not in _NO_LINKS:
                    raise
                if os.path.lexists(path):
                    raise Changed(path) from None
                os.replace(temp, path)
            remove_quietly(temp)
        elif _exchange(temp, path):
            if not is_kept(temp, expected, sha):
                _exchange(temp, path)  # put back what another program put there
                raise Changed(path)
            os.unlink(temp)
        else:
            if not is_kept(path, expected, sha):
                raise Changed(path)
            os.replace(temp, path)
    except Changed:
        remove_quietly(temp)
        raise
    except OSError as error:
        remove_quietly(temp)
        raise write_error(path, error) from None
    _fsync_folder(path.parent)


def take_away(path: Path, expected: Path, sha: str | None = None) -> None:
    """Delete ``path`` if it is the file ``expected`` is (kept there as a hard link); else
    leave it and raise Changed. Renamed aside first, so the check is on what was removed."""
    temp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        os.rename(path, temp)
    except FileNotFoundError:
        raise Changed(path) from None
    except OSError as error:
        raise write_error(path, error) from None
    if not is_kept(temp, expected, sha):
        try:
            os.rename(temp, path)
        except OSError as error:
            raise write_error(path, error) from None
        raise Changed(path)
    remove_quietly(temp)
    _fsync_folder(path.parent)


def keep(path: Path, kept: Path) -> None:
    """Keep the file at ``path`` as it is, under the name ``kept``: a hard link (no new space;
    where there are no hard links, a copy with its mode, owner and attributes, for it may be
    put back in its place)."""
    remove_quietly(kept)
    try:
        os.link(path, kept)
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise write_error(kept, error) from None
        atomic_write(kept, path.read_bytes(), like=path)


def put_back(kept: Path, path: Path) -> None:
    """Rename a kept file back where nothing is now (no new space: a hard link could need a
    new directory block on a full disk). For our own files, which no other program writes."""
    if os.path.lexists(path):
        raise Changed(path)
    move(kept, path)


def is_kept(path: Path, kept: Path, sha: str | None) -> bool:
    """Is the file at ``path`` the very one ``kept`` keeps: the same file (inode), where hard
    links can be made in its folder (so ``kept`` is one: a file put there since, even with the
    same bytes, is another file). Only where they cannot (vfat, exFAT, a VirtualBox share),
    ``kept`` is a copy, and the same bytes (``sha``) are all that can tell."""
    if _same(path, kept):
        return True
    if sha is None or _links_work(kept):
        return False
    try:
        return sha256_hex(path.read_bytes()) == sha
    except OSError:
        return False


def _links_work(kept: Path) -> bool:
    """Can ``kept`` (a file of ours) get a second name beside it? Tried, then undone."""
    probe = kept.parent / f".{kept.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        os.link(kept, probe)
    except OSError as error:
        return error.errno not in _NO_LINKS
    remove_quietly(probe)
    return True


def _same(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Any = None  # renameat2 from libc once looked up; False where there is none


def _exchange(first: Path, second: Path) -> bool:
    """Swap two names atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _renameat2
    if _renameat2 is None:
        try:
            function = ctypes.CDLL(None, use_errno=True).renameat2
            function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            _renameat2 = function
        except (AttributeError, OSError):
            _renameat2 = False
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False  # this file system cannot swap: the caller checks, then renames
    raise OSError(code, os.strerror(code), str(second))


def move(source: Path, destination: Path) -> None:
    """Rename ``source`` over ``destination``: no new space, the file itself (its inode) moves."""
    try:
        os.replace(source, destination)
    except OSError as error:
        raise write_error(destination, error) from None
    _fsync_folder(destination.parent)


def delete(path: Path) -> None:
    """Delete a file (gone already is fine)."""
    _gone(os.unlink, path)


def delete_tree(folder: Path) -> None:
    """Delete a folder of ours and everything in it (gone already is fine)."""
    _gone(shutil.rmtree, folder)


def _gone(remove, path: Path) -> None:
    try:
        remove(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise write_error(path, error) from None


def delete_empty_folders(folder: Path, stop: Path) -> None:
    """Delete ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            pass  # deleted already (an undo cut short): the folders above may still be empty
        except OSError:
            return  # not empty: the folders above are not empty either
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
            mode = inherit.new_folder_mode(made.parent)
            os.mkdir(temp, mode)
            # As given, not as the umask cuts it (mkdir applies it); the setgid bit the kernel gave
            # it in a setgid folder (a team's shared environment) stays.
            os.chmod(temp, mode | (os.stat(temp).st_mode & stat.S_ISGID))
            inherit.take_owner(temp, made.parent)
            os.rename(temp, made)
        except OSError as error:
            remove_quietly(temp)
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY) and made.is_dir():
                continue  # another run made it meanwhile
            if made.exists() and not made.is_dir():
                raise errors.UnsafePath(
                    f"{made} is a file where convlstm-patch keeps a folder; nothing was changed. Rename it if it is "
                    f"yours, then delete {made} and run again"
                ) from None
            raise write_error(made, error, making_folder=True) from None
        except BaseException:
            remove_quietly(temp)  # Ctrl-C (or a bug): no temp folder left behind
            raise
        _fsync_folder(made.parent)


def create_owned(path: Path) -> None:
    """Create an empty file at ``path`` unless there is one, with the owner of its folder from
    its first moment (made under a temp name, given its owner, then linked into place)."""
    if path.exists():
        return
    temp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(descriptor)
        os.chmod(temp, inherit.new_file_mode(path.parent))
        inherit.take_owner(temp, path.parent)
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another run made it meanwhile
        except OSError as error:
            if error.errno not in _NO_LINKS:
                raise
            os.replace(temp, path)  # no hard links here: a rename (another run's file, if any, is as good)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        remove_quietly(temp)


def remove_quietly(path: Path) -> None:
    try:
        os.rmdir(path) if path.is_dir() else os.unlink(path)
    except OSError:
        pass


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


def write_error(path: Path, error: OSError, making_folder: bool = False) -> errors.WriteFailed:
    where = path if making_folder else path.parent
    if error.errno == errno.EROFS:
        failure = errors.WriteFailed(
            f"cannot write {where}: the file system is read-only; patch an environment you can write"
        )
        failure.read_only = True
        return failure
    if error.errno in (errno.EACCES, errno.EPERM):
        failure = errors.WriteFailed(
            f"cannot write {where}: {error.strerror}. Run as the user that owns this environment, "
            "or use a virtual environment you own"
        )
        failure.not_allowed = True
        return failure
    what = f"making the folder {path}" if making_folder else f"writing {path}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.WriteFailed(f"no space left while {what}; free some disk space and run again")
    return errors.WriteFailed(
        f"cannot {'make the folder' if making_folder else 'write'} {path}: {error.strerror or error}"
    )
