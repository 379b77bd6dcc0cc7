"""apply + verify + revert on other installable Keras versions, in throwaway venvs.

The venvs (tests/environments.py) are cached outside the repository; each
test works on a copy of the venv's Keras, never the venv itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import copy_distribution, hashes, target_files
from environments import ENVIRONMENTS, environment, site_packages
from patcher.cli import main


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
