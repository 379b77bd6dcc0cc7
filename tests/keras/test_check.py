"""`check`: exit 0 when the installed Keras matches its lock, 1 on drift,
10 for a version with no lock (1 with --strict)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import cli_at

CELL = "keras/src/layers/rnn/conv_lstm.py"


def rename_version(site: Path, distribution: str, new_version: str) -> None:
    """Pretend the copy is a release this tool has never seen."""
    (info,) = site.glob(f"{distribution}-*.dist-info")
    old_version = info.name[len(distribution) + 1 : -len(".dist-info")]
    new_info = site / f"{distribution}-{new_version}.dist-info"
    info.rename(new_info)
    metadata = (new_info / "METADATA").read_text()
    (new_info / "METADATA").write_text(metadata.replace(f"Version: {old_version}", f"Version: {new_version}", 1))


def test_pristine_and_patched_installs_match_their_locks(site):
    result = cli_at(site, "check")
    assert result.exit_code == 0, result.output
    assert [line.split(": ")[1] for line in result.stdout.splitlines()] == ["ok (pristine)", "ok (pristine)"]
    assert cli_at(site, "apply", "--no-verify").exit_code == 0
    document = json.loads(cli_at(site, "check", "--json", "--strict").stdout)
    assert [(r["status"], r["state"]) for r in document["results"]] == [("ok", "patched"), ("ok", "patched")]


def test_drift_names_the_file_and_hashes(site):
    (site / CELL).write_text((site / CELL).read_text() + "\n# changed upstream\n")
    result = cli_at(site, "check", "--only", "keras")
    assert result.exit_code == 1
    assert f"{CELL}: pristine sha256" in result.stdout and "expected" in result.stdout
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith("Error: keras-") and "do not apply" in error


def test_patched_file_edited_afterwards_is_drift(site):
    cli_at(site, "apply", "--only", "keras", "--no-verify")
    (site / CELL).write_text((site / CELL).read_text() + "\n# tweak\n")
    result = cli_at(site, "check", "--only", "keras")
    assert result.exit_code == 1
    assert f"{CELL}: live file is modified" in result.stdout


def test_version_without_lock(site):
    rename_version(site, "keras", "99.0.0")
    result = cli_at(site, "check", "--only", "keras")
    assert result.exit_code == 10
    assert "no hash pins for keras-99.0.0" in result.stderr
    assert cli_at(site, "check", "--only", "keras", "--strict").exit_code == 1
    strict = cli_at(site, "apply", "--only", "keras", "--no-verify", "--strict")
    assert strict.exit_code == 10 and "drop --strict" in strict.stderr
    lenient = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert lenient.exit_code == 0
    assert "warning: keras-99.0.0: no hash pins for this version" in lenient.stderr


def test_version_without_lock_says_what_it_did_check(site):
    rename_version(site, "keras", "99.0.0")
    assert cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", "convlstm,lstm,gru").exit_code == 0
    result = cli_at(site, "check", "--only", "keras")
    assert result.exit_code == 10, result.output
    assert "its pristine source is not compared with a released one" in result.stdout
    checked = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("checked:")]
    assert checked == [
        "checked: the patch of convlstm, lstm, gru fits this source (transformed and compiled)",
        "checked: every fused LSTM/GRU kernel call site in the package is guarded",
        "checked: the live patched files are that output",
    ]
    # ... and what it checked can fail without a lock too: a patched file edited since.
    cell = site / CELL
    cell.write_text(cell.read_text() + "\n# tweak\n")
    drift = cli_at(site, "check", "--only", "keras")
    assert drift.exit_code == 1 and f"{CELL}: live file is modified" in drift.stdout
