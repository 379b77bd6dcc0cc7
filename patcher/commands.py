"""What each command does, one function per command; the CLI calls one of these.

Each takes the Target the options name and returns what it found or did, for
patcher.output to render; none prints. Commands that change files hold the
environment's lock and first finish an interrupted run (patcher.workflow); the
ones that only read (status, verify, check, diff) take the lock to recover
only when a journal says there is something to recover.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from patcher import checking, errors, operations, state, workflow
from patcher.environment import Flavour, find_flavours, search_path
from patcher.operations import Outcome
from patcher.state import FlavourState
from patcher.verification import DEFAULT_TIMEOUT, Report, VerifyOptions, verify_all

Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    python: str | None
    flavours: list[Flavour]


@dataclass(frozen=True)
class Status:
    recovered: list[str]  # what finishing an interrupted run did
    flavours: list[tuple[FlavourState, list[str]]]  # each flavour's state and what it means


@dataclass(frozen=True)
class Applied:
    outcomes: list[Outcome]
    reports: list[Report]


@dataclass(frozen=True)
class Verified:
    recovered: list[str]
    reports: list[Report]


@dataclass(frozen=True)
class Checked:
    recovered: list[str]
    results: list[checking.LockCheck]


@dataclass(frozen=True)
class Diffed:
    recovered: list[str]
    outcomes: list[Outcome]


def target(python: str | None, keras_root: str | None, only: str | None) -> Target:
    """The flavours that --python / --keras-root / --only name; raise if there are none."""
    flavours = find_flavours(search_path(python, keras_root), only)
    if not flavours:
        where = f"under {keras_root}" if keras_root else f"in the environment of {python or 'this Python'}"
        wanted = only or "keras or tf_keras"
        raise errors.KerasNotFound(
            f"no {wanted} installed {where}; install Keras there, or point --python at the right interpreter"
        )
    return Target(python, flavours)


def status(target: Target) -> Status:
    recovered = workflow.recover_if_possible(target.flavours)
    states = [state.inspect(flavour) for flavour in target.flavours]
    return Status(recovered, [(flavour_state, state.explain(flavour_state)) for flavour_state in states])


def apply(
    target: Target,
    *,
    force: bool,
    dry_run: bool,
    verify: bool,
    strict: bool,
    backends: tuple[str, ...],
    timeout: float,
    lock_timeout: float,
    on_progress: Progress | None = None,
) -> Applied:
    options = VerifyOptions(target.python, tuple(backends), timeout, on_progress)
    outcomes, reports = workflow.apply_all(
        target.flavours, options, verify=verify, force=force, dry_run=dry_run, strict=strict, lock_timeout=lock_timeout
    )
    return Applied(outcomes, reports)


def verify(
    target: Target, *, backends: tuple[str, ...], timeout: float = DEFAULT_TIMEOUT, on_progress: Progress | None = None
) -> Verified:
    """The probe's reports; verification.verdict(reports) gives the exit status."""
    recovered = workflow.recover_if_possible(target.flavours)
    options = VerifyOptions(target.python, tuple(backends), timeout, on_progress)
    return Verified(recovered, verify_all(target.flavours, options))


def check(target: Target, *, on_progress: Progress | None = None) -> Checked:
    """The lock comparisons; checking.verdict(results, strict) gives the exit status."""
    recovered = workflow.recover_if_possible(target.flavours)
    return Checked(recovered, _each(target, checking.check_lock, on_progress, "comparing with its lock"))


def revert(target: Target, *, force: bool, lock_timeout: float) -> list[Outcome]:
    return workflow.revert_all(target.flavours, force=force, lock_timeout=lock_timeout)


def clean(target: Target, *, lock_timeout: float) -> list[Path]:
    return workflow.clean_stale(target.flavours, lock_timeout=lock_timeout)


def diff(target: Target, *, on_progress: Progress | None = None) -> Diffed:
    recovered = workflow.recover_if_possible(target.flavours)
    return Diffed(recovered, _each(target, operations.diff, on_progress, "computing the diff"))


def _each(target: Target, function: Callable[[Flavour], T], on_progress: Progress | None, doing: str) -> list[T]:
    """function(flavour) for every flavour, saying what it is doing first."""
    results = []
    for flavour in target.flavours:
        if on_progress:
            on_progress(f"{flavour.key}: {doing}")
        results.append(function(flavour))
    return results
