"""Every flavour at once, under the environment's lock: apply = prepare all,
write, verify, roll back on failure; revert; clean; recovery for readers.

A command that finds nothing to write (already patched, nothing to revert, no
stale backup) decides so without the lock and creates no file, so a user who
cannot write the environment (a Docker image patched as root) gets exit 0.
It decides only when no journal exists before and after it looked (no run is
half-way); anything else is decided again under the lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from patcher import errors, transaction
from patcher.backup import backup_folder, orphaned_backups, remove_backup_folder, stale_backups
from patcher.environment import Flavour
from patcher.locks import load_lock
from patcher.operations import Action, Outcome, commit, prepare, revert
from patcher.state import State, inspect
from patcher.transaction import DEFAULT_LOCK_TIMEOUT, exclusive, journal_path, recover
from patcher.verification import Report, VerifyOptions, verify_all

T = TypeVar("T")


def apply_all(
    flavours: list[Flavour],
    options: VerifyOptions = VerifyOptions(),
    *,
    verify: bool = True,
    force: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> tuple[list[Outcome], list[Report]]:
    """Patch all flavours; if verification fails, restore them and raise.

    Every flavour is transformed in memory before the first file is written,
    so a Keras we cannot patch leaves the others untouched too. The whole
    run holds the environment's lock; an interrupted earlier run is first
    rolled back.
    """
    unlocked = _refuse_unlocked(flavours, strict)
    if dry_run:
        return _commit_all(_prepare_all(flavours, force=force, options=options), unlocked, dry_run=True), []
    done = _without_lock(flavours, lambda: _already_patched(flavours))
    if done is not None:
        return done, []
    with exclusive(flavours, lock_timeout):
        notes = [note for note in map(recover, flavours) if note]
        prepared = _prepare_all(flavours, force=force, options=options)
        # One transaction for every flavour, verification included: a failure
        # or Ctrl-C anywhere in it rolls all of them back (a SIGKILL leaves
        # the journals, and the next command rolls back).
        with transaction.journaled([(item.flavour, item.journal) for item in prepared if item.planned]):
            outcomes = _commit_all(prepared, unlocked, dry_run=False)
            reports = _verify(outcomes, options) if verify else []
        if notes:
            outcomes[0].warnings.extend(notes)
    return outcomes, reports


def revert_all(
    flavours: list[Flavour], *, force: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> list[Outcome]:
    done = _without_lock(flavours, lambda: _nothing_to_revert(flavours))
    if done is not None:
        return done
    with exclusive(flavours, lock_timeout):
        for flavour in flavours:
            recover(flavour)
        return [revert(flavour, force=force) for flavour in flavours]


def clean_stale(
    flavours: list[Flavour],
    folders: list[Path] | None = None,
    only: str | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[Path]:
    """Remove backups that are never restored: of versions no longer installed (also of a
    distribution uninstalled from one of ``folders``), or damaged and not needed."""

    def removable() -> list[Path]:
        return [folder for flavour in flavours for folder in _removable(flavour)] + orphaned_backups(folders or [], only)

    if _without_lock(flavours, lambda: not removable() or None):
        return []
    sites = tuple(dict.fromkeys(folder.parent.parent.parent for folder in orphaned_backups(folders or [], only)))
    with exclusive(flavours, lock_timeout, sites):
        removed = removable()
        for folder in removed:
            remove_backup_folder(folder)
    return removed


def _removable(flavour: Flavour) -> list[Path]:
    try:
        damaged = inspect(flavour).unneeded_damaged_backup
    except errors.BackupProblem:
        damaged = None  # damaged and needed: never removed by clean
    return stale_backups(flavour) + ([backup_folder(flavour)] if damaged else [])


def recover_if_possible(flavours: list[Flavour]) -> list[str]:
    """For the commands that only read: finish an interrupted run if nobody else holds the lock."""
    if not any(journal_path(flavour).exists() for flavour in flavours):
        return []  # the common case: touch nothing, create no lock file
    try:
        with exclusive(flavours, timeout=0):
            return [note for note in map(recover, flavours) if note]
    except (errors.Busy, errors.WriteFailed, errors.UnsafePath):
        return []


def _without_lock(flavours: list[Flavour], decide: Callable[[], T | None]) -> T | None:
    """decide()'s answer when no run is half-way (no journal before or after it), else None.

    decide() only reads; None from it means "a write is needed", which the
    caller then does (deciding again) under the lock.
    """
    if any(journal_path(flavour).exists() for flavour in flavours):
        return None
    try:
        answer = decide()
    except errors.PatchError:
        return None  # e.g. read while another run was writing: decide under the lock
    if any(journal_path(flavour).exists() for flavour in flavours):
        return None
    return answer


def _already_patched(flavours: list[Flavour]) -> list[Outcome] | None:
    """apply's outcomes when every flavour is patched; decided from hashes, without transforming
    (a flavour to patch is transformed once, under the lock)."""
    if any(inspect(flavour).overall != State.PATCHED for flavour in flavours):
        return None
    return [commit(prepare(flavour)) for flavour in flavours]


def _nothing_to_revert(flavours: list[Flavour]) -> list[Outcome] | None:
    """revert's outcomes when no flavour has a backup and all are pristine (revert writes nothing then)."""
    if any(inspect(flavour).manifest is not None for flavour in flavours):
        return None
    return [revert(flavour) for flavour in flavours]


def _refuse_unlocked(flavours: list[Flavour], strict: bool) -> list[Flavour]:
    """The flavours whose version has no hash lock; with --strict, refuse them."""
    unlocked = [flavour for flavour in flavours if load_lock(flavour.distribution, flavour.version) is None]
    if unlocked and strict:
        raise errors.NoLock(
            f"{unlocked[0].key} has no lock in this convlstm-patch, so its patch is unchecked; "
            "upgrade convlstm-patch, or drop --strict to rely on verification"
        )
    return unlocked


def _prepare_all(flavours, *, force, options: VerifyOptions):
    """Every flavour checked and transformed in memory (nothing written)."""
    prepared = []
    for flavour in flavours:
        if options.on_progress:
            options.on_progress(f"{flavour.key}: checking and transforming {len(flavour.files)} files")
        prepared.append(prepare(flavour, force=force))
    return prepared


def _commit_all(prepared, unlocked: list[Flavour], *, dry_run: bool) -> list[Outcome]:
    outcomes = [commit(item, dry_run=dry_run) for item in prepared]
    for outcome in outcomes:
        if outcome.flavour in unlocked and outcome.action != Action.ALREADY_PATCHED:
            outcome.warnings.append("no lock for this version: the patch is unchecked, relying on verification")
    return outcomes


def _verify(outcomes: list[Outcome], options: VerifyOptions) -> list[Report]:
    """Verify what was patched; raise if a check failed (transaction.journaled then rolls back)."""
    patched = [outcome for outcome in outcomes if outcome.action == Action.PATCHED]
    reports = verify_all([outcome.flavour for outcome in patched], options)
    failed = next((report for report in reports if not report.passed), None)
    if failed is not None:
        probe_check = failed.first_failure
        raise errors.VerificationFailed(
            f"verification of {failed.flavour.key} failed at check '{probe_check.name}': {probe_check.detail}; "
            "the original files were restored. Please report this with `convlstm-patch verify --json` output",
            reports,
        )
    return reports
