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
from helpers import ROOT, SCRIPTS, Session, run_in_site

from patcher.probe import reference

SCRIPT = str(SCRIPTS / "model_travel.py")
# (package, file suffix, what stock Keras says about a keyword it does not know)
FORMATS = [
    pytest.param(
        "keras", ".keras", "Unrecognized keyword arguments passed to ConvLSTM2D: {'activation_i'", id="keras3"
    ),
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


def recipe(site: Path, step: str, path: Path) -> dict:
    completed = run_in_site(site, str(SCRIPTS / "hard_sigmoid_recipe.py"), str(ROOT / "README.md"), step, str(path))
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_readme_hard_sigmoid_recipe_keeps_keras2s_function(verified, tmp_path):
    """README's registered function: saved with the model, loaded again by name in a fresh
    process, and it computes Keras 2's hard_sigmoid, not Keras 3's."""
    path = tmp_path / "keras2_gate.keras"
    saved = recipe(verified.site, "save", path)
    loaded = recipe(verified.site, "load", path)
    assert loaded["is_recipe_function"] and "hard_sigmoid_keras2" in json.dumps(loaded["recurrent_activation_o"])
    np.testing.assert_array_equal(loaded["output"], saved["output"])
    kernel, recurrent_kernel, bias = (np.asarray(w) for w in saved["weights"])
    x = np.asarray(saved["input"])

    def expected(hard_sigmoid):
        return reference.conv_lstm(
            x,
            kernel,
            recurrent_kernel,
            bias,
            padding="same",
            recurrent_activation_o="hard_sigmoid",
            hard_sigmoid=hard_sigmoid,
        )[0]

    np.testing.assert_allclose(saved["output"], expected("keras2"), atol=1e-5)
    assert np.max(np.abs(np.asarray(saved["output"]) - expected("keras3"))) > 1e-2, "the two hard_sigmoids agree here"
