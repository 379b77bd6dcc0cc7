"""The convlstm-patch command line: parse options, call the core, print.

Only the commands that transform (apply, diff, check) import libcst, and only
when they run; nothing here imports Keras or TensorFlow (verification runs
them in a subprocess of the target interpreter).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import click

from patcher import __version__, errors
from patcher.environment import Flavour, find_flavours, search_path
from patcher.output import (
    Printer,
    check_json,
    outcome_json,
    report_json,
    report_label,
    state_json,
)


@dataclass(frozen=True)
class Target:
    python: str | None
    flavours: list[Flavour]


def target_options(command):
    """--python / --keras-root / --only (which environment and flavours), -q / -v."""

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
    @click.option("-q", "--quiet", is_flag=True, help="Print only what changed and errors.")
    @click.option("-v", "--verbose", count=True, help="Print more detail (files, backups, timings).")
    @functools.wraps(command)
    def wrapper(python, keras_root, only, quiet, verbose, as_json=False, **kwargs):
        printer = Printer(verbosity=-1 if quiet else verbose, as_json=as_json)
        target = Target(python, _flavours(python, keras_root, only))
        return command(target=target, out=printer, **kwargs)

    return wrapper


def json_option(command):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")(command)


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


class Group(click.Group):
    """Turns an unexpected exception into one line too (CONVLSTM_PATCH_DEBUG=1 shows the traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if os.environ.get("CONVLSTM_PATCH_DEBUG"):
                raise
            detail = str(error).splitlines()[0] if str(error) else ""
            raise errors.PatchError(
                f"unexpected {type(error).__name__}: {detail}; run `convlstm-patch status` to see the state "
                "(an interrupted run is recovered by the next command) and please report this"
            ) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convlstm-patch")
def main():
    """Give Keras's ConvLSTM layers five separate activations, reversibly.

    Shell completion (bash): eval "$(_CONVLSTM_PATCH_COMPLETE=bash_source convlstm-patch)"
    """


@main.command()
@json_option
@target_options
def status(target, out):
    """Show each Keras found, its files and whether they are patched."""
    from patcher.state import explain, inspect
    from patcher.workflow import recover_if_possible

    for note in recover_if_possible(target.flavours):
        out.warning(note)
    documents = []
    for flavour in target.flavours:
        state = inspect(flavour)
        notes = explain(state)
        documents.append(state_json(state, notes))
        layout = flavour.layout.label if flavour.layout else "unknown layout"
        out.result(f"{flavour.distribution} {flavour.version} ({layout}) in {flavour.site}: {out.state(state.state)}")
        width = max((len(file.state) for file in state.files), default=0)
        for file in state.files:
            note = f"  ({file.note})" if file.note else ""
            out.line(f"  {out.state(file.state)}{' ' * (width - len(file.state))}  {file.target.relative}{note}")
        for note in notes:
            out.line(f"  note: {note}")
    out.document({"flavours": documents})


@main.command()
@json_option
@target_options
@click.option("--force", is_flag=True, help="Patch even files that differ from the distribution's RECORD.")
@click.option("--dry-run", is_flag=True, help="Print the diff that would be applied; write nothing.")
@click.option("--no-verify", is_flag=True, help="Skip the verification run after patching.")
@click.option("--strict", is_flag=True, help="Refuse a Keras version this tool has no hash lock for.")
@backend_option
@timeout_option
@lock_timeout_option
def apply(target, out, force, dry_run, no_verify, strict, backends, timeout, lock_timeout):
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
        on_progress=out.progress,
    )
    for outcome in outcomes:
        for warning in outcome.warnings:
            out.warning(f"{outcome.flavour.key}: {warning}")
        name = outcome.flavour.key
        if outcome.action == "already-patched":
            out.line(f"{name}: already patched, nothing to do")
        elif outcome.action == "would-patch":
            out.result("".join(outcome.diffs.values()).rstrip("\n"))
            out.result(f"{name}: would patch {len(outcome.files)} files (dry run, nothing written)")
        else:
            out.result(f"{name}: {out.state('patched')} {len(outcome.files)} files; undo with `convlstm-patch revert`")
            for relative in outcome.files:
                out.line(f"  {relative}", detail=True)
    for report in reports:
        out.line(f"{report_label(report)}: verified ({len(report.checks)} checks passed)")
        for check in report.checks:
            out.line(f"  {check.name:<14} {check.detail}", detail=True)
    out.document({"outcomes": [outcome_json(o) for o in outcomes], "verification": [report_json(r) for r in reports]})


@main.command()
@json_option
@target_options
@backend_option
@timeout_option
def verify(target, out, backends, timeout):
    """Check, in a fresh process, that the patched Keras computes the five-activation ConvLSTM."""
    from patcher.workflow import verify_all

    reports = verify_all(
        target.flavours, python=target.python, backends=backends, timeout=timeout, on_progress=out.progress
    )
    for report in reports:
        out.result(f"{report_label(report)}: {out.state('passed' if report.passed else 'FAILED')}")
        for check in report.checks:
            out.line(f"  {out.state('ok  ' if check.passed else 'FAIL')} {check.name:<14} {check.detail}")
    out.document({"passed": all(report.passed for report in reports), "reports": [report_json(r) for r in reports]})
    failed = next((report for report in reports if not report.passed), None)
    if failed is not None:
        raise errors.VerificationFailed(
            f"{report_label(failed)} failed check '{failed.first_failure.name}'; "
            "run `convlstm-patch revert` then `convlstm-patch apply` to repatch"
        )


@main.command()
@json_option
@target_options
@click.option("--strict", is_flag=True, help="A version with no lock is a failure (exit 1), not exit 10.")
def check(target, out, strict):
    """In CI: does the patch match the installed Keras version's hash lock?"""
    from patcher.checking import DRIFT, NO_LOCK, UNSUPPORTED, check as check_flavour

    results = []
    for flavour in target.flavours:
        out.progress(f"{flavour.key}: comparing with its lock")
        results.append(check_flavour(flavour))
    for result in results:
        state = f" ({result.state})" if result.state else ""
        out.result(f"{result.flavour.key}: {out.state(result.status)}{state}")
        for problem in result.problems:
            out.result(f"  {problem}")
    out.document({"results": [check_json(result) for result in results]})
    by_status = {result.status: result for result in reversed(results)}
    if DRIFT in by_status or (strict and NO_LOCK in by_status):
        failed = by_status.get(DRIFT) or by_status[NO_LOCK]
        raise errors.CheckFailed(
            f"{failed.flavour.key}: {failed.problems[0]}; do not apply until convlstm-patch supports it"
        )
    if UNSUPPORTED in by_status:
        raise errors.Unsupported(f"{by_status[UNSUPPORTED].problems[0]} (see README, 'Supported Keras versions')")
    if NO_LOCK in by_status:
        raise errors.NoLock(
            f"{by_status[NO_LOCK].problems[0]}; apply still works and relies on verification (--strict: fail)"
        )


@main.command()
@json_option
@target_options
@click.option("--force", is_flag=True, help="Restore even files edited by hand after patching.")
@lock_timeout_option
def revert(target, out, force, lock_timeout):
    """Restore the original ConvLSTM source from the backup, byte for byte."""
    from patcher.workflow import revert_all

    outcomes = revert_all(target.flavours, force=force, lock_timeout=lock_timeout)
    for outcome in outcomes:
        for warning in outcome.warnings:
            out.warning(f"{outcome.flavour.key}: {warning}")
        if outcome.action == "nothing-to-revert":
            out.line(f"{outcome.flavour.key}: not patched, nothing to revert")
        else:
            out.result(f"{outcome.flavour.key}: restored {len(outcome.files)} files")
            for relative in outcome.files:
                out.line(f"  {relative}", detail=True)
    out.document({"outcomes": [outcome_json(outcome) for outcome in outcomes]})


@main.command()
@target_options
@lock_timeout_option
def clean(target, out, lock_timeout):
    """Delete backups of versions no longer installed (they are never restored)."""
    from patcher.workflow import clean_stale

    removed = clean_stale(target.flavours, lock_timeout=lock_timeout)
    for folder in removed:
        out.result(f"removed stale backup {folder}")
    if not removed:
        out.line("no stale backups")


@main.command()
@target_options
def diff(target, out):
    """Print the unified diff the patch made (or would make)."""
    from patcher.operations import diff as diff_patch

    for flavour in target.flavours:
        out.progress(f"{flavour.key}: computing the diff")
        click.echo("".join(diff_patch(flavour).diffs.values()), nl=False)
