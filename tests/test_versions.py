"""apply + verify + revert on other installable Keras versions, in throwaway venvs.

The venvs live outside the repository (``$CONVLSTM_PATCH_ENV_CACHE`` or
``~/.cache/convlstm-patch/venvs``) so CI on the same machine builds them once;
each test works on a copy of the venv's Keras, never the venv itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import copy_distribution, hashes, target_files
from patcher.cli import main

CACHE = Path(os.environ.get("CONVLSTM_PATCH_ENV_CACHE", Path.home() / ".cache" / "convlstm-patch" / "venvs"))

# name -> (reuse this interpreter's packages (TensorFlow 2.21)?, what to install)
ENVIRONMENTS = {
    "keras-3.0.0": (True, ["keras==3.0.0"]),  # the oldest Keras 3
    "keras-2.15.0": (False, ["tensorflow-cpu==2.15.1", "keras==2.15.0"]),  # the newest Keras 2
}


def environment(name: str) -> Path:
    """The venv's python, built on first use (a `.complete` marker guards half-built ones)."""
    system_site, packages = ENVIRONMENTS[name]
    folder = CACHE / name
    python = folder / "bin" / "python"
    if not (folder / ".complete").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        options = ["--clear"] + (["--system-site-packages"] if system_site else [])
        subprocess.run([sys.executable, "-m", "venv", *options, str(folder)], check=True)
        completed = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True, timeout=1800
        )
        if completed.returncode != 0:
            pytest.fail(f"could not build the {name} test environment: {completed.stderr[-1500:]}")
        (folder / ".complete").write_text("ok\n")
    return python


def site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in ENVIRONMENTS])
def test_apply_verify_revert(tmp_path, name):
    python = environment(name)
    site = tmp_path / "site-packages"
    site.mkdir()
    copy_distribution("keras", site, site_packages(python))
    files = target_files(site, "keras")
    before = hashes(files)
    runner = CliRunner()
    args = ["--keras-root", str(site), "--python", str(python), "--only", "keras"]
    result = runner.invoke(main, ["apply", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{name}" in result.output and "verified (5 checks passed)" in result.output
    assert runner.invoke(main, ["check", *args]).exit_code == 0
    result = runner.invoke(main, ["revert", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert hashes(files) == before
    assert all(target.record_sha256 == before[target.path] for target in _targets(site))


def _targets(site: Path):
    from patcher.environment import find_flavours

    (flavour,) = find_flavours([str(site)], only="keras")
    return flavour.files
