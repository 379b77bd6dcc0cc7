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
from collections.abc import Iterable, Iterator

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
    with _handling(NAMES, _raise, only_default=True):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP while the block runs (a commit point, a rollback: a few
    renames), then act on the first that came, as it would have acted. A second Ctrl-C during
    a rollback so waits for the rollback to finish, instead of leaving it half-done."""
    received: list[int] = []
    try:
        with _handling(("SIGINT", *NAMES), lambda number, frame: received.append(number)) as previous:
            yield
    finally:
        if received:  # the handlers are back: act on the first signal as it would have acted
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), received[0])


@contextlib.contextmanager
def _handling(names: Iterable[str], handler, only_default: bool = False) -> Iterator[dict]:
    """``handler`` for these signals while the block runs (only where the default is in place, if
    ``only_default``); the handlers before it back after. Yields them, by signal number."""
    previous: dict = {}
    for name in names:
        signum = getattr(signal, name, None)
        if signum is None or (only_default and signal.getsignal(signum) is not signal.SIG_DFL):
            continue
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread (the CLI called from a worker thread): left as it is
            break
    try:
        yield previous
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _raise(signum: int, frame) -> None:
    global _stopped_by
    if _stopped_by is None:
        _stopped_by = signum
    raise Stopped(signum)
