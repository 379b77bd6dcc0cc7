"""Where users run the tool: notebooks (restart note), several environments in
one call, `python -m patcher`, `--version`, and a Docker image patched as root
then used by an unprivileged runtime user.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, cli, cli_at, copy_distribution, hashes, target_files, tree_hashes
from hostile_helpers import as_nobody

from patcher import __version__

RESTART = "note: Python processes that imported Keras before this keep the old code until they restart"


def keras_site(folder: Path) -> Path:
    folder.mkdir(parents=True)
    copy_distribution("keras", folder)
    return folder


# -- the restart note ----------------------------------------------------------


def test_restart_note_only_after_a_real_change(site):
    args = ("--keras-root", str(site), "--only", "keras")
    applied = cli("apply", *args, "--no-verify")
    assert RESTART in applied.output and "(Jupyter: restart the kernel)" in applied.output
    again = cli("apply", *args, "--no-verify")
    assert again.exit_code == 0 and "already patched" in again.output
    assert "note:" not in again.output
    reverted = cli("revert", *args)
    assert RESTART in reverted.output
    nothing = cli("revert", *args)
    assert "nothing to revert" in nothing.output and "note:" not in nothing.output


def test_restart_note_is_a_json_field_and_quiet_drops_it(site):
    args = ("--keras-root", str(site), "--only", "keras")
    quiet = cli("apply", *args, "--no-verify", "-q")
    assert quiet.exit_code == 0 and "note:" not in quiet.output
    assert json.loads(cli("revert", *args, "--json").stdout)["restart_needed"] is True
    assert json.loads(cli("revert", *args, "--json").stdout)["restart_needed"] is False
    assert json.loads(cli("apply", *args, "--no-verify", "--json").stdout)["restart_needed"] is True
    assert json.loads(cli("apply", *args, "--no-verify", "--json").stdout)["restart_needed"] is False


def test_a_process_that_imported_keras_is_told_it_keeps_the_old_code(site):
    """The tool run inside a kernel that already imported the Keras it patches."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import keras; "
        "from patcher.cli import main; "
        "main(['apply', '--keras-root', sys.argv[1], '--only', 'keras', '--no-verify'], standalone_mode=False)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    completed = subprocess.run(
        [sys.executable, "-c", code, str(site)], capture_output=True, text=True, env=env, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "note: this Python process has already imported keras: it keeps the old code; restart it" in completed.stdout
    # a separate process (the usual `!convlstm-patch apply`) is not told so
    assert "already imported" not in cli_at(site, "revert", "--only", "keras").output


# -- several environments in one call ------------------------------------------


@pytest.fixture
def immutable():
    """chattr +i folders (real EPERM even for root), always undone."""
    folders: list[Path] = []

    def make(folder: Path) -> None:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        folders.append(folder)

    yield make
    for folder in folders:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("chattr"), reason="needs root and chattr for a real read-only folder"
)
def test_two_environments_second_read_only(tmp_path, immutable):
    first, second = keras_site(tmp_path / "one"), keras_site(tmp_path / "two")
    first_files = target_files(first, "keras")
    pristine = hashes(first_files)
    before = tree_hashes(second)
    immutable(second / "keras/src/layers/rnn")
    result = cli("apply", "--keras-root", str(first), "--keras-root", str(second), "--only", "keras", "--json")
    assert result.exit_code == 7, result.output
    document = json.loads(result.stdout)
    assert [env["keras_root"] for env in document["environments"]] == [str(first), str(second)]
    assert [env["exit_code"] for env in document["environments"]] == [0, 7]
    assert "cannot write" in document["environments"][1]["error"]
    assert document["error"]["exit_code"] == 7
    (outcome,) = document["outcomes"]
    assert outcome["site"] == str(first) and outcome["action"] == "patched"
    (report,) = document["verification"]
    assert report["site"] == str(first) and report["passed"]
    assert all(hashes([path])[path] != pristine[path] for path in first_files)  # the first stays patched
    assert tree_hashes(second) == before  # the second untouched


def test_two_environments_in_text(tmp_path):
    first, second = keras_site(tmp_path / "one"), keras_site(tmp_path / "two")
    result = cli("apply", "--keras-root", str(first), "--keras-root", str(second), "--no-verify")
    assert result.exit_code == 0, result.output
    assert f"== {first}" in result.output and f"== {second}" in result.output
    assert result.output.count("keras-3") >= 2
    status = cli("status", "--keras-root", str(first), "--keras-root", str(second), "--json")
    assert [flavour["state"] for flavour in json.loads(status.stdout)["flavours"]] == ["patched", "patched"]


def test_the_worst_exit_code_wins(tmp_path):
    good = keras_site(tmp_path / "good")
    result = cli("status", "--keras-root", str(good), "--keras-root", str(tmp_path / "missing"))
    assert result.exit_code == 3
    assert f"Error: {tmp_path / 'missing'}: --keras-root" in result.output
    assert "keras 3" in result.output  # the good one is still reported


def test_several_pythons_with_keras_roots_is_a_usage_error(tmp_path):
    result = cli("status", "--keras-root", str(tmp_path), "--python", sys.executable, "--python", sys.executable)
    assert result.exit_code == 2
    assert "at most one --python with --keras-root" in result.output


# -- python -m patcher and --version -------------------------------------------


def test_python_m_patcher_prints_the_same_as_the_command(site):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    as_command = "import sys; sys.argv[0] = 'convlstm-patch'; from patcher.cli import main; main()"
    for args in (["--help"], ["apply", "--help"], ["status", "--keras-root", str(site)]):
        module = subprocess.run([sys.executable, "-m", "patcher", *args], capture_output=True, text=True, env=env)
        command = subprocess.run([sys.executable, "-c", as_command, *args], capture_output=True, text=True, env=env)
        assert module.returncode == command.returncode == 0, module.stderr
        assert module.stdout == command.stdout
    assert module.stdout.startswith("keras 3")
    assert (
        "Usage: convlstm-patch"
        in subprocess.run([sys.executable, "-m", "patcher", "--help"], capture_output=True, text=True, env=env).stdout
    )


def test_version_names_the_tool_python_and_keras_found():
    from importlib import metadata

    result = cli("--version")
    assert result.exit_code == 0
    line = result.output.strip()
    assert line.startswith(f"convlstm-patch {__version__} (Python {platform.python_version()}; ")
    assert f"keras {metadata.version('keras')}" in line and f"tf_keras {metadata.version('tf_keras')}" in line


# -- Docker: patched as root at build time, used by an unprivileged user -------
# Without a container, in seconds; tests/test_docker.py builds README's
# Dockerfile for real with podman (marked slow).


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to run as another user"
)
def test_docker_build_as_root_then_runtime_user(tmp_path):
    site = keras_site(tmp_path / "image" / "site-packages")
    tmp_path.chmod(0o755)
    assert cli_at(site, "apply", "--only", "keras").exit_code == 0  # RUN convlstm-patch apply
    before = tree_hashes(site)
    for command, expected in (("status", "patched"), ("check", "ok (patched)"), ("apply", "already patched")):
        completed = as_nobody(command, "--keras-root", str(site), "--only", "keras", cwd=tmp_path)
        assert completed.returncode == 0, f"{command}: {completed.stderr}"
        assert expected in completed.stdout, completed.stdout
    assert tree_hashes(site) == before
