"""Errors for humans: one line saying what happened and what to do.

Each kind has its own exit code (documented in README.md, "Exit codes"), whose
meaning holds: 7 (WriteFailed) means nothing was changed. The core raises these;
the CLI prints them (patcher/cli.py), so the core needs no command-line library.
"""

from __future__ import annotations

import signal

from patcher import interrupts


class PatchError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message  # what the CLI prints after "Error: "; callers may add to it

    def __str__(self) -> str:
        return self.message


class KerasNotFound(PatchError):
    exit_code = 3


class NotAPython(PatchError):
    exit_code = 3


class Unsupported(PatchError):
    exit_code = 4


class ModifiedFiles(PatchError):
    exit_code = 5


class TransformFailed(PatchError):
    exit_code = 6


class WriteFailed(PatchError):
    exit_code = 7
    read_only = False  # the file system is read-only (EROFS): no run can be writing there


class BackupProblem(PatchError):
    exit_code = 8

    def __init__(self, message: str, damage: str | None = None) -> None:
        super().__init__(message)
        self.damage = damage or message  # what is wrong, without the advice: what `status` shows


class Busy(PatchError):
    exit_code = 11


class VerificationFailed(PatchError):
    exit_code = 9

    def __init__(self, message: str, reports: list | None = None) -> None:
        super().__init__(message)
        self.reports = reports or []  # the verification's reports, for `--json`


class CheckFailed(PatchError):
    exit_code = 1


class NoPins(PatchError):
    exit_code = 10


class UnsafePath(PatchError):
    exit_code = 12


class Interrupted(PatchError):
    """Ctrl-C (SIGINT), or SIGTERM / SIGHUP, which stop a run the same way (patcher/interrupts.py):
    one Error line and exit 128 + the signal's number, as shells report it (130, 143, 129), not
    click's `Aborted!`. Messages are written for Ctrl-C, which is named in them as "(Ctrl-C)"; when
    another signal stopped the command, that signal is named there instead."""

    exit_code = 130  # 128 + SIGINT

    def __init__(self, message: str) -> None:
        signum = interrupts.stopped_by()
        if signum is not None:
            message = message.replace("(Ctrl-C)", f"({signal.Signals(signum).name})")
            self.exit_code = 128 + signum  # here the signal decides
        super().__init__(message)


class BadOptions(PatchError):
    """Options that parse but do not fit together (like click's usage errors)."""

    exit_code = 2
