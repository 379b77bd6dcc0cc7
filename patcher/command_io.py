"""What each command takes and returns: one frozen options object from the CLI to the core, and
one value back from the core to patcher/output.py (patcher/commands.py does the work)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from patcher import checking, errors, verification
from patcher.environment import Flavour
from patcher.envlock import DEFAULT_LOCK_TIMEOUT
from patcher.layersets import LayerSet
from patcher.planning import Outcome
from patcher.snapshot import FlavourSnapshot, Snapshot
from patcher.verification import Report, VerifyOptions


@dataclass(frozen=True)
class Environment:
    """One environment an invocation names: a --python, a --keras-root, or this Python."""

    python: str | None = None
    keras_root: str | None = None

    @property
    def label(self) -> str:
        return self.keras_root or self.python or sys.executable


# -- each command's options: one frozen object, from the CLI to the core ----------


@dataclass(frozen=True)
class ReadOptions:
    """status, diff, check."""

    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    strict: bool = False  # check: a version with no lock fails
    on_progress: Callable[[str], None] | None = None


@dataclass(frozen=True)
class ApplyOptions:
    layers: frozenset[LayerSet] | None = None  # exactly these sets (ConvLSTM always; None: those chosen before)
    force: bool = False
    dry_run: bool = False
    verify: VerifyOptions | None = field(default_factory=VerifyOptions)  # None: --no-verify
    strict: bool = False
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT


@dataclass(frozen=True)
class RevertOptions:
    force: bool = False
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT


@dataclass(frozen=True)
class VerifyCommandOptions:
    probe: VerifyOptions = field(default_factory=VerifyOptions)
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT


@dataclass(frozen=True)
class CleanOptions:
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT


# -- what each command returns ------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentResult:
    """What one command did in one environment: its value, the error it ended with, or both
    (verify and check report first, then fail)."""

    environment: Environment
    value: Any = None
    error: errors.PatchError | None = None
    recovered: list[str] = field(default_factory=list)  # what settling an interrupted run changed

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error else 0


@dataclass(frozen=True)
class Status:
    flavours: list[tuple[FlavourSnapshot, list[str]]]  # snapshot, notes
    orphaned: list[Path] = field(default_factory=list)  # backups of distributions no longer installed (`clean`)


@dataclass(frozen=True)
class Applied:
    outcomes: list[Outcome]
    reports: list[Report]
    restart: list[str] = field(default_factory=list)  # why running processes must restart


@dataclass(frozen=True)
class Reverted:
    outcomes: list[Outcome]
    restart: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verified:
    reports: list[Report]
    snapshot: Snapshot

    def verdict(self) -> None:
        verification.verdict(self.reports, self.snapshot)


@dataclass(frozen=True)
class Checked:
    results: list[checking.PinsCheck]
    strict: bool = False

    def verdict(self) -> None:
        checking.verdict(self.results, self.strict)


@dataclass(frozen=True)
class Diffed:
    outcomes: list[Outcome]


@dataclass(frozen=True)
class Versions:
    tool: str
    python: str
    flavours: list[Flavour]  # found on this Python's path, read from dist-info (no import)
