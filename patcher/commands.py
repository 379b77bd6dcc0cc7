"""What each command does in one environment; the CLI calls one of these per environment.

Every command goes the same way: find the flavours (patcher/environment.py:
where Keras is, never what state it is in), read one snapshot of them
(patcher/snapshot.py), decide from it (patcher/planning.py), and, for a
command that writes, carry the decision out in one Transaction (patcher/
transaction.py). A command that writes decides under the environment's lock,
from a snapshot read after taking it; before the lock only the flavours are
found. A command with nothing to write (status, check, diff, verify, apply
on a patched Keras, revert with nothing to revert) takes no lock and creates
no file, so a user who cannot write the environment gets an answer; it
decides from a settled snapshot: two reads that agree while no journal is
there. A journal means a run is under way or was killed: the reader then
waits for the lock and settles the interrupted run first.

Each returns what it found or did, for patcher.output; none prints.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

from patcher import __version__, checking, errors, pauses, planning, snapshot, verification
from patcher.command_io import (
    Applied,
    ApplyOptions,
    Checked,
    CleanOptions,
    Diffed,
    Environment,
    EnvironmentResult,
    ReadOptions,
    Reverted,
    RevertOptions,
    Status,
    Verified,
    VerifyCommandOptions,
    Versions,
)
from patcher.environment import Flavour, SearchPath, find_flavours, search_path
from patcher.envlock import EnvironmentLock
from patcher.pins import pins_for
from patcher.planning import Action, Outcome
from patcher.recovery import delete_unneeded_backup, recover_all
from patcher.snapshot import FlavourSnapshot, Snapshot
from patcher.store import backup_folder, journal_path, orphaned_backups
from patcher.transaction import Transaction
from patcher.verification import Report, VerifyOptions

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """The flavours of one environment that --only names, found before any lock is taken."""

    environment: Environment
    search: SearchPath
    flavours: tuple[Flavour, ...]
    only: str | None = None
    # What settling an interrupted run changed, a line each: said whatever the command then
    # does, an error included (commands.each puts it in the environment's result).
    recovered: list[str] = field(default_factory=list, compare=False)


# -- the environments an invocation names --------------------------------------------


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
    command: Callable[[Target, Any], Any],
    options: Any,
    needs_keras: bool = True,
) -> list[EnvironmentResult]:
    """Run ``command`` in every environment on its own: one failing never stops or undoes another.

    Each environment is its own all-or-nothing step (its own lock, journal
    and rollback), so a failure leaves the environments before it done and
    verified, and itself as it was.
    """
    results = []
    for environment in named:
        value, found = None, None
        error: errors.PatchError | None = None
        try:
            found = target(environment, only, needs_keras)
            value = command(found, options)
            if hasattr(value, "verdict"):
                value.verdict()
        except KeyboardInterrupt:  # outside apply's or revert's own change, which raise Interrupted
            error = errors.Interrupted(errors.INTERRUPTED_OUTSIDE_A_CHANGE)
        except errors.PatchError as failed:
            error = failed
        # What settling did here is said whatever the command then did, an error included.
        results.append(EnvironmentResult(environment, value, error, found.recovered if found else []))
        if isinstance(error, errors.Interrupted):
            break  # Ctrl-C (SIGTERM, SIGHUP) stops the whole command; the environments done so far are still said
    return results


def exit_code(results: list[EnvironmentResult]) -> int:
    """The worst (highest) exit code of the environments, 0 when all succeeded."""
    return max((result.exit_code for result in results), default=0)


def versions() -> Versions:
    return Versions(__version__, platform.python_version(), find_flavours(list(sys.path)))


def target(environment: Environment, only: str | None, needs_keras: bool = True) -> Target:
    """The flavours --python / --keras-root / --only name; raise if there are none, unless
    the command needs none (clean)."""
    search = search_path(environment.python, environment.keras_root)
    flavours = tuple(find_flavours(search.entries, only))
    if not flavours and needs_keras:
        keras_root, python = environment.keras_root, environment.python
        where = f"under {keras_root}" if keras_root else f"in the environment of {python or 'this Python'}"
        left = orphaned_backups(search.folders, only)
        hint = f" (`convlstm-patch clean` removes the backups left in {left[0].parent})" if left else ""
        if keras_root and any((Path(keras_root) / package).is_dir() for package in ("keras", "tf_keras")):
            hint = (
                " (it holds a Keras package but no dist-info: a source tree? convlstm-patch patches installed copies, "
                "whose RECORD it checks: `pip install .` it into a venv and use --python)"
            )
        raise errors.KerasNotFound(
            f"no {only or 'keras or tf_keras'} installed {where}; install Keras there, or point --python at the "
            f"right interpreter{hint}"
        )
    return Target(environment, search, flavours, only)


# -- the commands ---------------------------------------------------------------------


def status(target: Target, options: ReadOptions) -> Status:
    snap = _settled(target, options.lock_timeout)
    return Status([(flavour, snapshot.explain(flavour)) for flavour in snap.flavours], _orphaned(target))


def apply(target: Target, options: ApplyOptions) -> Applied:
    """Patch every flavour in one transaction, verify, roll back on failure."""
    _require_one_site(target)
    unpinned = _refuse_unpinned(target.flavours, options.strict)
    snap = _settled(target, options.lock_timeout, settle=not options.dry_run)
    if options.dry_run:
        changes = [planning.plan_apply(flavour, options.layers, force=options.force) for flavour in snap.flavours]
        return Applied([_would_patch(change) for change in changes], [])
    if all(planning.already_patched(flavour, options.layers) for flavour in snap.flavours):
        outcomes = [
            Outcome(flavour.flavour, Action.ALREADY_PATCHED, _patched_files(flavour)) for flavour in snap.flavours
        ]
        return Applied(outcomes, [])
    pauses.pause(pauses.DISCOVERED)
    with EnvironmentLock(target.flavours, options.lock_timeout) as lock:
        recover_all(target.flavours, target.recovered, target.search.pycache_prefix)
        snap = snapshot.read(target.flavours)
        changes = [planning.plan_apply(flavour, options.layers, force=options.force) for flavour in snap.flavours]
        if options.verify is not None:
            for change in changes:
                if options.verify.on_progress and change.files:
                    options.verify.on_progress(f"{change.flavour.key}: writing {len(change.files)} files")
        # One transaction for every flavour, verification included: a failure
        # or Ctrl-C anywhere in it rolls all of them back (a SIGKILL leaves
        # the journals, and the next command rolls back).
        with Transaction(changes, target.search.pycache_prefix, lock) as transaction:
            transaction.write()
            patched = [change for change in changes if change.files]
            reports = _verify_patched(patched, _probe_options(target, options.verify)) if options.verify else []
    outcomes = [_applied(change, flavour, unpinned) for change, flavour in zip(changes, snap.flavours)]
    return Applied(outcomes, reports, _restart(outcomes, target.recovered))


def revert(target: Target, options: RevertOptions) -> Reverted:
    _require_one_site(target)
    snap = _settled(target, options.lock_timeout)
    if all(planning.nothing_to_revert(flavour) for flavour in snap.flavours):
        outcomes = [_nothing_to_revert(flavour) for flavour in snap.flavours]
        return Reverted(outcomes, _restart(outcomes, target.recovered))
    pauses.pause(pauses.DISCOVERED)
    with EnvironmentLock(target.flavours, options.lock_timeout) as lock:
        recover_all(target.flavours, target.recovered, target.search.pycache_prefix)
        snap = snapshot.read(target.flavours)
        changes = [planning.plan_revert(flavour, force=options.force) for flavour in snap.flavours]
        with Transaction(changes, target.search.pycache_prefix, lock) as transaction:
            transaction.write()
    outcomes = [
        Outcome(change.flavour, Action.REVERTED, [file.target.relative for file in change.files], list(change.warnings))
        if change.files or change.manifest_before is not None
        else _nothing_to_revert(flavour)
        for change, flavour in zip(changes, snap.flavours)
    ]
    return Reverted(outcomes, _restart(outcomes, target.recovered))


def verify(target: Target, options: VerifyCommandOptions) -> Verified:
    """The probe's reports, from an environment no run changed while they ran."""
    for _ in range(3):
        snap = _settled(target, options.lock_timeout)
        _require_something_patched(snap)
        reports = verification.verify_all(verification.what_to_verify(snap), _probe_options(target, options.probe))
        if snapshot.unchanged(target.flavours, snap):
            return Verified(reports, snap)
    raise errors.Busy(
        "the environment changed while it was being verified (another convlstm-patch at work?); "
        "run `convlstm-patch verify` again when it has finished"
    )


def _require_something_patched(snap: Snapshot) -> None:
    """A probe of a Keras nobody patched can only fail, after TensorFlow took seconds to import: say so at once."""
    if snap.flavours and all(flavour.overall() == snapshot.State.PRISTINE for flavour in snap.flavours):
        names = ", ".join(flavour.flavour.key for flavour in snap.flavours)
        raise errors.VerificationFailed(f"{names}: nothing to verify, it is not patched: run `convlstm-patch apply`")


def check(target: Target, options: ReadOptions) -> Checked:
    """The lock comparisons; checking.verdict(results, strict) gives the exit status."""
    snap = _settled(target, options.lock_timeout)
    results = _each_flavour(snap, options, "comparing with its hash pins", checking.check_pins)
    return Checked(results, options.strict)


def diff(target: Target, options: ReadOptions) -> Diffed:
    snap = _settled(target, options.lock_timeout)
    return Diffed(_each_flavour(snap, options, "computing the diff", planning.diff))


def clean(target: Target, options: CleanOptions) -> list[Path]:
    """Remove the backups never restored: of versions no longer installed (also where Keras was
    uninstalled: needs no Keras found), or damaged and not needed."""
    snap = _settled(target, options.lock_timeout)
    # A run killed in a folder whose Keras pip has uninstalled since: no other command looks
    # there (they find no Keras), so clean settles it (its backup is then an orphan).
    abandoned = [folder for folder in target.search.folders if journal_path(folder).exists()]
    if not _removable(target, snap) and not abandoned:
        return []
    orphan_sites = tuple(dict.fromkeys(folder.parent.parent.parent for folder in _orphaned(target)))
    with EnvironmentLock(target.flavours, options.lock_timeout, (*orphan_sites, *abandoned)):
        recover_all(target.flavours, target.recovered, target.search.pycache_prefix, abandoned)
        removed = _removable(target, snapshot.read(target.flavours))
        for folder in removed:
            delete_unneeded_backup(folder)
    return removed


# -- helpers of the commands -------------------------------------------------------------


def _each_flavour(
    snap: Snapshot, options: ReadOptions, doing: str, function: Callable[[FlavourSnapshot], T]
) -> list[T]:
    """``function`` of each flavour, in order, saying what it is doing as it goes."""
    results = []
    for flavour in snap.flavours:
        if options.on_progress:
            options.on_progress(f"{flavour.flavour.key}: {doing}")
        results.append(function(flavour))
    return results


def _require_one_site(target: Target) -> None:
    """One transaction changes one site folder: flavours installed in two (a tf_keras in the user
    site beside the system's keras) are changed one at a time, as --only names them."""
    sites = sorted({flavour.site for flavour in target.flavours})
    if len(sites) > 1:
        raise errors.Unsupported(
            f"keras and tf_keras are installed in different folders ({' and '.join(map(str, sites))}), which "
            "convlstm-patch does not change in one step; change them one at a time: `--only keras`, then "
            "`--only tf_keras`"
        )


def _settled(target: Target, lock_timeout: float, settle: bool = True) -> Snapshot:
    """A settled snapshot; what settling changed goes into ``target.recovered``."""
    return snapshot.settled(
        target.flavours, target.search.pycache_prefix, lock_timeout, target.recovered, settle=settle
    )


def _refuse_unpinned(flavours, strict: bool) -> list[Flavour]:
    """The flavours whose version has no hash pins; with --strict, refuse them."""
    unpinned = [flavour for flavour in flavours if pins_for(flavour) is None]
    if unpinned and strict:
        raise errors.NoPins(
            f"{unpinned[0].key} has no hash pins in this convlstm-patch, so its patch is unchecked; "
            "upgrade convlstm-patch, or drop --strict to rely on verification"
        )
    return unpinned


def _verify_patched(changes, options: VerifyOptions) -> list[Report]:
    """Verify what this run patched; raise if a check failed (the Transaction then rolls back)."""
    reports = verification.verify_all(
        [
            verification.Verifiable(change.flavour, change.manifest_after.layer_sets, change.manifest_after)
            for change in changes
        ],
        options,
    )
    failed = next((report for report in reports if not report.passed), None)
    if failed is not None and failed.timed_out is not None:
        raise errors.VerificationFailed(verification.timed_out(failed, "apply", restored=True), reports)
    if failed is not None:
        probe_check = failed.first_failure
        where = f"check '{probe_check.name}': {probe_check.detail}" if probe_check else "its run"
        raise errors.VerificationFailed(
            f"verification of {failed.flavour.key} failed at {where}; "
            "the original files were restored. Please report this with `convlstm-patch verify --json` output",
            reports,
        )
    return reports


def _probe_options(target: Target, options: VerifyOptions) -> VerifyOptions:
    """The probe runs in the environment's own interpreter (--python; else this one)."""
    return replace(options, python=target.environment.python)


def _applied(change, flavour: FlavourSnapshot, unpinned: list[Flavour]) -> Outcome:
    if not change.files and change.manifest_after == change.manifest_before:
        return Outcome(change.flavour, Action.ALREADY_PATCHED, _patched_files(flavour), list(change.warnings))
    warnings = list(change.warnings)
    if change.flavour in unpinned:
        warnings.append("no hash pins for this version: the patch is unchecked, relying on verification")
    return Outcome(change.flavour, Action.PATCHED, [file.target.relative for file in change.files], warnings)


def _would_patch(change) -> Outcome:
    pairs = [(file.target.relative, file.before or b"", file.after) for file in change.files]
    return Outcome(
        change.flavour,
        Action.WOULD_PATCH,
        [relative for relative, _, _ in pairs],
        list(change.warnings),
        planning.diffs(pairs),
    )


def _patched_files(flavour: FlavourSnapshot) -> list[str]:
    return [file.target.relative for file in flavour.files_of(flavour.patched_sets)]


def _nothing_to_revert(flavour: FlavourSnapshot) -> Outcome:
    notes = [snapshot.damaged_backup_note(flavour)] if flavour.unneeded_damaged_backup else []
    return Outcome(flavour.flavour, Action.NOTHING_TO_REVERT, warnings=notes)


def _orphaned(target: Target) -> list[Path]:
    return orphaned_backups(target.search.folders, target.only)


def _removable(target: Target, snap: Snapshot) -> list[Path]:

    found = [folder for flavour in snap.flavours for folder in flavour.stale]
    found += [backup_folder(flavour.flavour) for flavour in snap.flavours if flavour.unneeded_damaged_backup]
    return found + _orphaned(target)


def _restart(outcomes: list[Outcome], recovered: list[str]) -> list[str]:
    """Why processes must restart to see the change: none when no file changed.

    A running Python keeps the module objects it imported; only a new
    process (a restarted Jupyter kernel) reads the new source.
    """
    changed = [o.flavour for o in outcomes if o.action in (Action.PATCHED, Action.REVERTED) and o.files]
    if not changed and not recovered:
        return []
    notes = [
        (
            "Python processes that imported Keras before this keep the old code until they restart "
            "(Jupyter: restart the kernel)"
        )
    ]
    # This very process may be one of them: the tool imported and run from a notebook kernel.
    loaded = [flavour for flavour in changed if _imported_here(flavour)]
    notes += [
        f"this Python process has already imported {f.package}: it keeps the old code; restart it" for f in loaded
    ]
    return notes


def _imported_here(flavour: Flavour) -> bool:
    module = sys.modules.get(flavour.package)
    source = getattr(module, "__file__", None)
    # The package's folder, resolved: its __init__.py may itself be a link (a link farm).
    return source is not None and Path(source).parent.resolve().is_relative_to(flavour.site)
