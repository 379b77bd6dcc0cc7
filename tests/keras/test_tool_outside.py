"""The tool installed apart from the environment it patches (pipx, a tools venv).

`convlstm-patch` lives in one venv; the target has TensorFlow and Keras but
neither click, libcst nor convlstm-patch, so the verification probe must run
with the target's own packages only.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from environments import environment, site_packages, tool_environment
from helpers import copy_distribution, hashes, target_files

TOOL_PACKAGES = ("click", "libcst", "patcher")


@pytest.mark.slow  # a throwaway venv the tool is pip-installed into
def test_a_tool_venv_patches_and_verifies_an_environment_without_its_dependencies(tmp_path):
    target = environment("keras-2.15.0")
    missing = subprocess.run(
        [str(target), "-c", f"import importlib.util as u; print([m for m in {TOOL_PACKAGES!r} if u.find_spec(m)])"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert missing.stdout.strip() == "[]", "the target must not have the tool's packages"
    tool = tool_environment(tmp_path)
    site = tmp_path / "target-site"
    site.mkdir()
    copy_distribution("keras", site, site_packages(target))
    files = target_files(site, "keras")
    before = hashes(files)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [str(tool / "convlstm-patch"), *args, "--python", str(target), "--keras-root", str(site)]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)

    applied = run("apply")
    assert applied.returncode == 0, applied.stderr
    assert "keras-2.15.0 [tensorflow]: verified (5 checks passed)" in applied.stdout
    reverted = run("revert")
    assert reverted.returncode == 0, reverted.stderr
    assert hashes(files) == before
