"""How the CLI talks: verbosity, colour (terminals only, never with NO_COLOR),
progress lines on stderr, and the JSON documents of `--json`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

import click

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
            click.echo(f"warning: {text}", err=True)

    def document(self, data: dict) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=False))


def flavour_json(flavour) -> dict:
    return {"distribution": flavour.distribution, "version": flavour.version, "site": str(flavour.site)}


def state_json(state, notes: list[str]) -> dict:
    flavour = state.flavour
    return {
        **flavour_json(flavour),
        "layout": flavour.layout.name if flavour.layout else None,
        "state": state.state,
        "files": [{"path": file.target.relative, "state": file.state, "note": file.note} for file in state.files],
        "notes": notes,
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
        "checks": [vars(check) for check in report.checks],
    }


def check_json(result) -> dict:
    return {**flavour_json(result.flavour), "status": result.status, "state": result.state, "problems": result.problems}


def report_label(report) -> str:
    return report.flavour.key + (f" [{report.backend}]" if report.backend else "")
