"""Errors for humans: one line saying what happened and what to do.

Each kind has its own exit code (documented in README.md, "Exit codes").
Raising one of these guarantees no file was changed by the failing step.
"""

from __future__ import annotations

import click


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


class NoLock(PatchError):
    exit_code = 10


class UnsafePath(PatchError):
    exit_code = 12


class Interrupted(PatchError):
    """Ctrl-C (SIGINT): one Error line and exit 130 (128 + SIGINT), as shells report it, not click's `Aborted!`."""

    exit_code = 130


class BadOptions(PatchError):
    """Options that parse but do not fit together (like click's usage errors)."""

    exit_code = 2
