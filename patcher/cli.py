"""The convlstm-patch command line: options, one call into patcher.commands
per command, and its renderer from patcher.output.

Only the commands that transform (apply, diff, check) import libcst, and only
when they run; nothing here imports Keras or TensorFlow (verification runs
them in a subprocess of the target interpreter).
"""

from __future__ import annotations

import functools
import os

import click

from patcher import __version__, checking, commands, errors, output, verification
from patcher.transaction import DEFAULT_LOCK_TIMEOUT
from patcher.verification import DEFAULT_TIMEOUT


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
        printer = output.Printer(verbosity=-1 if quiet else verbose, as_json=as_json)
        return command(target=commands.target(python, keras_root, only), out=printer, **kwargs)

    return wrapper


def json_option(command):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")(command)


def seconds_option(name: str, minimum: float, default: float, help: str):
    return click.option(
        name, type=click.FloatRange(min=minimum), default=default, show_default=True, metavar="SECONDS", help=help
    )


timeout_option = seconds_option(
    "--timeout", 1, DEFAULT_TIMEOUT, "Fail a verification run that takes longer than this."
)
lock_timeout_option = seconds_option(
    "--lock-timeout", 0, DEFAULT_LOCK_TIMEOUT, "How long to wait for another convlstm-patch working on the same environment."
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
    output.show_status(out, commands.status(target))


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
    applied = commands.apply(
        target,
        force=force,
        dry_run=dry_run,
        verify=not no_verify,
        strict=strict,
        backends=backends,
        timeout=timeout,
        lock_timeout=lock_timeout,
        on_progress=out.progress,
    )
    output.show_apply(out, applied)


@main.command()
@json_option
@target_options
@backend_option
@timeout_option
def verify(target, out, backends, timeout):
    """Check, in a fresh process, that the patched Keras computes the five-activation ConvLSTM."""
    verified = commands.verify(target, backends=backends, timeout=timeout, on_progress=out.progress)
    output.show_verify(out, verified)
    verification.verdict(verified.reports)


@main.command()
@json_option
@target_options
@click.option("--strict", is_flag=True, help="A version with no lock is a failure (exit 1), not exit 10.")
def check(target, out, strict):
    """In CI: does the patch match the installed Keras version's hash lock?"""
    checked = commands.check(target, on_progress=out.progress)
    output.show_check(out, checked)
    checking.verdict(checked.results, strict)


@main.command()
@json_option
@target_options
@click.option("--force", is_flag=True, help="Restore even files edited by hand after patching.")
@lock_timeout_option
def revert(target, out, force, lock_timeout):
    """Restore the original ConvLSTM source from the backup, byte for byte."""
    output.show_revert(out, commands.revert(target, force=force, lock_timeout=lock_timeout))


@main.command()
@target_options
@lock_timeout_option
def clean(target, out, lock_timeout):
    """Delete backups of versions no longer installed (they are never restored)."""
    output.show_clean(out, commands.clean(target, lock_timeout=lock_timeout))


@main.command()
@target_options
def diff(target, out):
    """Print the unified diff the patch made (or would make)."""
    output.show_diff(out, commands.diff(target, on_progress=out.progress))
