"""Errors for humans: one line saying what happened and what to do.

Each kind has its own exit code (documented in README.md, "Exit codes").
Raising one of these guarantees no file was changed by the failing step.
"""

from __future__ import annotations

import signal

import click

from patcher import interrupts


class PatchError(click.ClickException):
    exit_code = 1


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
            self.exit_code = 128 + signum  # type: ignore[misc]  # click's ClassVar: here the signal decides
        super().__init__(message)


class BadOptions(PatchError):
    """Options that parse but do not fit together (like click's usage errors)."""

    exit_code = 2
