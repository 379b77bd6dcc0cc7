"""Cached bytecode: deleted after every write or restore, so the next import reads the new source."""

from __future__ import annotations

from pathlib import Path

from patcher import errors


def remove(source: Path, pycache_prefix: Path | None = None, *, best_effort: bool = False) -> None:
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
        # Mirrored under the path the interpreter imported it by: the one given, or, where a
        # symlink leads to the site folder, the real one (either may be on its sys.path).
        for folder in dict.fromkeys((source.parent.absolute(), source.parent.resolve())):
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
