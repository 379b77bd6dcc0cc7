"""The convlstm-patch command line: parse options, call the core, print.

Only the commands that transform (apply, diff) import libcst, and only when
they run; nothing here imports Keras or TensorFlow.
"""

from __future__ import annotations

import functools

import click

from patcher import __version__, errors
from patcher.environment import Flavour, find_flavours, search_path


def target_options(command):
    """--python / --keras-root / --only: which environment and which flavours."""

    @click.option("--python", "python", metavar="PATH", help="Act on the environment of this Python interpreter.")
    @click.option(
        "--keras-root",
        metavar="DIR",
        type=click.Path(file_okay=False),
        help="Act on the Keras under DIR (a site-packages folder or an unpacked wheel).",
    )
    @click.option("--only", type=click.Choice(["keras", "tf_keras"]), help="Only this flavour (default: all found).")
    @functools.wraps(command)
    def wrapper(python, keras_root, only, **kwargs):
        return command(flavours=_flavours(python, keras_root, only), **kwargs)

    return wrapper


def _flavours(python: str | None, keras_root: str | None, only: str | None) -> list[Flavour]:
    if python is not None and keras_root is not None:
        raise click.UsageError("give --python or --keras-root, not both")
    flavours = find_flavours(search_path(python, keras_root), only)
    if not flavours:
        where = f"under {keras_root}" if keras_root else f"in the environment of {python or 'this Python'}"
        wanted = only or "keras or tf_keras"
        raise errors.KerasNotFound(f"no {wanted} installed {where}; install Keras there, or point --python at the right interpreter")
    return flavours


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convlstm-patch")
def main():
    """Give Keras's ConvLSTM layers five separate activations, reversibly."""


@main.command()
@target_options
def status(flavours):
    """Show each Keras found, its files and whether they are patched."""
    from patcher.state import inspect

    for flavour in flavours:
        state = inspect(flavour)
        layout = flavour.layout.label if flavour.layout else "unknown layout"
        click.echo(f"{flavour.distribution} {flavour.version} ({layout}) in {flavour.site}: {state.state}")
        for file in state.files:
            note = f"  ({file.note})" if file.note else ""
            click.echo(f"  {file.state:<9} {file.target.relative}{note}")


@main.command()
@target_options
@click.option("--force", is_flag=True, help="Patch even files that differ from the distribution's RECORD.")
@click.option("--dry-run", is_flag=True, help="Print the diff that would be applied; write nothing.")
def apply(flavours, force, dry_run):
    """Back up the ConvLSTM source, patch it, and report what changed."""
    from patcher.operations import apply as apply_patch

    outcomes = [apply_patch(flavour, force=force, dry_run=dry_run) for flavour in flavours]
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


@main.command()
@target_options
@click.option("--force", is_flag=True, help="Restore even files edited by hand after patching.")
def revert(flavours, force):
    """Restore the original ConvLSTM source from the backup, byte for byte."""
    from patcher.operations import revert as revert_patch

    for outcome in [revert_patch(flavour, force=force) for flavour in flavours]:
        _echo_warnings(outcome)
        if outcome.action == "nothing-to-revert":
            click.echo(f"{outcome.flavour.key}: not patched, nothing to revert")
        else:
            click.echo(f"{outcome.flavour.key}: restored {len(outcome.files)} files; matches RECORD")


@main.command()
@target_options
def diff(flavours):
    """Print the unified diff the patch made (or would make)."""
    from patcher.operations import diff as diff_patch

    for outcome in [diff_patch(flavour) for flavour in flavours]:
        click.echo("".join(outcome.diffs.values()), nl=False)


def _echo_warnings(outcome) -> None:
    for warning in outcome.warnings:
        click.echo(f"warning: {outcome.flavour.key}: {warning}", err=True)
