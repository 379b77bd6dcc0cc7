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
    """No Keras where the command looked (--python, --keras-root or this Python)."""

    exit_code = 3


class NotAPython(PatchError):
    """--python names something that does not run as a Python interpreter."""

    exit_code = 3


class Unsupported(PatchError):
    """This Keras cannot be patched: an unknown layout, an editable install, two versions in one folder."""

    exit_code = 4


class ModifiedFiles(PatchError):
    """A target file is not what the command expects (edited, missing, odd), or changed under the run."""

    exit_code = 5


class TransformFailed(PatchError):
    """A target file does not parse, or lacks the structure the patch needs."""

    exit_code = 6


class WriteFailed(PatchError):
    """A file could not be written; nothing was changed."""

    exit_code = 7
    read_only = False  # the file system is read-only (EROFS): no run can be writing there
    not_allowed = False  # permission denied (EACCES, EPERM): this user may not write there


class BackupProblem(PatchError):
    """The backup (or a journal) is missing, damaged or not ours to trust; nothing was restored."""

    exit_code = 8

    def __init__(self, message: str, damage: str | None = None) -> None:
        super().__init__(message)
        self.damage = damage or message  # what is wrong, without the advice: what `status` shows


class Busy(PatchError):
    """Another convlstm-patch held the environment for longer than --lock-timeout."""

    exit_code = 11


class VerificationFailed(PatchError):
    """The patched layers did not compute what the activations say (or did not finish in time)."""

    exit_code = 9

    def __init__(self, message: str, reports: list | None = None) -> None:
        super().__init__(message)
        self.reports = reports or []  # the verification's reports, for `--json`


class CheckFailed(PatchError):
    """`check` found drift from the hash pins."""

    exit_code = 1


class NoPins(PatchError):
    """`check`: this Keras version has no hash pins in this convlstm-patch."""

    exit_code = 10


class UnsafePath(PatchError):
    """A symlink where a real file or folder must be, or a file where our folder goes."""

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
