"""LSTM and GRU (`--layers lstm,gru`): per-gate activations verified, on copies of the installed Keras.

`apply --layers convlstm,lstm,gru` verifies green on keras (under each Keras 3
backend) and tf_keras, what users build around the layers included
(Bidirectional, RNN(cell), stacks, masks); a broken LSTM/GRU patch fails the
check that names it (a missing fused-path guard fails `fused`), and `revert`
gives RECORD-identical files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest
from helpers import FLAVOURS, cli, cli_at, edit, record_mismatches, tree_hashes

ALL = "convlstm,lstm,gru"
LSTM = "keras/src/layers/rnn/lstm.py"
GRU = "keras/src/layers/rnn/gru.py"
RNN_CHECKS = ["api", "numerics", "inheritance", "serialization", "fused", "defaults"]
CONVLSTM_CHECKS = ["api", "numerics", "inheritance", "defaults", "serialization"]
EXPECTED_CHECKS = CONVLSTM_CHECKS + [f"{s} {c}" for s in ("lstm", "gru") for c in RNN_CHECKS]


@pytest.fixture
def patched_rnn(site: Path) -> Path:
    result = cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", "lstm,gru")
    assert result.exit_code == 0, result.output
    return site


def test_apply_all_sets_reverts_to_record(site):
    pristine = tree_hashes(site)
    result = cli_at(site, "apply", "--layers", ALL, "--no-verify", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [outcome["action"] for outcome in document["outcomes"]] == ["patched", "patched"]
    reverted = cli_at(site, "revert")
    assert reverted.exit_code == 0, reverted.output
    assert [path for name in FLAVOURS for path in record_mismatches(name, site)] == []
    assert tree_hashes(site) == pristine


def assert_all_checks_pass(reports: list[dict]) -> None:
    """Every check passes, `fused` included: no layer with per-gate activations that differ
    from what they inherit enters a fused function (Bidirectional's own included), and the
    layers without (or with ones equal to what they inherit) enter what stock enters."""
    for report in reports:
        assert [check["name"] for check in report["checks"]] == EXPECTED_CHECKS
    failed = [
        f"{r['distribution']} {c['name']}: {c['detail']}" for r in reports for c in r["checks"] if not c["passed"]
    ]
    assert failed == []


def test_all_sets_verify_with_a_gpu_made_to_look_present(verified):
    """The session's verification (`apply --layers convlstm,lstm,gru`, keras under its configured
    backend and tf_keras), with what users build around the layers, on this machine's CPU."""
    reports = verified.document["verification"]
    assert {report["distribution"] for report in reports} == {"keras", "tf_keras"}
    assert_all_checks_pass(reports)
    for report in reports:
        numerics = {check["name"]: check for check in report["checks"]}
        # LSTM(recurrent_activation_f="relu") with default activation/recurrent_activation
        # matches the NumPy reference and not stock Keras's output (the probe checks both),
        # and so does every case built around the layers.
        for name in ("lstm numerics", "gru numerics"):
            assert numerics[name]["passed"] and numerics[name]["value"] < 1e-4, numerics[name]
            assert "15 built around them in 11 cases (Bidirectional in every merge mode" in numerics[name]["detail"]
            assert "on the CPU" in numerics[name]["detail"]
        assert "only recurrent_activation_f=relu" in numerics["lstm numerics"]["detail"]
        assert "reset_after True/False" in numerics["gru numerics"]["detail"]


def test_each_check_carries_its_layer_set(verified):
    """`apply --json`'s verification: every check says which layer set it checked, as the field
    "layer_set" (scripts/matrix.py reads it, never the name)."""
    expected = ["convlstm"] * len(CONVLSTM_CHECKS) + [s for s in ("lstm", "gru") for _ in RNN_CHECKS]
    for report in verified.document["verification"]:
        assert [check["layer_set"] for check in report["checks"]] == expected, report["checks"]
        assert all(check["name"].startswith(check["layer_set"]) for check in report["checks"][len(CONVLSTM_CHECKS) :])


def require(backend: str) -> None:
    if backend != "tensorflow" and importlib.util.find_spec(backend) is None:
        message = f"the {backend} backend is not installed (.ci/run installs torch==2.13.0 and jax==0.10.2)"
        if os.environ.get("CONVLSTM_PATCH_REQUIRE_BACKENDS"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.slow  # another Keras 3 backend (.ci/run installs torch and jax)
@pytest.mark.backends
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_all_sets_verify_under_another_backend(site, backend):
    require(backend)
    assert cli_at(site, "apply", "--layers", ALL, "--no-verify").exit_code == 0
    result = cli_at(site, "verify", "--json", "--only", "keras", "--backend", backend)
    reports = json.loads(result.stdout)["reports"]
    assert [report["backend"] for report in reports][-1] == backend
    assert_all_checks_pass(reports)
    assert result.exit_code == 0
    fused = [check for check in reports[-1]["checks"] if check["name"] in ("lstm fused", "gru fused")]
    for check in fused:
        if backend == "torch":  # where stock runs PyTorch's plain loop, per-gate layers run theirs
            loop = r"the per-gate loop \(PyTorch's plain loop with the cell's functions\) computed [1-9]"
            assert re.search(loop, check["detail"]), check
        else:
            assert f"their per-gate loop (PyTorch only) declines under {backend}" in check["detail"]


def drop_lstm_guard(site: Path) -> None:
    # Keras 3 guards the call of the fused kernel: without it, a per-gate layer calls backend.lstm.
    edit(
        site / LSTM,
        "(backend.lstm if not self.cell._overriding_activations else self._per_gate_lstm)(",
        "backend.lstm(",
    )


def lstm_forget_gate_stock(site: Path) -> None:
    edit(site / LSTM, "f = self.recurrent_activation_f(z1)", "f = self.recurrent_activation(z1)")


def gru_reset_gate_stock(site: Path) -> None:
    # Both implementations (split and fused kernels) compute r; break the one layers use by default.
    text = (site / GRU).read_text()
    (site / GRU).write_text(
        text.replace(
            "r = self.recurrent_activation_r(x_r + recurrent_r)", "r = self.recurrent_activation(x_r + recurrent_r)"
        )
    )


def gru_config_drops(site: Path) -> None:
    edit(site / GRU, "for name in self.cell._explicit_activations:", "for name in self.cell._explicit_activations[1:]:")


@pytest.mark.parametrize(
    "breaks, failing_check, says",
    [
        pytest.param(
            drop_lstm_guard,
            "lstm fused",
            "LSTM with recurrent_activation_f=relu: the layer entered backend.lstm",
            id="lstm-guard-missing",
        ),
        pytest.param(lstm_forget_gate_stock, "lstm numerics", "gives the stock output", id="lstm-forget-gate-ignored"),
        pytest.param(gru_reset_gate_stock, "gru numerics", "gives the stock output", id="gru-reset-gate-ignored"),
        # Bidirectional rebuilds its layers from their config: the dropped activation is lost there
        # first, and the numerics of the cases built around GRU name it.
        pytest.param(gru_config_drops, "gru numerics", "Bidirectional(GRU) with", id="gru-config-drops-key"),
    ],
)
def test_broken_rnn_patch_fails_the_check_that_names_it(patched_rnn, breaks, failing_check, says):
    breaks(patched_rnn)
    layer_set = failing_check.split()[0]
    result = cli("verify", "--keras-root", str(patched_rnn), "--only", "keras", "--json")
    assert result.exit_code == 9
    (report,) = json.loads(result.stdout)["reports"]
    failed = [check for check in report["checks"] if not check["passed"] and check["name"].startswith(layer_set)]
    assert failed[0]["name"] == failing_check, report
    assert says in failed[0]["detail"], failed[0]


def lstm_loop_forget_gate_stock(site: Path) -> None:
    edit(site / LSTM, "f = cell.recurrent_activation_f(z_f)", "f = cell.recurrent_activation(z_f)")


def gru_loop_update_gate_stock(site: Path) -> None:
    edit(site / GRU, "z = cell.recurrent_activation_z(x_z + h_z)", "z = cell.recurrent_activation(x_z + h_z)")


def lstm_loop_declines(site: Path) -> None:
    edit(site / LSTM, 'backend.backend() != "torch"', 'backend.backend() != "pytorch"')


@pytest.mark.slow  # PyTorch (.ci/run installs it)
@pytest.mark.backends
@pytest.mark.parametrize(
    "breaks, failing_check, says",
    [
        # LSTM(recurrent_activation_f="relu") alone, then every case: the loop computes stock's gate.
        pytest.param(lstm_loop_forget_gate_stock, "lstm numerics", "gives the stock output", id="lstm-loop-gate"),
        pytest.param(
            gru_loop_update_gate_stock,
            "gru numerics",
            "GRU with recurrent_activation_z=hard_sigmoid",
            id="gru-loop-gate",
        ),
        # Right numbers from the cell loop, but not the path stock takes under PyTorch.
        pytest.param(
            lstm_loop_declines,
            "lstm fused",
            "off the per-gate loop: LSTM with recurrent_activation_f=relu: the per-gate loop computed none where it "
            "should compute the layer",
            id="lstm-loop-not-taken",
        ),
    ],
)
def test_broken_per_gate_loop_fails_under_torch(patched_rnn, breaks, failing_check, says):
    """The per-gate loop runs only under PyTorch: verified there, with the GPU made to look present."""
    require("torch")
    breaks(patched_rnn)
    layer_set = failing_check.split()[0]
    result = cli(
        "verify",
        "--keras-root",
        str(patched_rnn),
        "--only",
        "keras",
        "--backend",
        "torch",
        "--json",
    )
    assert result.exit_code == 9
    reports = json.loads(result.stdout)["reports"]
    (report,) = [report for report in reports if report["backend"] == "torch"]
    failed = [check for check in report["checks"] if not check["passed"] and check["name"].startswith(layer_set)]
    assert failed[0]["name"] == failing_check, report
    assert says in failed[0]["detail"], failed[0]


def test_tf_keras_guard_missing_fails_fused(site):
    assert cli_at(site, "apply", "--only", "tf_keras", "--no-verify", "--layers", "lstm").exit_code == 0
    edit(site / "tf_keras/src/layers/rnn/lstm.py", "            and not self.cell._overriding_activations\n", "")
    result = cli("verify", "--keras-root", str(site), "--only", "tf_keras", "--json")
    assert result.exit_code == 9
    (report,) = json.loads(result.stdout)["reports"]
    # The trap: without the guard tf_keras runs standard_lstm even on a
    # CPU, ignoring recurrent_activation_f, so the numerics fail as well.
    assert [check["name"] for check in report["checks"] if not check["passed"]] == ["lstm numerics", "lstm fused"]
    (fused,) = [check for check in report["checks"] if check["name"] == "lstm fused"]
    # With the GPU made to look present (the layers' own tensorflow.compat.v2 config too), cuDNN.
    assert "LSTM with recurrent_activation_f=relu: the layer entered gpu_lstm" in fused["detail"], fused
