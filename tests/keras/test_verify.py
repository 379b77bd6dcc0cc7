"""`verify` passes on a correct patch and names the check a broken one fails.

Each broken variant is made here, from the patched output of a Keras copy.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from helpers import cli, cli_at, edit, tree_hashes

CELL = "keras/src/layers/rnn/conv_lstm.py"


@pytest.fixture
def patched(site: Path) -> Path:
    result = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert result.exit_code == 0, result.output
    return site


def swap_two_gates(site: Path) -> None:
    path = site / CELL
    edit(path, "i = self.recurrent_activation_i(", "i = self.recurrent_activation_X(")
    edit(path, "f = self.recurrent_activation_f(", "f = self.recurrent_activation_i(")
    edit(path, "i = self.recurrent_activation_X(", "i = self.recurrent_activation_f(")


def drop_config_key(site: Path) -> None:
    edit(
        site / CELL, "for name in self.cell._explicit_activations:", "for name in self.cell._explicit_activations[1:]:"
    )


def change_default(site: Path) -> None:
    edit(site / "keras/src/layers/rnn/conv_lstm2d.py", "activation_o=None,", 'activation_o="relu",')


def crash_on_import(site: Path) -> None:
    edit(
        site / CELL,
        "from keras.src import activations",
        "raise RuntimeError('boom')\nfrom keras.src import activations",
    )


@pytest.mark.parametrize(
    "breaks, failing_check",
    [
        pytest.param(swap_two_gates, "numerics", id="gates-swapped"),
        pytest.param(drop_config_key, "serialization", id="config-drops-key"),
        pytest.param(change_default, "api", id="default-changed"),
        pytest.param(crash_on_import, "import", id="import-crashes"),
    ],
)
def test_verify_names_the_failing_check(patched, breaks, failing_check):
    breaks(patched)
    result = cli("verify", "--keras-root", str(patched), "--only", "keras", "--json")
    assert result.exit_code == 9
    document = json.loads(result.stdout)
    assert document["passed"] is False
    failed = [check["name"] for check in document["reports"][0]["checks"] if not check["passed"]]
    assert failed[0] == failing_check, document
    assert {check["layer_set"] for check in document["reports"][0]["checks"]} == {"convlstm"}, document


def test_verify_reports_a_hang_as_a_failure(patched):
    edit(
        patched / CELL,
        "from keras.src import activations",
        "import time; time.sleep(60)\nfrom keras.src import activations",
    )
    result = cli("verify", "--keras-root", str(patched), "--only", "keras", "--timeout", "3")
    assert result.exit_code == 9
    assert "did not finish within 3 s" in result.output


@pytest.mark.slow  # another Keras 3 backend (.ci/run installs torch and jax)
@pytest.mark.backends
@pytest.mark.parametrize("backend", [pytest.param("torch", id="torch"), pytest.param("jax", id="jax")])
def test_verify_passes_under_tensorflow_and_another_backend(patched, backend):
    if importlib.util.find_spec(backend) is None:
        message = f"the {backend} backend is not installed (.ci/run installs torch==2.13.0 and jax==0.10.2)"
        if os.environ.get("CONVLSTM_PATCH_REQUIRE_BACKENDS"):
            pytest.fail(message)  # .ci/run's backend pass: this check must run, never be skipped
        pytest.skip(message)
    result = cli("verify", "--keras-root", str(patched), "--only", "keras", "--backend", backend, "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["reports"]
    assert [report["backend"] for report in reports] == ["tensorflow", backend]
    for report in reports:
        assert [check["name"] for check in report["checks"]] == [
            "api",
            "numerics",
            "inheritance",
            "defaults",
            "serialization",
        ]
        assert all(check["passed"] for check in report["checks"])
        numerics = next(check for check in report["checks"] if check["name"] == "numerics")
        assert numerics["value"] < 1e-4


def test_failed_verification_rolls_back_to_the_exact_previous_bytes(site):
    # A hand-edited Keras patched with --force: the transform succeeds, the
    # numerics check catches the edit, and apply must restore that very edit.
    edit(site / CELL, "h = o * self.activation(c)", "h = o * self.activation(c) * 1.5")
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--only", "keras", "--force")
    assert result.exit_code == 9
    assert "failed at check 'numerics'" in result.output
    assert "original files were restored" in result.output
    assert tree_hashes(site) == before  # includes the backup folder: none is left


def test_failed_verification_keeps_a_backup_that_was_there_before(site, monkeypatch):
    # Patched, then reinstalled ("the patch is gone"): the backup stays. An
    # apply whose verification fails must leave it as it found it, backup too.
    import patcher.verification
    from patcher.environment import find_flavours
    from patcher.layersets import LayerSet
    from patcher.verification import ProbeCheck, Report

    (flavour,) = find_flavours([str(site)], only="keras")
    originals = {target.path: target.path.read_bytes() for target in flavour.files_of({LayerSet.CONVLSTM})}
    assert cli("apply", "--keras-root", str(site), "--only", "keras", "--no-verify").exit_code == 0
    for path, data in originals.items():
        path.write_bytes(data)
    before = tree_hashes(site)
    failing = [ProbeCheck("numerics", False, "simulated", LayerSet.CONVLSTM)]
    monkeypatch.setattr(
        patcher.verification, "verify_all", lambda items, options: [Report(i.flavour, None, failing) for i in items]
    )
    result = cli("apply", "--keras-root", str(site), "--only", "keras")
    assert result.exit_code == 9
    assert "original files were restored" in result.output
    assert tree_hashes(site) == before
