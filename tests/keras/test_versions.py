"""apply + verify + revert on other installable Keras versions, in throwaway venvs.

The venvs (tests/environments.py) are cached outside the repository; each
test works on a copy of the venv's Keras, never the venv itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from environments import ENVIRONMENTS, environment, site_packages
from helpers import copy_distribution, hashes, runner

from patcher.cli import main


@pytest.mark.slow  # other Keras versions in throwaway venvs (one with TensorFlow 2.15)
@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in ENVIRONMENTS])
@pytest.mark.parametrize(
    "layers, says",
    [
        pytest.param((), ["verified (5 checks passed)"], id="convlstm"),
        # keras 3.0's inner_loop has no use_cudnn: the LSTM/GRU probe must cope
        pytest.param(
            ("--layers", "convlstm,lstm,gru"), ["patched 6 files", "verified (17 checks passed)"], id="lstm-gru"
        ),
    ],
)
def test_apply_verify_revert(tmp_path, name, layers, says):
    python = environment(name)
    site = tmp_path / "site-packages"
    site.mkdir()
    copy_distribution("keras", site, site_packages(python))
    files = [target.path for target in _targets(site, all_sets=bool(layers))]
    before = hashes(files)
    invoke = runner().invoke
    args = ["--keras-root", str(site), "--python", str(python), "--only", "keras"]
    result = invoke(main, ["apply", *args, *layers], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert name in result.output and all(text in result.output for text in says), result.output
    assert invoke(main, ["check", *args]).exit_code == 0
    result = invoke(main, ["revert", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert hashes(files) == before
    assert all(target.record_sha256 == before[target.path] for target in _targets(site, all_sets=bool(layers)))


def _targets(site: Path, all_sets: bool = False):
    from patcher.environment import find_flavours
    from patcher.layersets import LayerSet

    (flavour,) = find_flavours([str(site)], only="keras")
    return flavour.files_of(set(LayerSet) if all_sets else {LayerSet.CONVLSTM})
