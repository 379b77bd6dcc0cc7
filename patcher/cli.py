"""The convlstm-patch command line: parse options, call the core, print.

Only the commands that transform (apply, diff) import libcst, and only when
they run; nothing here imports Keras or TensorFlow (verification runs them in
a subprocess of the target interpreter).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import click

from patcher import __version__, errors
from patcher.environment import Flavour, find_flavours, search_path


@dataclass(frozen=True)
class Target:
    python: str | None
    flavours: list[Flavour]


def target_options(command):
    """--python / --keras-root / --only: which environment and which flavours."""

    @click.option(
        "--python",
        "python",
        metavar="PATH",
        help="Act on the environment of this Python interpreter (it also runs the verification).",
    )
    @click.option(
        "--keras-root",
        metavar="DIR",
        help="Act on the Keras under DIR (a site-packages folder or an unpacked wheel) instead.",
    )
    @click.option("--only", type=click.Choice(["keras", "tf_keras"]), help="Only this flavour (default: all found).")
    @functools.wraps(command)
    def wrapper(python, keras_root, only, **kwargs):
        return command(target=Target(python, _flavours(python, keras_root, only)), **kwargs)

    return wrapper


def _flavours(python: str | None, keras_root: str | None, only: str | None) -> list[Flavour]:
    flavours = find_flavours(search_path(python, keras_root), only)
    if not flavours:
        where = f"under {keras_root}" if keras_root else f"in the environment of {python or 'this Python'}"
        wanted = only or "keras or tf_keras"
        raise errors.KerasNotFound(
            f"no {wanted} installed {where}; install Keras there, or point --python at the right interpreter"
        )
    return flavours


timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    metavar="SECONDS",
    help="Fail a verification run that takes longer than this.",
)
lock_timeout_option = click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=300,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for another convlstm-patch working on the same environment.",
)
backend_option = click.option(
    "--backend",
    "backends",
    multiple=True,
    metavar="NAME",
    help="Also verify Keras 3 under this backend (repeatable): tensorflow, jax, torch.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convlstm-patch")
def main():
    """Give Keras's ConvLSTM layers five separate activations, reversibly."""


@main.command()
@target_options
def status(target):
    """Show each Keras found, its files and whether they are patched."""
    from patcher.state import explain, inspect
    from patcher.workflow import recover_if_possible

    for note in recover_if_possible(target.flavours):
        click.echo(f"note: {note}", err=True)
    for flavour in target.flavours:
        state = inspect(flavour)
        layout = flavour.layout.label if flavour.layout else "unknown layout"
        click.echo(f"{flavour.distribution} {flavour.version} ({layout}) in {flavour.site}: {state.state}")
        for file in state.files:
            note = f"  ({file.note})" if file.note else ""
            click.echo(f"  {file.state:<9} {file.target.relative}{note}")
        for note in explain(state):
            click.echo(f"  note: {note}")


@main.command()
@target_options
@click.option("--force", is_flag=True, help="Patch even files that differ from the distribution's RECORD.")
@click.option("--dry-run", is_flag=True, help="Print the diff that would be applied; write nothing.")
@click.option("--no-verify", is_flag=True, help="Skip the verification run after patching.")
@click.option("--strict", is_flag=True, help="Refuse a Keras version this tool has no hash lock for.")
@backend_option
@timeout_option
@lock_timeout_option
def apply(target, force, dry_run, no_verify, strict, backends, timeout, lock_timeout):
    """Back up the ConvLSTM source, patch it, verify it, roll back on failure."""
    from patcher.workflow import apply_all

    outcomes, reports = apply_all(
        target.flavours,
        force=force,
        dry_run=dry_run,
        check=not no_verify,
        strict=strict,
        python=target.python,
        backends=backends,
        timeout=timeout,
        lock_timeout=lock_timeout,
        on_progress=_progress,
    )
    for outcome in outcomes:
        _echo_warnings(outcome)
        name = outcome.flavour.key
        if outcome.action == "already-patched":
            click.echo(f"{name}: already patched, nothing to do")
        elif outcome.action == "would-patch":
            click.echo("".join(outcome.diffs.values()), nl=False)
            click.echo(f"{name}: would patch {len(outcome.files)} files (dry run, nothing written)")
        else:
            click.echo(f"{name}: patched {len(outcome.files)} files; undo with `convlstm-patch revert`")
    for report in reports:
        click.echo(f"{_report_label(report)}: verified ({len(report.checks)} checks passed)")


@main.command()
@target_options
@backend_option
@timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def verify(target, backends, timeout, as_json):
    """Check, in a fresh process, that the patched Keras computes the five-activation ConvLSTM."""
    from patcher.workflow import verify_all

    reports = verify_all(
        target.flavours,
        python=target.python,
        backends=backends,
        timeout=timeout,
        on_progress=None if as_json else _progress,
    )
    if as_json:
        click.echo(json.dumps({"passed": all(r.passed for r in reports), "reports": [_report_json(r) for r in reports]}, indent=2))
    else:
        for report in reports:
            click.echo(f"{_report_label(report)}: {'passed' if report.passed else 'FAILED'}")
            for check in report.checks:
                click.echo(f"  {'ok  ' if check.passed else 'FAIL'} {check.name:<14} {check.detail}")
    failed = next((report for report in reports if not report.passed), None)
    if failed is not None:
        raise errors.VerificationFailed(
            f"{_report_label(failed)} failed check '{failed.first_failure.name}'; "
            "run `convlstm-patch revert` then `convlstm-patch apply` to repatch"
        )


@main.command()
@target_options
@click.option("--strict", is_flag=True, help="A version with no lock is a failure (exit 1), not exit 10.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def check(target, strict, as_json):
    """In CI: does the patch match the installed Keras version's hash lock?"""
    from patcher.checking import DRIFT, NO_LOCK, UNSUPPORTED, check as check_flavour

    results = [check_flavour(flavour) for flavour in target.flavours]
    if as_json:
        click.echo(json.dumps({"results": [_check_json(result) for result in results]}, indent=2))
    else:
        for result in results:
            click.echo(f"{result.flavour.key}: {result.status}" + (f" ({result.state})" if result.state else ""))
            for problem in result.problems:
                click.echo(f"  {problem}")
    statuses = {result.status for result in results}
    if DRIFT in statuses or (strict and NO_LOCK in statuses):
        failed = next(result for result in results if result.status in (DRIFT, NO_LOCK))
        raise errors.CheckFailed(
            f"{failed.flavour.key}: {failed.problems[0]}; do not apply until convlstm-patch supports it"
        )
    if UNSUPPORTED in statuses:
        failed = next(result for result in results if result.status == UNSUPPORTED)
        raise errors.Unsupported(f"{failed.problems[0]} (see README, 'Supported Keras versions')")
    if NO_LOCK in statuses:
        failed = next(result for result in results if result.status == NO_LOCK)
        raise errors.NoLock(f"{failed.problems[0]}; apply still works and relies on verification (--strict: fail)")


@main.command()
@target_options
@click.option("--force", is_flag=True, help="Restore even files edited by hand after patching.")
@lock_timeout_option
def revert(target, force, lock_timeout):
    """Restore the original ConvLSTM source from the backup, byte for byte."""
    from patcher.workflow import revert_all

    for outcome in revert_all(target.flavours, force=force, lock_timeout=lock_timeout):
        _echo_warnings(outcome)
        if outcome.action == "nothing-to-revert":
            click.echo(f"{outcome.flavour.key}: not patched, nothing to revert")
        else:
            click.echo(f"{outcome.flavour.key}: restored {len(outcome.files)} files")


@main.command()
@target_options
@lock_timeout_option
def clean(target, lock_timeout):
    """Delete backups of versions no longer installed (they are never restored)."""
    from patcher.workflow import clean_stale

    removed = clean_stale(target.flavours, lock_timeout=lock_timeout)
    for folder in removed:
        click.echo(f"removed stale backup {folder}")
    if not removed:
        click.echo("no stale backups")


@main.command()
@target_options
def diff(target):
    """Print the unified diff the patch made (or would make)."""
    from patcher.operations import diff as diff_patch

    for outcome in [diff_patch(flavour) for flavour in target.flavours]:
        click.echo("".join(outcome.diffs.values()), nl=False)


def _progress(line: str) -> None:
    click.echo(f"  ... {line}", err=True)


def _report_label(report) -> str:
    return report.flavour.key + (f" [{report.backend}]" if report.backend else "")


def _report_json(report) -> dict:
    return {
        "distribution": report.flavour.distribution,
        "version": report.flavour.version,
        "backend": report.backend,
        "passed": report.passed,
        "checks": [vars(check) for check in report.checks],
    }


def _check_json(result) -> dict:
    return {
        "distribution": result.flavour.distribution,
        "version": result.flavour.version,
        "status": result.status,
        "state": result.state,
        "problems": result.problems,
    }


def _echo_warnings(outcome) -> None:
    for warning in outcome.warnings:
        click.echo(f"warning: {outcome.flavour.key}: {warning}", err=True)
