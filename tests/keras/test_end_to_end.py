"""apply -> a real patched Keras in a fresh process -> revert, on copies of Keras.

The five-activation outputs are checked against the NumPy reference (itself
checked against stock Keras in test_reference.py), defaults bit for bit
against the pristine copy, and revert byte for byte against RECORD.
"""

from __future__ import annotations

import base64
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from helpers import SCRIPTS, Session, cli_at, hashes, run_in_site, target_files

from patcher.probe import reference

SCRIPT = str(SCRIPTS / "run_conv_lstm.py")
FIVE = {
    "activation_i": "relu",
    "activation_o": "softsign",
    "recurrent_activation_f": "sigmoid",
    "recurrent_activation_i": "tanh",
    "recurrent_activation_o": "linear",
}


def run_layers(site: Path, package: str, tmp_path: Path, *runs: dict) -> list[dict]:
    """Per run (activation keywords): {rank: {"x", "kernel", ..., "outputs", "h", "c"}}, from one fresh process."""
    out = tmp_path / f"{package}-{len(list(tmp_path.glob('*.npz')))}.npz"
    completed = run_in_site(site, SCRIPT, package, str(out), json.dumps(list(runs) or [{}]))
    assert completed.returncode == 0, completed.stderr[-2000:]
    with np.load(out) as data:
        assert str(data["source"]).startswith(str(site)), "the subprocess must import the copy, not the installed Keras"
        return [
            {
                rank: {key.split("/")[2]: data[key] for key in data.files if key.startswith(f"{index}/{rank}/")}
                for rank in (1, 2, 3)
            }
            for index in range(len(runs) or 1)
        ]


def record_hashes(package: str) -> dict[str, str]:
    """sha256 hex of every RECORD entry of the installed distribution."""
    entries = {}
    for entry in metadata.distribution(package).files:
        if entry.hash is not None:
            digest = entry.hash.value
            entries[str(entry)] = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    return entries


@pytest.mark.parametrize("package", [pytest.param("keras", id="keras3"), pytest.param("tf_keras", id="tf_keras")])
def test_a_verified_patch_computes_five_activations_and_defaults_bit_for_bit(verified, tmp_path, package):
    """The session's verified patch, run outside the probe: the five against the NumPy reference,
    no activation given against the pristine source bit for bit, and the five really change outputs."""
    reports = verified.reports(package)
    assert reports and all(report["passed"] for report in reports), verified.output
    assert [len(report["checks"]) for report in reports] == [17]  # ConvLSTM's 5, LSTM's and GRU's 6 each
    (stock,) = run_layers(Session.pristine_site, package, tmp_path)
    five, defaults = run_layers(verified.site, package, tmp_path, FIVE, {})
    for rank in (1, 2, 3):
        got = five[rank]
        expected = reference.conv_lstm(
            got["x"], got["kernel"], got["recurrent_kernel"], got["bias"], padding="same", **FIVE
        )
        for name, want in zip(("outputs", "h", "c"), expected):
            assert np.max(np.abs(got[name] - want)) < 1e-4, (rank, name)
        for name in ("outputs", "h", "c"):
            assert np.array_equal(defaults[rank][name], stock[rank][name]), (rank, name)
    # Guard against a test that cannot fail: the five change the outputs.
    assert not np.allclose(defaults[2]["outputs"], five[2]["outputs"])


@pytest.mark.parametrize("package", [pytest.param("keras", id="keras3"), pytest.param("tf_keras", id="tf_keras")])
def test_apply_then_revert_restores_the_recorded_bytes(site, package):
    files = target_files(site, package)
    before = hashes(files)
    assert cli_at(site, "apply", "--only", package, "--no-verify").exit_code == 0
    assert all(hashes([path])[path] != before[path] for path in files)
    result = cli_at(site, "revert", "--only", package)
    assert result.exit_code == 0, result.output
    assert hashes(files) == before
    record = record_hashes(package)
    for path in files:
        assert hashes([path])[path] == record[str(path.relative_to(site))]
    assert not (site / ".convlstm-patch" / "backups" / f"{package}-{metadata.version(package)}").exists()


def count_ops(site: Path, *runs: dict) -> list[dict]:
    script = str(SCRIPTS / "count_ops.py")
    completed = run_in_site(site, script, json.dumps(list(runs) or [{}]), env={"KERAS_BACKEND": "tensorflow"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_patched_layer_costs_no_extra_op(verified):
    """Without the five, the traced graph is op for op the stock one."""
    (stock,) = count_ops(Session.pristine_site)
    # With five, only the activations' own ops change (linear adds none at all).
    patched, five = count_ops(verified.site, {}, {**dict.fromkeys(FIVE, "tanh"), "recurrent_activation_o": "linear"})
    assert patched == stock
    changed = {op for op in set(stock) | set(five) if stock.get(op) != five.get(op)}
    assert changed <= {"Sigmoid", "Tanh"}, changed
