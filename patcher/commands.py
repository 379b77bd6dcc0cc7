"""What each command does, one function per command; the CLI calls one of these.

Each takes the Target the options name and returns what it found or did, for
patcher.output to render; none prints. Commands that change files hold the
environment's lock and first finish an interrupted run (patcher.workflow),
but only when there is something to write (already patched, nothing to
revert or clean: no lock, no file); the ones that only read (status, verify,
check, diff) take the lock to recover only when a journal says there is
something to recover.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from patcher import __version__, checking, errors, operations, state, verification, workflow
from patcher.backup import orphaned_backups
from patcher.environment import Flavour, find_flavours, search_path
from patcher.operations import Action, Outcome
from patcher.spec import LayerSet
from patcher.state import FlavourState
from patcher.verification import DEFAULT_TIMEOUT, Report, VerifyOptions, verify_all

Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Environment:
    """One environment an invocation names: a --python, a --keras-root, or this Python."""

    python: str | None = None
    keras_root: str | None = None

    @property
    def label(self) -> str:
        return self.keras_root or self.python or sys.executable


@dataclass(frozen=True)
class Target:
    python: str | None
    flavours: list[Flavour]
    folders: list[Path] = field(default_factory=list)  # the site folders searched
    only: str | None = None


@dataclass(frozen=True)
class EnvironmentResult:
    """What one command did in one environment: its value, the error it ended with, or both
    (verify and check report first, then fail)."""

    environment: Environment
    value: Any = None
    error: errors.PatchError | None = None

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error else 0


@dataclass(frozen=True)
class Status:
    recovered: list[str]  # what finishing an interrupted run did
    flavours: list[tuple[FlavourState, list[str]]]  # each flavour's state and what it means


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
    recovered: list[str]
    reports: list[Report]

    def verdict(self) -> None:
        verification.verdict(self.reports)


@dataclass(frozen=True)
class Checked:
    recovered: list[str]
    results: list[checking.LockCheck]
    strict: bool = False

    def verdict(self) -> None:
        checking.verdict(self.results, self.strict)


@dataclass(frozen=True)
class Versions:
    tool: str
    python: str
    flavours: list[Flavour]  # found on this Python's path, read from dist-info (no import)


def environments(pythons: tuple[str, ...] = (), keras_roots: tuple[str, ...] = ()) -> list[Environment]:
    """The environments named by repeatable --python / --keras-root (none: this Python).

    --keras-root wins for finding Keras and --python then names the
    interpreter that verifies, so several roots share at most one --python.
    """
    if keras_roots:
        if len(pythons) > 1:
            raise errors.BadOptions(
                "give at most one --python with --keras-root (it runs the verification of every root), "
                "or several --python without --keras-root"
            )
        return [Environment(pythons[0] if pythons else None, root) for root in dict.fromkeys(keras_roots)]
    return [Environment(python) for python in dict.fromkeys(pythons)] or [Environment()]


def each(
    named: list[Environment],
    only: str | None,
    command: Callable[..., Any],
    *,
    needs_keras: bool = True,
    layers: frozenset[LayerSet] | None = None,
    **options: Any,
) -> list[EnvironmentResult]:
    """Run ``command`` in every environment on its own: one failing never stops or undoes another.

    Each environment is its own all-or-nothing step (its own lock, journal
    and rollback), so a failure leaves the environments before it done and
    verified, and itself as it was.
    """
    results = []
    for environment in named:
        value = None
        try:
            value = command(target(environment.python, environment.keras_root, only, needs_keras, layers), **options)
            if hasattr(value, "verdict"):
                value.verdict()
        except errors.Interrupted as error:
            results.append(EnvironmentResult(environment, value, error))
            break  # Ctrl-C stops the whole command, not just this environment
        except errors.PatchError as error:
            results.append(EnvironmentResult(environment, value, error))
        else:
            results.append(EnvironmentResult(environment, value))
    return results


def exit_code(results: list[EnvironmentResult]) -> int:
    """The worst (highest) exit code of the environments, 0 when all succeeded."""
    return max((result.exit_code for result in results), default=0)


def versions() -> Versions:
    return Versions(__version__, platform.python_version(), find_flavours(list(sys.path)))


@dataclass(frozen=True)
class Diffed:
    recovered: list[str]
    outcomes: list[Outcome]


def target(
    python: str | None,
    keras_root: str | None,
    only: str | None,
    needs_keras: bool = True,
    layers: frozenset[LayerSet] | None = None,
) -> Target:
    """The flavours that --python / --keras-root / --only name, with the files of --layers.

    Raise if there are none, unless the command does not need any (clean).
    """
    path = search_path(python, keras_root)
    folders = list(dict.fromkeys(Path(entry).resolve() for entry in path if entry and Path(entry).is_dir()))
    flavours = find_flavours(path, only, layers)
    if not flavours and needs_keras:
        where = f"under {keras_root}" if keras_root else f"in the environment of {python or 'this Python'}"
        wanted = only or "keras or tf_keras"
        left = orphaned_backups(folders, only)
        hint = f" (`convlstm-patch clean` removes the backups left in {left[0].parent})" if left else ""
        if keras_root and any((Path(keras_root) / package).is_dir() for package in ("keras", "tf_keras")):
            hint = (
                " (it holds a Keras package but no dist-info: a source tree? convlstm-patch patches installed copies, "
                "whose RECORD it checks: `pip install .` it into a venv and use --python)"
            )
        raise errors.KerasNotFound(
            f"no {wanted} installed {where}; install Keras there, or point --python at the right interpreter{hint}"
        )
    return Target(python, flavours, folders, only)


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
    return Applied(outcomes, reports, _restart(outcomes))


def verify(
    target: Target, *, backends: tuple[str, ...], timeout: float = DEFAULT_TIMEOUT, on_progress: Progress | None = None
) -> Verified:
    """The probe's reports; verification.verdict(reports) gives the exit status."""
    recovered = workflow.recover_if_possible(target.flavours)
    options = VerifyOptions(target.python, tuple(backends), timeout, on_progress)
    return Verified(recovered, verify_all(target.flavours, options))


def check(target: Target, *, strict: bool = False, on_progress: Progress | None = None) -> Checked:
    """The lock comparisons; checking.verdict(results, strict) gives the exit status."""
    recovered = workflow.recover_if_possible(target.flavours)
    return Checked(recovered, _each(target, checking.check_lock, on_progress, "comparing with its lock"), strict)


def revert(target: Target, *, force: bool, lock_timeout: float) -> Reverted:
    outcomes = workflow.revert_all(target.flavours, force=force, lock_timeout=lock_timeout)
    return Reverted(outcomes, _restart(outcomes))


def clean(target: Target, *, lock_timeout: float) -> list[Path]:
    """Remove the backups never restored; also where Keras was uninstalled (needs no Keras found)."""
    return workflow.clean_stale(target.flavours, target.folders, target.only, lock_timeout=lock_timeout)


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


def _restart(outcomes: list[Outcome]) -> list[str]:
    """Why processes must restart to see the change: none when no file changed.

    A running Python keeps the module objects it imported; only a new
    process (a restarted Jupyter kernel) reads the new source.
    """
    changed = [o.flavour for o in outcomes if o.action in (Action.PATCHED, Action.REVERTED) and o.files]
    if not changed:
        return []
    notes = [
        "Python processes that imported Keras before this keep the old code until they restart "
        "(Jupyter: restart the kernel)"
    ]
    # This very process may be one of them: the tool imported and run from a notebook kernel.
    loaded = [flavour for flavour in changed if _imported_here(flavour)]
    notes += [f"this Python process has already imported {f.distribution}: it keeps the old code; restart it" for f in loaded]
    return notes


def _imported_here(flavour: Flavour) -> bool:
    module = sys.modules.get(flavour.distribution)
    source = getattr(module, "__file__", None)
    return source is not None and Path(source).resolve().is_relative_to(flavour.site)
