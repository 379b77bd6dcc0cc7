"""Errors for humans: one line saying what happened and what to do.

Each kind has its own exit code (documented in README.md, "Exit codes"), whose
meaning holds: 7 (WriteFailed) means nothing was changed. The core raises these;
the CLI prints them (patcher/cli.py), so the core needs no command-line library.
"""

from __future__ import annotations

import enum
import signal

from patcher import interrupts


class ExitCode(enum.IntEnum):
    """What each kind of error exits with: README.md's "Exit codes", whose meanings hold."""

    ERROR = 1  # anything else; `check` found drift (CheckFailed)
    BAD_OPTIONS = 2  # options that parse but do not fit together (like click's usage errors)
    KERAS_NOT_FOUND = 3  # no Keras where the command looked, or --python is not a Python
    UNSUPPORTED = 4  # an unknown layout, an editable install, two versions in one folder
    MODIFIED_FILES = 5  # a target file is not what the command expects, or changed under the run
    TRANSFORM_FAILED = 6  # a target file does not parse, or lacks the structure the patch needs
    WRITE_FAILED = 7  # a file could not be written; nothing was changed
    BACKUP_PROBLEM = 8  # the backup (or a journal) is missing, damaged or not ours to trust
    VERIFICATION_FAILED = 9  # the patched layers did not compute what the activations say
    NO_PINS = 10  # `check`: this Keras version has no hash pins in this convlstm-patch
    BUSY = 11  # another convlstm-patch held the environment for longer than --lock-timeout
    UNSAFE_PATH = 12  # a symlink where a real file or folder must be, or a file where our folder goes
    INTERRUPTED = 130  # 128 + SIGINT; SIGTERM and SIGHUP give 128 + their number


class PatchError(Exception):
    """What the core raises for a human: a one-line message and the exit code of its kind."""

    exit_code: int = ExitCode.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message  # what the CLI prints after "Error: "; callers may add to it

    def __str__(self) -> str:
        return self.message


def _kind(name: str, exit_code: ExitCode) -> type[PatchError]:
    """A kind of error that carries only its message (what it means: its ExitCode's comment)."""
    return type(name, (PatchError,), {"exit_code": exit_code, "__module__": __name__})


BadOptions = _kind("BadOptions", ExitCode.BAD_OPTIONS)
KerasNotFound = _kind("KerasNotFound", ExitCode.KERAS_NOT_FOUND)
Unsupported = _kind("Unsupported", ExitCode.UNSUPPORTED)
ModifiedFiles = _kind("ModifiedFiles", ExitCode.MODIFIED_FILES)
TransformFailed = _kind("TransformFailed", ExitCode.TRANSFORM_FAILED)
NoPins = _kind("NoPins", ExitCode.NO_PINS)
Busy = _kind("Busy", ExitCode.BUSY)
UnsafePath = _kind("UnsafePath", ExitCode.UNSAFE_PATH)
CheckFailed = _kind("CheckFailed", ExitCode.ERROR)


# The kinds that carry more than their message.


class WriteFailed(PatchError):
    """A file could not be written; nothing was changed."""

    exit_code = ExitCode.WRITE_FAILED
    read_only = False  # the file system is read-only (EROFS): no run can be writing there
    not_allowed = False  # permission denied (EACCES, EPERM): this user may not write there


class BackupProblem(PatchError):
    """The backup (or a journal) is missing, damaged or not ours to trust; nothing was restored."""

    exit_code = ExitCode.BACKUP_PROBLEM

    def __init__(self, message: str, damage: str | None = None) -> None:
        super().__init__(message)
        self.damage = damage or message  # what is wrong, without the advice: what `status` shows


class VerificationFailed(PatchError):
    """The patched layers did not compute what the activations say (or did not finish in time)."""

    exit_code = ExitCode.VERIFICATION_FAILED

    def __init__(self, message: str, reports: list | None = None) -> None:
        super().__init__(message)
        self.reports = reports or []  # the verification's reports, for `--json`


# A Ctrl-C outside apply's or revert's own change (which say what they rolled back or finished).
INTERRUPTED_OUTSIDE_A_CHANGE = (
    "interrupted (Ctrl-C); run `convlstm-patch status`: the next convlstm-patch command settles a half-done change "
    "(rolled back if it stopped before its commit point, finished if after)"
)


class Interrupted(PatchError):
    """Ctrl-C (SIGINT), or SIGTERM / SIGHUP, which stop a run the same way (patcher/interrupts.py):
    one Error line and exit 128 + the signal's number, as shells report it (130, 143, 129), not
    click's `Aborted!`. Messages are written for Ctrl-C, which is named in them as "(Ctrl-C)"; when
    another signal stopped the command, that signal is named there instead."""

    exit_code: int = ExitCode.INTERRUPTED

    def __init__(self, message: str) -> None:
        signum = interrupts.stopped_by()
        if signum is not None:
            message = message.replace("(Ctrl-C)", f"({signal.Signals(signum).name})")
            self.exit_code = 128 + signum  # here the signal decides
        super().__init__(message)
