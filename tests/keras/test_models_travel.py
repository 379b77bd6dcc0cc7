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

from helpers import SCRIPTS, Session, run_in_site

SCRIPT = str(SCRIPTS / "model_travel.py")
# (package, file suffix, what stock Keras says about a keyword it does not know)
FORMATS = [
    pytest.param("keras", ".keras", "Unrecognized keyword arguments passed to ConvLSTM2D: {'activation_i'", id="keras3"),
    pytest.param("tf_keras", ".h5", "Keyword argument not understood", id="tf_keras"),
]


def travel(site: Path, package: str, *steps) -> list[dict]:
    """Run the steps (save / load) in one fresh process importing Keras from ``site``."""
    completed = run_in_site(site, SCRIPT, package, json.dumps(steps))
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package, suffix, refusal", FORMATS)
def test_models_travel(verified, tmp_path, package, suffix, refusal):
    """Saved where patched (the session's verified copy), loaded where stock (its pristine copy)."""
    with_five, without = str(tmp_path / f"five{suffix}"), str(tmp_path / f"plain{suffix}")
    saved_five, saved_plain, loaded_five = travel(
        verified.site, package,
        ["save", with_five, {"activation_i": "relu"}], ["save", without, {}], ["load", with_five],
    )  # fmt: skip
    assert loaded_five["output"] == saved_five["output"]
    refused, loaded = travel(Session.pristine_site, package, ["load", with_five], ["load", without])
    assert "error" in refused and refusal in refused["error"], refused
    assert "activation_i" in refused["error"]
    assert "error" not in loaded, loaded
    np.testing.assert_array_equal(loaded["output"], saved_plain["output"])
