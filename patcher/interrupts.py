"""SIGTERM and SIGHUP stop a run the way Ctrl-C does.

Python turns Ctrl-C (SIGINT) into KeyboardInterrupt, and every path that must
not leave a change half-done or a process running handles it: the
Transaction rolls back, the probes and `--python`'s interpreter are killed.
SIGTERM (`timeout`, `kill`, a container or CI job stopped) and SIGHUP (the
terminal closed) would instead end the tool at once: no rollback, and the
processes it started, each in a session of its own, left running. While a
command runs, :func:`like_ctrl_c` makes them raise :class:`Stopped`, a
KeyboardInterrupt, so those same paths handle them; errors.Interrupted then
names the signal and exits with 128 + its number, as shells report it.

A signal the user chose to ignore (`nohup` ignores SIGHUP), or that the
program embedding the tool already handles, is left as it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

# SIGHUP is POSIX-only: looked up by name, never assumed (Windows has SIGTERM alone).
NAMES = ("SIGTERM", "SIGHUP")

_stopped_by: int | None = None  # the first of them received during the current command


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM or SIGHUP while a command runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stopped_by() -> int | None:
    """The signal (SIGTERM or SIGHUP) that stopped the current command; None: none did (Ctrl-C, or running)."""
    return _stopped_by


@contextlib.contextmanager
def like_ctrl_c() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise Stopped; as before, after it."""
    global _stopped_by
    _stopped_by = None
    previous = {}
    for name in NAMES:
        signum = getattr(signal, name, None)
        if signum is None or signal.getsignal(signum) is not signal.SIG_DFL:
            continue
        try:
            previous[signum] = signal.signal(signum, _raise)
        except ValueError:  # not the main thread (the CLI called from a worker thread): left as it is
            break
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP while the block runs (a commit point, a rollback: a few
    renames), then act on the first that came, as it would have acted. A second Ctrl-C during
    a rollback so waits for the rollback to finish, instead of leaving it half-done."""
    received: list[int] = []
    previous = {}
    for name in ("SIGINT", *NAMES):
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        try:
            previous[signum] = signal.signal(signum, lambda number, frame: received.append(number))
        except ValueError:  # not the main thread: nothing to hold
            break
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), received[0])


def _raise(signum: int, frame) -> None:
    global _stopped_by
    if _stopped_by is None:
        _stopped_by = signum
    raise Stopped(signum)
