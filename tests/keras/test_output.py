"""--json documents, --quiet / --verbose, colour only on terminals."""

from __future__ import annotations

import json
from importlib import metadata

import click
import pytest
from helpers import cli_at

from patcher.output import Printer


def test_status_json(site):
    document = json.loads(cli_at(site, "status", "--json").stdout)
    flavours = {entry["distribution"]: entry for entry in document["flavours"]}
    assert set(flavours) == {"keras", "tf_keras"}
    assert flavours["keras"]["state"] == "pristine"
    assert flavours["keras"]["layout"] == "keras3"
    assert [file["state"] for file in flavours["keras"]["files"]] == ["pristine"] * 4


def test_apply_and_revert_json(site):
    applied = json.loads(cli_at(site, "apply", "--only", "keras", "--no-verify", "--json").stdout)
    (outcome,) = applied["outcomes"]
    assert outcome["action"] == "patched" and len(outcome["files"]) == 4
    assert applied["verification"] == []
    again = json.loads(cli_at(site, "apply", "--only", "keras", "--no-verify", "--json").stdout)
    assert again["outcomes"][0]["action"] == "already-patched"
    reverted = json.loads(cli_at(site, "revert", "--only", "keras", "--json").stdout)
    assert reverted["outcomes"][0]["action"] == "reverted"


def test_dry_run_json_carries_the_diffs(site):
    document = json.loads(cli_at(site, "apply", "--only", "keras", "--dry-run", "--json").stdout)
    diffs = document["outcomes"][0]["diffs"]
    assert len(diffs) == 4 and all(text.startswith("--- a/") for text in diffs.values())


def test_quiet_prints_only_what_changed(site):
    version = metadata.version("keras")
    result = cli_at(site, "apply", "--only", "keras", "--no-verify", "-q")
    assert result.stdout.splitlines() == [f"keras-{version}: patched 4 files; undo with `convlstm-patch revert`"]
    assert result.stderr == ""
    status = cli_at(site, "status", "--only", "keras", "-q")
    assert status.stdout.splitlines() == [f"keras {version} (Keras 3) in {site.resolve()}: patched"]
    assert cli_at(site, "apply", "--only", "keras", "--no-verify", "-q").stdout == ""


def test_verbose_lists_the_files(site):
    result = cli_at(site, "apply", "--only", "keras", "--no-verify", "-v")
    assert "  keras/src/layers/rnn/conv_lstm2d.py" in result.stdout.splitlines()


@pytest.mark.parametrize(
    "tty, no_color, coloured",
    [
        pytest.param(True, False, True, id="terminal"),
        pytest.param(False, False, False, id="pipe"),
        pytest.param(True, True, False, id="NO_COLOR"),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(monkeypatch, tty, no_color, coloured):
    monkeypatch.setattr("sys.stdout.isatty", lambda: tty)
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    word = Printer().state("patched")
    assert (word != "patched") is coloured
    assert click.unstyle(word) == "patched"
