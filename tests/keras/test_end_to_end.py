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

from helpers import SCRIPTS, cli_at, hashes, run_in_site, target_files
from patcher.probe import reference

SCRIPT = str(SCRIPTS / "run_conv_lstm.py")
FIVE = {
    "activation_i": "relu",
    "activation_o": "softsign",
    "recurrent_activation_f": "sigmoid",
    "recurrent_activation_i": "tanh",
    "recurrent_activation_o": "linear",
}


def run_layers(site: Path, package: str, tmp_path: Path, activations: dict | None = None) -> dict:
    """{rank: {"x", "kernel", ..., "outputs", "h", "c"}} from a fresh process."""
    out = tmp_path / f"{package}-{len(list(tmp_path.glob('*.npz')))}.npz"
    completed = run_in_site(site, SCRIPT, package, str(out), json.dumps(activations or {}))
    assert completed.returncode == 0, completed.stderr[-2000:]
    with np.load(out) as data:
        assert str(data["source"]).startswith(str(site)), "the subprocess must import the copy, not the installed Keras"
        return {rank: {key.split("/")[1]: data[key] for key in data.files if key.startswith(f"{rank}/")} for rank in (1, 2, 3)}


def record_hashes(package: str) -> dict[str, str]:
    """sha256 hex of every RECORD entry of the installed distribution."""
    entries = {}
    for entry in metadata.distribution(package).files:
        if entry.hash is not None:
            digest = entry.hash.value
            entries[str(entry)] = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    return entries


@pytest.mark.parametrize("package", [pytest.param("keras", id="keras3"), pytest.param("tf_keras", id="tf_keras")])
def test_apply_computes_five_activations_and_revert_restores_bytes(site, tmp_path, package):
    files = target_files(site, package)
    before = hashes(files)
    stock = run_layers(site, package, tmp_path)

    result = cli_at(site, "apply", "--only", package)
    assert result.exit_code == 0, result.output
    assert "verified (5 checks passed)" in result.output
    assert all(hashes([path])[path] != before[path] for path in files)

    five, defaults = run_layers(site, package, tmp_path, FIVE), run_layers(site, package, tmp_path)
    for rank in (1, 2, 3):
        got = five[rank]
        expected = reference.conv_lstm(got["x"], got["kernel"], got["recurrent_kernel"], got["bias"], padding="same", **FIVE)
        for name, want in zip(("outputs", "h", "c"), expected):
            assert np.max(np.abs(got[name] - want)) < 1e-4, (rank, name)
        for name in ("outputs", "h", "c"):
            assert np.array_equal(defaults[rank][name], stock[rank][name]), (rank, name)

    result = cli_at(site, "revert", "--only", package)
    assert result.exit_code == 0, result.output
    assert hashes(files) == before
    record = record_hashes(package)
    for path in files:
        assert hashes([path])[path] == record[str(path.relative_to(site))]
    assert not (site / ".convlstm-patch" / "backups" / f"{package}-{metadata.version(package)}").exists()


def test_five_activations_are_really_used(site, tmp_path):
    """Guard against a test that cannot fail: the five change the outputs."""
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    default, five = run_layers(site, "keras", tmp_path), run_layers(site, "keras", tmp_path, FIVE)
    assert not np.allclose(default[2]["outputs"], five[2]["outputs"])


def count_ops(site: Path, activations: dict | None = None) -> dict:
    script = str(SCRIPTS / "count_ops.py")
    completed = run_in_site(site, script, json.dumps(activations or {}), env={"KERAS_BACKEND": "tensorflow"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_patched_layer_costs_no_extra_op(site):
    """Without the five, the traced graph is op for op the stock one."""
    stock = count_ops(site)
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    assert count_ops(site) == stock
    # With five, only the activations' own ops change (linear adds none at all).
    five = count_ops(site, {**dict.fromkeys(FIVE, "tanh"), "recurrent_activation_o": "linear"})
    changed = {op for op in set(stock) | set(five) if stock.get(op) != five.get(op)}
    assert changed <= {"Sigmoid", "Tanh"}, changed
