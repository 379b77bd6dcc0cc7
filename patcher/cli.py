"""The convlstm-patch command line: options, one call into patcher.commands
per command (in every environment named), and its renderer from patcher.output.

Only the commands that transform (apply, diff, check) import libcst, and only
when they run; nothing here imports Keras or TensorFlow (verification runs
them in a subprocess of the target interpreter).
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from dataclasses import dataclass

import click

from patcher import commands, errors, interrupts, layersets, output
from patcher.envlock import DEFAULT_LOCK_TIMEOUT
from patcher.layersets import LayerSet
from patcher.verification import BACKENDS, DEFAULT_TIMEOUT, VerifyOptions


@dataclass(frozen=True)
class Where:
    """The environments the options name, and which flavours in them."""

    environments: list[commands.Environment]
    only: str | None

    def run(self, command, options, needs_keras: bool = True) -> list[commands.EnvironmentResult]:
        return commands.each(self.environments, self.only, command, options, needs_keras)


def _layer_sets(ctx, param, value: str | None) -> frozenset[LayerSet] | None:
    if value is None:
        return None
    try:
        return layersets.parse(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _gone(ctx, param, value: str | None) -> None:
    """--layers on a command where it no longer means anything: say what to do instead (for one release)."""
    if value is None:
        return
    command = ctx.info_name
    instead = (
        "revert restores every layer set; to keep some patched, run `convlstm-patch apply --layers SETS` instead "
        "(the environment then has exactly those patched)"
        if command == "revert"
        else f"{command} covers every layer set that is patched; `convlstm-patch apply --layers SETS` chooses them"
    )
    raise errors.BadOptions(f"`{command} --layers` is gone: {instead}")


layers_option = click.option(
    "--layers",
    metavar="SETS",
    callback=_layer_sets,
    help="Leave exactly these layer sets patched, comma-separated: convlstm, lstm, gru (ConvLSTM always; "
    "default: those chosen before, ConvLSTM when none); a set patched before and not named is put back.",
)
gone_layers_option = click.option("--layers", callback=_gone, expose_value=False, hidden=True)


def target_options(command):
    """--python / --keras-root (repeatable: which environments), --only (which flavours), -q / -v."""

    @click.option(
        "--python",
        "pythons",
        metavar="PATH",
        multiple=True,
        help="Act on the environment of this Python interpreter (it also runs the verification). Repeatable.",
    )
    @click.option(
        "--keras-root",
        "keras_roots",
        metavar="DIR",
        multiple=True,
        help="Act on the Keras under DIR (a site-packages folder or an unpacked wheel) instead. Repeatable.",
    )
    @click.option("--only", type=click.Choice(["keras", "tf_keras"]), help="Only this flavour (default: all found).")
    @click.option("-q", "--quiet", is_flag=True, help="Print only what changed and errors.")
    @click.option("-v", "--verbose", count=True, help="Print more detail (files, backups, timings).")
    @functools.wraps(command)
    def wrapper(pythons, keras_roots, only, quiet, verbose, as_json=False, **kwargs):
        printer = output.Printer(verbosity=-1 if quiet else verbose, as_json=as_json)
        return command(where=Where(commands.environments(pythons, keras_roots), only), out=printer, **kwargs)

    return wrapper


def finish(out: output.Printer, results: list[commands.EnvironmentResult], show) -> None:
    """Render every environment's result, then exit with the worst exit code (also when the
    reader went away: `status | head -1` says what the command did, not that printing stopped)."""
    try:
        output.show_each(out, results, show)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    click.get_current_context().exit(commands.exit_code(results))


def show_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(output.show_version(commands.versions()))
        ctx.exit()


def json_option(command):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")(command)


WEEK = 7 * 24 * 3600  # the longest wait any option accepts (a timer's limit is far above it)


class Seconds(click.FloatRange):
    """A number of seconds from ``min`` to a week: nan and inf are bad command lines (exit 2)."""

    name = "seconds"

    def convert(self, value, param, ctx):
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds


def seconds_option(name: str, minimum: float, default: float, help: str):
    return click.option(
        name, type=Seconds(min=minimum, max=WEEK), default=default, show_default=True, metavar="SECONDS", help=help
    )


timeout_option = seconds_option(
    "--timeout", 1, DEFAULT_TIMEOUT, "Fail a verification process (each on its own clock) that takes longer than this."
)
lock_timeout_option = seconds_option(
    "--lock-timeout",
    0,
    DEFAULT_LOCK_TIMEOUT,
    "How long to wait for another convlstm-patch working on the same environment.",
)
backend_option = click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(BACKENDS),
    help="Also verify Keras 3 under this backend (repeatable; the backend it already uses is verified once).",
)


class Group(click.Group):
    """Turns an unexpected exception into one line too (CONVLSTM_PATCH_DEBUG=1 shows the traceback)."""

    def main(self, *args, **kwargs):
        # Started with stdout or stderr closed (`>&-`, some daemons and CI runners): Python gives
        # None there; write those lines nowhere rather than fail after the work is done.
        for name in ("stdout", "stderr"):
            if getattr(sys, name) is None:
                setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115  (for the life of the process)
        return super().main(*args, **kwargs)

    def invoke(self, ctx):
        as_json = "--json" in [*getattr(ctx, "_protected_args", ()), *ctx.args]  # read before click consumes them
        try:
            with interrupts.like_ctrl_c():  # SIGTERM and SIGHUP too: rolled back, every child killed
                return self._invoke(ctx)
        except (errors.PatchError, click.ClickException) as error:
            # With --json, an error before any environment ran (a bad
            # command line, a bug) is a document too; stderr has the line.
            if as_json:
                click.echo(json.dumps({"error": output.error_json(error)}, indent=2))
            if isinstance(error, click.ClickException):
                raise
            click.echo(f"Error: {output.one_line(error.message)}", err=True)
            raise click.exceptions.Exit(error.exit_code) from None

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (errors.PatchError, click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            # Ctrl-C, SIGTERM or SIGHUP outside a transaction (its own rolls
            # back and says so): nothing was half-written, or a second one cut
            # a rollback short and its journal is still there for the next command.
            raise errors.Interrupted(errors.INTERRUPTED_OUTSIDE_A_CHANGE) from None
        except BrokenPipeError:
            # The reader went away (`| head`): every file operation had finished
            # before printing began, so stop quietly, as pip does.
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            raise click.exceptions.Exit(1) from None
        except PermissionError as error:
            # A file the core only reads (our state folder, made by another user with a strict umask).
            raise errors.PatchError(
                f"cannot read {error.filename or 'a file'} (permission denied); run as a user who can read this "
                "environment (its owner, or root)"
            ) from None
        except Exception as error:
            if os.environ.get("CONVLSTM_PATCH_DEBUG"):
                raise
            detail = str(error).splitlines()[0] if str(error) else ""
            raise errors.PatchError(
                f"unexpected {type(error).__name__}: {detail}; run `convlstm-patch status` to see the state "
                "(an interrupted run is recovered by the next command) and please report this"
            ) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=show_version,
    help="Show the version of convlstm-patch, Python and the Keras found, and exit.",
)
def main():
    """Give Keras's ConvLSTM layers five separate activations (LSTM and GRU per-gate ones), reversibly.

    Shell completion (bash): eval "$(_CONVLSTM_PATCH_COMPLETE=bash_source convlstm-patch)"
    """


def command(*options, as_json: bool = True, layers=gone_layers_option):
    """A subcommand with the options every command has, in the order --help lists them: --json,
    where to act, --layers (apply's, or the one that says it is gone), its own, --lock-timeout."""

    def decorate(function):
        shared = [json_option] if as_json else []
        for option in reversed([*shared, target_options, layers, *options, lock_timeout_option]):
            function = option(function)
        return main.command()(function)

    return decorate


@command()
def status(where, out, lock_timeout):
    """Show each Keras found, its files and whether they are patched."""
    options = commands.ReadOptions(lock_timeout)
    finish(out, where.run(commands.status, options), output.show_status)


@command(
    click.option("--force", is_flag=True, help="Patch even files that differ from the distribution's RECORD."),
    click.option("--dry-run", is_flag=True, help="Print the diff that would be applied; write nothing."),
    click.option("--no-verify", is_flag=True, help="Skip the verification run after patching."),
    click.option("--strict", is_flag=True, help="Refuse a Keras version this tool has no hash pins for."),
    backend_option,
    timeout_option,
    layers=layers_option,
)
def apply(where, out, layers, force, dry_run, no_verify, strict, backends, timeout, lock_timeout):
    """Back up the original sources, patch them, verify, roll back on failure."""
    probe = VerifyOptions(backends=tuple(backends), timeout=timeout, on_progress=out.progress)
    options = commands.ApplyOptions(layers, force, dry_run, None if no_verify else probe, strict, lock_timeout)
    finish(out, where.run(commands.apply, options), output.show_apply)


@command(backend_option, timeout_option)
def verify(where, out, backends, timeout, lock_timeout):
    """Check, in fresh processes, that the patched layers compute what the five (per-gate) activations say."""
    probe = VerifyOptions(backends=tuple(backends), timeout=timeout, on_progress=out.progress)
    options = commands.VerifyCommandOptions(probe, lock_timeout)
    finish(out, where.run(commands.verify, options), output.show_verify)


@command(click.option("--strict", is_flag=True, help="A version with no hash pins is a failure (exit 1), not exit 10."))
def check(where, out, strict, lock_timeout):
    """In CI: does the patch match the installed Keras version's hash pins?"""
    options = commands.ReadOptions(lock_timeout, strict, out.progress)
    finish(out, where.run(commands.check, options), output.show_check)


@command(click.option("--force", is_flag=True, help="Restore even files edited by hand after patching."))
def revert(where, out, force, lock_timeout):
    """Restore every patched file from the backup, byte for byte."""
    options = commands.RevertOptions(force, lock_timeout)
    finish(out, where.run(commands.revert, options), output.show_revert)


@command(as_json=False)
def clean(where, out, lock_timeout):
    """Delete backups never restored: of versions no longer installed, or damaged and not needed."""
    finish(out, where.run(commands.clean, commands.CleanOptions(lock_timeout), needs_keras=False), output.show_clean)


@command(as_json=False)
def diff(where, out, lock_timeout):
    """Print the unified diff the patch made (or would make)."""
    options = commands.ReadOptions(lock_timeout, on_progress=out.progress)
    finish(out, where.run(commands.diff, options), output.show_diff)
