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


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in ENVIRONMENTS])
def test_apply_verify_revert_with_lstm_and_gru(tmp_path, name):
    """`--layers convlstm,lstm,gru` on another generation (keras 3.0's inner_loop has no use_cudnn)."""
    python = environment(name)
    site = tmp_path / "site-packages"
    site.mkdir()
    copy_distribution("keras", site, site_packages(python))
    files = [target.path for target in _targets(site, all_sets=True)]
    before = hashes(files)
    runner = CliRunner()
    args = ["--keras-root", str(site), "--python", str(python), "--only", "keras"]
    result = runner.invoke(main, ["apply", *args, "--layers", "convlstm,lstm,gru"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "patched 6 files" in result.output and "verified (17 checks passed)" in result.output
    assert runner.invoke(main, ["check", *args]).exit_code == 0
    result = runner.invoke(main, ["revert", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert hashes(files) == before
    assert all(target.record_sha256 == before[target.path] for target in _targets(site, all_sets=True))


def _targets(site: Path, all_sets: bool = False):
    from patcher.environment import find_flavours

    from patcher.spec import LayerSet

    (flavour,) = find_flavours([str(site)], only="keras", layers=frozenset(LayerSet) if all_sets else None)
    return flavour.files
