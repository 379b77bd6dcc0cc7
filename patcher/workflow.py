"""apply = prepare every flavour, write, verify, roll back on failure."""

from __future__ import annotations

from typing import Callable

from patcher import errors
from patcher.environment import Flavour
from patcher.operations import Outcome, commit, prepare, revert
from patcher.verification import DEFAULT_TIMEOUT, Report, verify


def apply_all(
    flavours: list[Flavour],
    *,
    force: bool = False,
    dry_run: bool = False,
    check: bool = True,
    python: str | None = None,
    backends: tuple[str, ...] = (),
    timeout: float = DEFAULT_TIMEOUT,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[list[Outcome], list[Report]]:
    """Patch all flavours; if verification fails, restore them and raise.

    Every flavour is transformed in memory before the first file is written,
    so a Keras we cannot patch leaves the others untouched too.
    """
    prepared = [prepare(flavour, force=force) for flavour in flavours]
    outcomes = [commit(item, dry_run=dry_run) for item in prepared]
    patched = [outcome.flavour for outcome in outcomes if outcome.action == "patched"]
    if not check or not patched:
        return outcomes, []
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
    return outcomes, reports


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
