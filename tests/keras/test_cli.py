"""Every command and every error path, through click's CliRunner.

Errors must be one line, a documented exit code, and no file changed.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli, cli_at, target_files, tree_hashes

from patcher import __version__

CELL = "keras/src/layers/rnn/conv_lstm.py"


def apply_no_verify(site: Path, *extra: str):
    return cli_at(site, "apply", "--no-verify", *extra)


def assert_one_line_error(result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_version():
    result = cli("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_module_entry_point_runs():
    completed = subprocess.run([sys.executable, "-m", "patcher", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0
    assert "apply" in completed.stdout and "revert" in completed.stdout


def test_status_lists_both_flavours_and_their_state(site):
    result = cli_at(site, "status")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert any(line.startswith("keras ") and line.endswith(": pristine") for line in lines)
    assert any(line.startswith("tf_keras ") and line.endswith(": pristine") for line in lines)
    assert sum(line.strip().startswith("pristine") for line in lines) == 8

    apply_no_verify(site, "--only", "keras")
    (site / CELL).write_text((site / CELL).read_text() + "\n# hand edit\n")
    lines = cli_at(site, "status").output.splitlines()
    assert any(line.startswith("keras ") and line.endswith(": modified") for line in lines)
    assert sum(line.strip().startswith("patched") for line in lines) == 3
    assert any(line.strip().startswith("modified") and CELL in line for line in lines)


def test_status_reads_another_interpreters_environment():
    result = cli("status", "--python", sys.executable)
    assert result.exit_code == 0
    assert "keras" in result.output


def test_status_accepts_the_package_folder_itself(site):
    result = cli("status", "--keras-root", str(site / "keras"))
    assert result.exit_code == 0
    assert result.output.startswith("keras ")


def test_apply_dry_run_prints_the_diff_and_writes_nothing(site):
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--dry-run")
    assert result.exit_code == 0
    assert f"+++ b/{CELL}" in result.output
    assert "+        activation_i=None," in result.output
    assert "would patch 4 files (dry run, nothing written)" in result.output
    assert tree_hashes(site) == before


def test_apply_is_idempotent_and_diff_shows_the_change(site):
    dry = cli_at(site, "apply", "--only", "keras", "--dry-run").stdout
    assert apply_no_verify(site, "--only", "keras").exit_code == 0
    after_first = tree_hashes(site)
    again = apply_no_verify(site, "--only", "keras")
    assert again.exit_code == 0
    assert "already patched, nothing to do" in again.output
    assert tree_hashes(site) == after_first
    diff = cli_at(site, "diff", "--only", "keras").stdout
    assert diff and diff in dry


def test_apply_removes_stale_bytecode(site):
    pycache = (site / CELL).parent / "__pycache__"
    pycache.mkdir(exist_ok=True)
    stale = pycache / "conv_lstm.cpython-311.pyc"
    stale.write_bytes(b"stale")
    apply_no_verify(site, "--only", "keras")
    assert not stale.exists()


def test_revert_with_nothing_to_revert(site):
    result = cli_at(site, "revert")
    assert result.exit_code == 0
    assert "not patched, nothing to revert" in result.output


def test_revert_restores_every_byte(site):
    before = tree_hashes(site)
    apply_no_verify(site)
    assert tree_hashes(site) != before
    result = cli_at(site, "revert")
    assert result.exit_code == 0
    assert result.output.count("restored 4 files") == 2
    assert tree_hashes(site) == before


def test_no_keras_found(tmp_path):
    result = cli("apply", "--keras-root", str(tmp_path))
    assert_one_line_error(result, 3, "no keras or tf_keras installed under", str(tmp_path))


def test_keras_root_that_is_not_a_folder(tmp_path):
    result = cli("status", "--keras-root", str(tmp_path / "nope"))
    assert_one_line_error(result, 3, "is not a folder")


def test_python_that_is_not_a_python(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    result = cli("status", "--python", str(fake))
    assert_one_line_error(result, 3, "did not run as a Python interpreter")
    result = cli("status", "--python", str(tmp_path / "missing"))
    assert_one_line_error(result, 3, "did not run as a Python interpreter")


def test_keras_root_wins_over_python_for_finding_keras(site):
    result = cli("status", "--python", sys.executable, "--keras-root", str(site))
    assert result.exit_code == 0
    assert f"in {site.resolve()}: pristine" in result.output


def test_unknown_option_is_a_usage_error(site):
    result = cli_at(site, "status", "--bogus")
    assert result.exit_code == 2


def test_unsupported_keras_version(tmp_path):
    # A Keras 2.4-style install: only a shim module, no ConvLSTM source.
    site = tmp_path / "site"
    (site / "keras" / "layers").mkdir(parents=True)
    (site / "keras" / "__init__.py").write_text("")
    (site / "keras" / "layers" / "convolutional_recurrent.py").write_text("from somewhere import ConvLSTM2D\n")
    info = site / "keras-2.4.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: keras\nVersion: 2.4.3\n")
    (info / "RECORD").write_text("keras/__init__.py,,\nkeras/layers/convolutional_recurrent.py,,\n")
    before = tree_hashes(site)
    assert "unsupported" in cli_at(site, "status").output
    result = cli_at(site, "apply")
    assert_one_line_error(result, 4, "keras-2.4.3 has no ConvLSTM source layout")
    assert tree_hashes(site) == before


def test_modified_file_is_refused_unless_forced(site):
    (site / CELL).write_text((site / CELL).read_text() + "\n# local edit\n")
    before = tree_hashes(site)
    result = apply_no_verify(site)
    assert_one_line_error(result, 5, CELL, "differs from the distribution's RECORD", "--force")
    assert tree_hashes(site) == before
    forced = apply_no_verify(site, "--force")
    assert forced.exit_code == 0
    assert "# local edit" in (site / CELL).read_text()
    cli_at(site, "revert")
    assert tree_hashes(site) == before


def test_file_that_does_not_parse(site):
    (site / CELL).write_text((site / CELL).read_text() + "\ndef broken(:\n")
    before = tree_hashes(site)
    result = apply_no_verify(site, "--force")
    assert_one_line_error(result, 6, f"cannot patch {CELL}", "does not parse")
    assert tree_hashes(site) == before


def test_a_failure_in_one_flavour_writes_nothing_in_the_other(site):
    cell = site / "tf_keras/src/layers/rnn/base_conv_lstm.py"
    cell.write_text(cell.read_text().replace("self.recurrent_activation(x_f + h_f)", "0.5"))
    before = tree_hashes(site)
    result = apply_no_verify(site, "--force")
    assert_one_line_error(result, 6, "class ConvLSTMCell: found no place for the gate f edit")
    assert tree_hashes(site) == before


@pytest.mark.parametrize(
    "code, fragment",
    [
        pytest.param(errno.EROFS, "the file system is read-only", id="read-only"),
        pytest.param(errno.EACCES, "Run as the user that owns this environment", id="permission-denied"),
        pytest.param(errno.ENOSPC, "no space left", id="disk-full"),
    ],
)
def test_write_failures_leave_keras_unchanged(site, monkeypatch, code, fragment):
    import patcher.fsops

    before = tree_hashes(site)
    real_replace = patcher.fsops.os.replace
    second_file = (site / "keras/src/layers/rnn/conv_lstm1d.py").resolve()
    calls = []

    def failing_replace(source, destination):
        # Let the backup and the first Keras file be written, fail on the second.
        calls.append(Path(destination).resolve())
        if calls[-1] == second_file:
            raise OSError(code, "simulated")
        return real_replace(source, destination)

    real_exchange = patcher.fsops._exchange

    def failing_exchange(first, second):
        calls.append(Path(second).resolve())
        if calls[-1] == second_file:
            raise OSError(code, "simulated")
        return real_exchange(first, second)

    monkeypatch.setattr(patcher.fsops.os, "replace", failing_replace)
    monkeypatch.setattr(patcher.fsops, "_exchange", failing_exchange)
    result = apply_no_verify(site, "--only", "keras")
    assert_one_line_error(result, 7, fragment)
    assert (site / CELL).resolve() in calls, "the first file was written, then rolled back"
    assert tree_hashes(site) == before
    assert not list(site.rglob("*.tmp"))


def test_revert_refuses_a_hand_edit_made_after_patching(site):
    apply_no_verify(site, "--only", "keras")
    (site / CELL).write_text((site / CELL).read_text() + "\n# tweak\n")
    before = tree_hashes(site)
    result = cli_at(site, "revert", "--only", "keras")
    assert_one_line_error(result, 5, "was edited after patching", "--force")
    assert tree_hashes(site) == before
    assert cli_at(site, "revert", "--only", "keras", "--force").exit_code == 0
    assert "# tweak" not in (site / CELL).read_text()


def test_tampered_backup_is_never_restored(site):
    apply_no_verify(site, "--only", "keras")
    (copy,) = [path for path in (site / ".convlstm-patch").rglob("conv_lstm.py")]
    copy.write_text("tampered\n")
    before = tree_hashes(site)
    result = cli_at(site, "revert", "--only", "keras")
    assert_one_line_error(result, 8, "does not match its manifest", "--force-reinstall")
    assert tree_hashes(site) == before


def test_invalid_manifest(site):
    apply_no_verify(site, "--only", "keras")
    (manifest,) = list((site / ".convlstm-patch").rglob("manifest.json"))
    manifest.write_text("{not json")
    before = tree_hashes(site)
    for command in ("revert", "apply", "status"):
        result = cli_at(site, command, "--only", "keras")
        assert_one_line_error(result, 8, "is not valid")
    assert tree_hashes(site) == before


def test_backup_has_a_manifest_describing_it(site):
    apply_no_verify(site, "--only", "keras")
    (manifest,) = list((site / ".convlstm-patch").rglob("manifest.json"))
    data = json.loads(manifest.read_text())
    assert data["distribution"] == "keras"
    assert data["tool_version"] == __version__
    assert sorted(entry["path"] for entry in data["files"]) == sorted(
        str(path.relative_to(site)) for path in target_files(site, "keras")
    )


def test_status_does_not_import_libcst_keras_or_tensorflow(site):
    code = (
        "import sys; from patcher.cli import main\n"
        "try:\n    main(['status', '--keras-root', sys.argv[1]])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('libcst', 'keras', 'tensorflow', 'tf_keras') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True)
    assert completed.stdout.strip().splitlines()[-1] == "[]", completed.stderr


def test_an_unexpected_error_is_one_line_too(site, monkeypatch):
    import patcher.snapshot

    def broken(flavour, journal=None):
        raise RuntimeError("something odd\nsecond line")

    monkeypatch.setattr(patcher.snapshot, "_read_flavour", broken)
    result = cli_at(site, "status")
    assert_one_line_error(result, 1, "unexpected RuntimeError: something odd;", "please report")
