"""Models travel: a model saved with any of the five needs the patch to load;
one that uses none of them loads on stock Keras with the same outputs.

Saved by a patched copy of Keras, loaded by a pristine copy, in fresh processes.
README's Troubleshooting quotes the refusals checked here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import SCRIPTS, cli_at, copy_distribution, run_in_site

SCRIPT = str(SCRIPTS / "model_travel.py")
# (package, file suffix, what stock Keras says about a keyword it does not know)
FORMATS = [
    pytest.param("keras", ".keras", "Unrecognized keyword arguments passed to ConvLSTM2D: {'activation_i'", id="keras3"),
    pytest.param("tf_keras", ".h5", "Keyword argument not understood", id="tf_keras"),
]


def travel(site: Path, package: str, *args: str) -> dict:
    completed = run_in_site(site, SCRIPT, package, *args)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture
def stock(tmp_path: Path) -> Path:
    folder = tmp_path / "stock-site"
    folder.mkdir()
    for name in ("keras", "tf_keras"):
        copy_distribution(name, folder)
    return folder


@pytest.mark.parametrize("package, suffix, refusal", FORMATS)
def test_models_travel(site, stock, tmp_path, package, suffix, refusal):
    result = cli_at(site, "apply", "--only", package, "--no-verify")
    assert result.exit_code == 0, result.output
    with_five, without = tmp_path / f"five{suffix}", tmp_path / f"plain{suffix}"
    saved_five = travel(site, package, "save", str(with_five), json.dumps({"activation_i": "relu"}))
    saved_plain = travel(site, package, "save", str(without), "{}")

    refused = travel(stock, package, "load", str(with_five))
    assert "error" in refused and refusal in refused["error"], refused
    assert "activation_i" in refused["error"]

    assert travel(site, package, "load", str(with_five))["output"] == saved_five["output"]
    loaded = travel(stock, package, "load", str(without))
    assert "error" not in loaded, loaded
    np.testing.assert_array_equal(loaded["output"], saved_plain["output"])
