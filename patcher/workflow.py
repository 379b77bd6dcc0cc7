"""apply = prepare every flavour, write, verify, roll back on failure."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from patcher import errors
from patcher.backup import remove_backup_folder, stale_backups
from patcher.environment import Flavour
from patcher.locks import load_lock
from patcher.operations import Outcome, commit, prepare, revert
from patcher.transaction import DEFAULT_LOCK_TIMEOUT, exclusive, journal_path, recover
from patcher.verification import DEFAULT_TIMEOUT, Report, verify


def apply_all(
    flavours: list[Flavour],
    *,
    force: bool = False,
    dry_run: bool = False,
    check: bool = True,
    strict: bool = False,
    python: str | None = None,
    backends: tuple[str, ...] = (),
    timeout: float = DEFAULT_TIMEOUT,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[list[Outcome], list[Report]]:
    """Patch all flavours; if verification fails, restore them and raise.

    Every flavour is transformed in memory before the first file is written,
    so a Keras we cannot patch leaves the others untouched too. The whole
    run holds the environment's lock; an interrupted earlier run is first
    rolled back.
    """
    if dry_run:
        return _apply(flavours, force=force, dry_run=True, strict=strict, on_progress=on_progress), []
    with exclusive(flavours, lock_timeout):
        notes = [note for note in map(recover, flavours) if note]
        outcomes = _apply(flavours, force=force, dry_run=False, strict=strict, on_progress=on_progress)
        if notes:
            outcomes[0].warnings.extend(notes)
        reports = _verify_or_roll_back(outcomes, check, python, backends, timeout, on_progress)
    return outcomes, reports


def revert_all(
    flavours: list[Flavour], *, force: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> list[Outcome]:
    with exclusive(flavours, lock_timeout):
        for flavour in flavours:
            recover(flavour)
        return [revert(flavour, force=force) for flavour in flavours]


def clean_stale(flavours: list[Flavour], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> list[Path]:
    with exclusive(flavours, lock_timeout):
        removed = [folder for flavour in flavours for folder in stale_backups(flavour)]
        for folder in removed:
            remove_backup_folder(folder)
    return removed


def recover_if_possible(flavours: list[Flavour]) -> list[str]:
    """For `status`: finish an interrupted run if nobody else holds the lock."""
    if not any(journal_path(flavour).exists() for flavour in flavours):
        return []  # the common case: touch nothing, create no lock file
    try:
        with exclusive(flavours, timeout=0):
            return [note for note in map(recover, flavours) if note]
    except (errors.Busy, errors.WriteFailed, errors.UnsafePath):
        return []


def _apply(flavours, *, force, dry_run, strict, on_progress) -> list[Outcome]:
    unlocked = [flavour for flavour in flavours if load_lock(flavour.distribution, flavour.version) is None]
    if unlocked and strict:
        raise errors.NoLock(
            f"{unlocked[0].key} has no lock in this convlstm-patch, so its patch is unchecked; "
            "upgrade convlstm-patch, or drop --strict to rely on verification"
        )
    prepared = []
    for flavour in flavours:
        if on_progress:
            on_progress(f"{flavour.key}: checking and transforming {len(flavour.files)} files")
        prepared.append(prepare(flavour, force=force))
    outcomes = [commit(item, dry_run=dry_run) for item in prepared]
    for outcome in outcomes:
        if outcome.flavour in unlocked and outcome.action != "already-patched":
            outcome.warnings.append("no lock for this version: the patch is unchecked, relying on verification")
    return outcomes


def _verify_or_roll_back(outcomes, check, python, backends, timeout, on_progress) -> list[Report]:
    patched = [outcome.flavour for outcome in outcomes if outcome.action == "patched"]
    if not check or not patched:
        return []
    reports = verify_all(patched, python=python, backends=backends, timeout=timeout, on_progress=on_progress)
    failed = next((report for report in reports if not report.passed), None)
    if failed is not None:
        for flavour in patched:
            revert(flavour, force=True)
        check_failed = failed.first_failure
        raise errors.VerificationFailed(
            f"verification of {failed.flavour.key} failed at check '{check_failed.name}': {check_failed.detail}; "
            "the original files were restored. Please report this with `convlstm-patch verify --json` output"
        )
    return reports


def verify_all(
    flavours: list[Flavour],
    *,
    python: str | None = None,
    backends: tuple[str, ...] = (),
    timeout: float = DEFAULT_TIMEOUT,
    on_progress: Callable[[str], None] | None = None,
) -> list[Report]:
    """One fresh subprocess per flavour and backend (Keras 3 only is multi-backend)."""
    reports = []
    for flavour in flavours:
        multi_backend = flavour.layout is not None and flavour.layout.name == "keras3"
        runs = (None, *backends) if multi_backend else (None,)
        for backend in dict.fromkeys(runs):
            label = f"{flavour.key}" + (f" [{backend}]" if backend else "")
            reports.append(
                verify(
                    flavour, python=python, backend=backend, timeout=timeout, on_progress=_labelled(on_progress, label)
                )
            )
    return reports


def _labelled(on_progress, label: str):
    if on_progress is None:
        return None
    return lambda line: on_progress(f"{label}: {line}")
