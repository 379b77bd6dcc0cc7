"""How the CLI talks: verbosity, colour (terminals only, never with NO_COLOR),
progress lines on stderr, and each command's text and `--json` document.

A command's ``show_*`` function renders the value patcher.commands returned:
text through the Printer (which --quiet, --verbose and --json filter) and the
JSON document (which only --json prints).
"""

from __future__ import annotations

import json
import os
import sys
import time
import unicodedata
from dataclasses import dataclass, field

import click

from patcher import errors
from patcher.planning import Action

COLOURS = {
    "pristine": "cyan",
    "patched": "green",
    "ok": "green",
    "passed": "green",
    "modified": "red",
    "partial": "yellow",
    "drift": "red",
    "FAILED": "red",
    "FAIL": "red",
    "no-lock": "yellow",
    "unsupported": "red",
}


# A control or format character in a message (in a path, most often) could split the line a
# human or a script takes as one error (\n, \r, \v, \f, \x85, \u2028), or make a terminal show
# something else (an escape sequence, a bidi override): each is shown as its \xNN / \uNNNN escape.
_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def one_line(text: str) -> str:
    """The message as one line that shows what it says (a tab stays a tab)."""
    if text.isprintable():
        return text
    return "".join(
        char.encode("unicode_escape", "backslashreplace").decode("ascii")
        if char != "\t" and unicodedata.category(char) in _HIDDEN
        else char
        for char in text
    )


@dataclass
class Printer:
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose
    as_json: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def colour(self) -> bool:
        return "NO_COLOR" not in os.environ and sys.stdout.isatty()

    def state(self, word: str) -> str:
        """A state word, coloured when that helps."""
        word = str(word)
        colour = COLOURS.get(word)
        return click.style(word, fg=colour, bold=word in ("FAILED", "FAIL")) if colour and self.colour else word

    def line(self, text: str = "", *, detail: bool = False) -> None:
        """A result line (suppressed by --quiet, and detail lines need --verbose)."""
        if self.as_json or self.verbosity < 0 or (detail and self.verbosity < 1):
            return
        click.echo(text, color=self.colour)

    def result(self, text: str) -> None:
        """A line that even --quiet prints (what changed, or a failure)."""
        if not self.as_json:
            click.echo(text, color=self.colour)

    def progress(self, text: str) -> None:
        """A progress line on stderr, for steps that take seconds."""
        if self.as_json or self.verbosity < 0:
            return
        elapsed = f"{time.monotonic() - self.started:5.1f}s " if self.verbosity > 0 else ""
        click.echo(f"  ... {elapsed}{text}", err=True)

    def warning(self, text: str) -> None:
        if self.verbosity >= 0 or self.as_json:
            click.echo(f"warning: {one_line(text)}", err=True)

    def warnings(self, texts: list[str]) -> None:
        for text in texts:
            self.warning(text)

    def recovered(self, texts: list[str]) -> None:
        """What finishing an interrupted run changed: a change, so said even with --quiet."""
        for text in texts:
            click.echo(f"warning: {one_line(text)}", err=True)

    def error(self, text: str) -> None:
        """An error line, as click prints one (the JSON document carries it under --json)."""
        if not self.as_json:
            click.echo(f"Error: {one_line(text)}", err=True)

    def notes(self, texts: list[str]) -> None:
        """Advice after a change (not with --quiet; in --json as a field)."""
        for text in texts:
            self.line(f"note: {text}")

    def document(self, data: dict) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=False))


# -- one renderer per command, in the CLI's order ------------------------------


def show_status(out: Printer, status) -> dict:
    for snapshot, notes in status.flavours:
        flavour = snapshot.flavour
        layout = flavour.layout.label if flavour.layout else "unknown layout"
        overall = snapshot.overall()
        out.result(f"{flavour.distribution} {flavour.version} ({layout}) in {flavour.site}: {out.state(overall)}")
        if flavour.conda is not None:
            out.line(f"  {conda_line(flavour.conda)}")
        files = snapshot.files_of(snapshot.focus())
        width = max((len(file.state) for file in files), default=0)
        for file in files:
            note = f"  ({file.note})" if file.note else ""
            out.line(f"  {out.state(file.state)}{' ' * (width - len(file.state))}  {file.target.relative}{note}")
        if flavour.layout:
            sets = layer_sets_json(snapshot)
            patched = ", ".join(sets["patched"]) or "none"
            out.line(f"  layer sets: patched {patched}; this version supports {', '.join(sets['supported'])}")
        for note in notes:
            out.line(f"  note: {note}")
    for folder in status.orphaned:  # of no flavour found: `pip uninstall` left them
        distribution, _, version = folder.name.rpartition("-")
        out.line(
            f"note: backup of {distribution} {version}, which is no longer installed here: {folder} "
            "(never restored; remove it with `convlstm-patch clean`)"
        )
    return {
        "flavours": [state_json(snapshot, notes) for snapshot, notes in status.flavours],
        "orphaned_backups": [str(folder) for folder in status.orphaned],
    }


def conda_line(conda) -> str:
    """Which conda environment and package a flavour belongs to (conda, not pip, reinstalls it)."""
    package = "-".join(part for part in (conda.name, conda.version, conda.build) if part)
    if conda.record is None:
        return (
            f"conda environment: installed by conda as {package} (INSTALLER says conda; no conda-meta record lists it)"
        )
    return f"conda environment {conda.prefix}: package {package} ({conda.record.relative_to(conda.prefix)})"


def layer_sets_json(snapshot) -> dict:
    """Which layer sets are patched (as the backup records), chosen before, and supported."""
    return {
        "patched": [str(layer_set) for layer_set in snapshot.patched_sets],
        "chosen": [str(layer_set) for layer_set in snapshot.chosen],
        "supported": [str(layer_set) for layer_set in snapshot.flavour.supported_sets],
    }


def show_apply(out: Printer, applied) -> dict:
    _show_outcomes(out, applied.outcomes)
    for report in applied.reports:
        out.line(f"{report.label}: verified ({len(report.checks)} checks passed)")
        for probe_check in report.checks:
            out.line(f"  {probe_check.name:<14} {probe_check.detail}", detail=True)
    out.notes(applied.restart)
    return {
        "outcomes": [outcome_json(outcome) for outcome in applied.outcomes],
        "verification": [report_json(report) for report in applied.reports],
        "restart_needed": bool(applied.restart),
    }


def show_verify(out: Printer, verified) -> dict:
    for report in verified.reports:
        out.result(f"{report.label}: {out.state('passed' if report.passed else 'FAILED')}")
        for probe_check in report.checks:
            mark = out.state("ok  " if probe_check.passed else "FAIL")
            out.line(f"  {mark} {probe_check.name:<14} {probe_check.detail}")
    return {
        "passed": all(report.passed for report in verified.reports),
        "reports": [report_json(report) for report in verified.reports],
    }


def show_check(out: Printer, checked) -> dict:
    for result in checked.results:
        state = f" ({result.state})" if result.state else ""
        out.result(f"{result.flavour.key}: {out.state(result.status)}{state}")
        for problem in result.problems:
            out.result(f"  {problem}")
        for item in result.checked:  # without a lock it is all there is to say; with one, only with -v
            out.line(f"  checked: {item}", detail=result.status == "ok")
    return {"results": [check_json(result) for result in checked.results]}


def show_revert(out: Printer, reverted) -> dict:
    _show_outcomes(out, reverted.outcomes)
    out.notes(reverted.restart)
    return {
        "outcomes": [outcome_json(outcome) for outcome in reverted.outcomes],
        "restart_needed": bool(reverted.restart),
    }


def show_clean(out: Printer, removed) -> dict:
    for folder in removed:
        out.result(f"removed stale backup {folder}")
    if not removed:
        out.line("no stale backups")
    return {}  # clean has no --json


def show_diff(out: Printer, diffed) -> dict:
    """The diffs themselves, whatever the verbosity (diff has no --json)."""
    for outcome in diffed.outcomes:
        out.warnings(outcome.warnings)
        click.echo("".join(outcome.diffs.values()), nl=False)
    return {}


def show_each(out: Printer, results, show) -> None:
    """Each environment's result through ``show``, then its error; one JSON document for all.

    With several environments each gets a heading; the document joins their
    lists and lists every environment with its exit code and error.
    """
    documents = []
    for result in results:
        if len(results) > 1:
            out.result(f"== {result.environment.label}")
        out.recovered(result.recovered)
        if result.value is not None:
            documents.append(show(out, result.value))
        if result.error is not None:
            prefix = f"{result.environment.label}: " if len(results) > 1 else ""
            out.error(prefix + result.error.message)
    document = _joined(documents)
    document["environments"] = [environment_json(result) for result in results]
    worst = max((result for result in results if result.error), key=lambda result: result.exit_code, default=None)
    if worst is not None:
        document["error"] = error_json(worst.error)
        reports = getattr(worst.error, "reports", None)
        if reports and "verification" not in document:  # apply's failed verification (exit 9)
            document["verification"] = [report_json(report) for report in reports]
    out.document(document)


def show_version(versions) -> str:
    found = ", ".join(f"{flavour.distribution} {flavour.version}" for flavour in versions.flavours) or "no Keras"
    return f"convlstm-patch {versions.tool} (Python {versions.python}; {found})"


def _joined(documents: list[dict]) -> dict:
    """One document from several of the same command: lists joined, "passed" if all passed,
    other flags (restart_needed) if any is set."""
    joined: dict = {}
    for document in documents:
        for key, value in document.items():
            if isinstance(value, list):
                joined[key] = joined.get(key, []) + value
            elif key == "passed":
                joined[key] = joined.get(key, True) and value
            else:
                joined[key] = joined.get(key, False) or value
    return joined


def _show_outcomes(out: Printer, outcomes) -> None:
    """apply's and revert's line per flavour; one that changed files lists them with -v."""
    for outcome in outcomes:
        name, count = outcome.flavour.key, len(outcome.files)
        out.warnings([f"{name}: {warning}" for warning in outcome.warnings])
        if outcome.action == Action.ALREADY_PATCHED:
            out.line(f"{name}: already patched, nothing to do")
        elif outcome.action == Action.NOTHING_TO_REVERT:
            out.line(f"{name}: not patched, nothing to revert")
        elif outcome.action == Action.WOULD_PATCH:
            out.result("".join(outcome.diffs.values()).rstrip("\n"))
            out.result(f"{name}: would patch {count} files (dry run, nothing written)")
        elif outcome.action == Action.PATCHED:
            out.result(f"{name}: {out.state('patched')} {count} files; undo with `convlstm-patch revert`")
            _files(out, outcome.files)
        else:
            out.result(f"{name}: restored {count} files")
            _files(out, outcome.files)


def _files(out: Printer, relatives: list[str]) -> None:
    for relative in relatives:
        out.line(f"  {relative}", detail=True)


# -- the --json documents ------------------------------------------------------


def flavour_json(flavour) -> dict:
    return {"distribution": flavour.distribution, "version": flavour.version, "site": str(flavour.site)}


def state_json(snapshot, notes: list[str]) -> dict:
    flavour = snapshot.flavour
    return {
        **flavour_json(flavour),
        "layout": flavour.layout.name if flavour.layout else None,
        "conda": conda_json(flavour.conda),
        "state": snapshot.overall(),
        "files": [
            {"path": file.target.relative, "state": file.state, "note": file.note}
            for file in snapshot.files_of(snapshot.focus())
        ],
        "layer_sets": layer_sets_json(snapshot),
        "notes": notes,
    }


def conda_json(conda) -> dict | None:
    """The conda package a flavour was installed from; None: not a conda install."""
    if conda is None:
        return None
    return {
        "name": conda.name,
        "version": conda.version,
        "build": conda.build,
        "prefix": str(conda.prefix) if conda.prefix is not None else None,
        "record": str(conda.record) if conda.record is not None else None,
        "reinstall": conda.reinstall_command,
    }


def outcome_json(outcome) -> dict:
    return {
        **flavour_json(outcome.flavour),
        "action": outcome.action,
        "files": outcome.files,
        "warnings": outcome.warnings,
        "diffs": outcome.diffs,
    }


def report_json(report) -> dict:
    return {
        **flavour_json(report.flavour),
        "backend": report.backend,
        "passed": report.passed,
        "checks": [vars(probe_check) for probe_check in report.checks],
    }


def environment_json(result) -> dict:
    environment = result.environment
    return {
        "python": environment.python,
        "keras_root": environment.keras_root,
        "exit_code": result.exit_code,
        "error": result.error.message if result.error else None,
    }


def error_json(error: errors.PatchError | click.ClickException) -> dict:
    """An error as a document: ours, or click's (a bad command line)."""
    message = error.message if isinstance(error, errors.PatchError) else error.format_message()
    return {"message": message, "exit_code": error.exit_code}


def check_json(result) -> dict:
    return {
        **flavour_json(result.flavour),
        "status": result.status,
        "state": result.state,
        "problems": list(result.problems),
        "checked": list(result.checked),
    }
