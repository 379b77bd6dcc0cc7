"""LSTM and GRU (`--layers lstm,gru`): per-gate activations verified, on copies of the installed Keras.

`apply --layers convlstm,lstm,gru` verifies green on keras and tf_keras, a
broken LSTM/GRU patch fails the check that names it (a missing fused-path
guard fails `fused`), and `revert` gives RECORD-identical files.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import json
import os
from pathlib import Path

import pytest

from helpers import cli, cli_at, tree_hashes

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


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def record_mismatches(site: Path) -> list[str]:
    """Files whose sha256 differs from their distribution's RECORD."""
    bad = []
    for record in site.glob("*.dist-info/RECORD"):
        for row in csv.reader(record.read_text().splitlines()):
            if len(row) > 1 and row[1].startswith("sha256="):
                digest = base64.urlsafe_b64encode(hashlib.sha256((site / row[0]).read_bytes()).digest()).rstrip(b"=")
                if digest.decode() != row[1][len("sha256=") :]:
                    bad.append(row[0])
    return bad


def test_apply_all_sets_verifies_and_reverts_to_record(site):
    pristine = tree_hashes(site)
    result = cli_at(site, "apply", "--layers", ALL, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [outcome["action"] for outcome in document["outcomes"]] == ["patched", "patched"]
    for report in document["verification"]:
        assert [check["name"] for check in report["checks"]] == EXPECTED_CHECKS
        assert all(check["passed"] for check in report["checks"]), report
        numerics = {check["name"]: check for check in report["checks"]}
        # LSTM(recurrent_activation_f="relu") with default activation/recurrent_activation
        # matches the NumPy reference and not stock Keras's output (the probe checks both).
        assert "only recurrent_activation_f=relu" in numerics["lstm numerics"]["detail"]
        assert numerics["lstm numerics"]["value"] < 1e-4 and numerics["gru numerics"]["value"] < 1e-4
        assert "reset_after True/False" in numerics["gru numerics"]["detail"]
    verify = cli_at(site, "verify")
    assert verify.exit_code == 0, verify.output
    reverted = cli_at(site, "revert")
    assert reverted.exit_code == 0, reverted.output
    assert record_mismatches(site) == []
    assert tree_hashes(site) == pristine


def drop_lstm_guard(site: Path) -> None:
    edit(site / LSTM, ' and not self.cell._overriding_activations:', ":")


def lstm_forget_gate_stock(site: Path) -> None:
    edit(site / LSTM, "f = self.recurrent_activation_f(z1)", "f = self.recurrent_activation(z1)")


def gru_reset_gate_stock(site: Path) -> None:
    # Both implementations (split and fused kernels) compute r; break the one layers use by default.
    text = (site / GRU).read_text()
    (site / GRU).write_text(text.replace("r = self.recurrent_activation_r(x_r + recurrent_r)", "r = self.recurrent_activation(x_r + recurrent_r)"))


def gru_config_drops(site: Path) -> None:
    edit(site / GRU, "for name in self.cell._explicit_activations:", "for name in self.cell._explicit_activations[1:]:")


@pytest.mark.parametrize(
    "breaks, failing_check",
    [
        pytest.param(drop_lstm_guard, "lstm fused", id="lstm-guard-missing"),
        pytest.param(lstm_forget_gate_stock, "lstm numerics", id="lstm-forget-gate-ignored"),
        pytest.param(gru_reset_gate_stock, "gru numerics", id="gru-reset-gate-ignored"),
        pytest.param(gru_config_drops, "gru serialization", id="gru-config-drops-key"),
    ],
)
def test_broken_rnn_patch_fails_the_check_that_names_it(patched_rnn, breaks, failing_check):
    breaks(patched_rnn)
    result = cli("verify", "--keras-root", str(patched_rnn), "--only", "keras", "--json")
    assert result.exit_code == 9
    (report,) = json.loads(result.stdout)["reports"]
    failed = [check["name"] for check in report["checks"] if not check["passed"]]
    assert failed[0] == failing_check, report


def test_tf_keras_guard_missing_fails_fused(site):
    assert cli_at(site, "apply", "--only", "tf_keras", "--no-verify", "--layers", "lstm").exit_code == 0
    edit(site / "tf_keras/src/layers/rnn/lstm.py", "            and not self.cell._overriding_activations\n", "")
    result = cli("verify", "--keras-root", str(site), "--only", "tf_keras", "--json")
    assert result.exit_code == 9
    (report,) = json.loads(result.stdout)["reports"]
    # The trap: without the guard tf_keras runs standard_lstm even on a
    # CPU, ignoring recurrent_activation_f, so the numerics fail as well.
    assert [check["name"] for check in report["checks"] if not check["passed"]] == ["lstm numerics", "lstm fused"]


@pytest.mark.backends
@pytest.mark.parametrize("backend", [pytest.param("torch", id="torch"), pytest.param("jax", id="jax")])
def test_rnn_sets_verify_under_another_backend(patched_rnn, backend):
    if importlib.util.find_spec(backend) is None:
        message = f"the {backend} backend is not installed (.ci/run installs torch==2.13.0 and jax==0.10.2)"
        if os.environ.get("CONVLSTM_PATCH_REQUIRE_BACKENDS"):
            pytest.fail(message)
        pytest.skip(message)
    result = cli("verify", "--keras-root", str(patched_rnn), "--only", "keras", "--backend", backend, "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["reports"]
    assert [report["backend"] for report in reports] == ["tensorflow", backend]
    for report in reports:
        assert [check["name"] for check in report["checks"]] == EXPECTED_CHECKS
        assert all(check["passed"] for check in report["checks"])
