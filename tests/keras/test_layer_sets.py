"""`--layers`: LSTM and GRU are opt-in; plain `apply` is exactly what it was.

Works on copies of the installed keras and tf_keras (the `site` fixture); the
expected ConvLSTM bytes are the hashes in patches/pins, made before layer sets
existed.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
from helpers import cli_at, hashes, removed_lines, tree_hashes

from patcher.environment import find_flavours
from patcher.hashing import sha256_hex
from patcher.layersets import LayerSet
from patcher.pins import load_pins
from patcher.spec import parameters
from patcher.transform import transform_source

ALL = "convlstm,lstm,gru"
RNN_SETS = (LayerSet.LSTM, LayerSet.GRU)
# Lines of LSTM/GRU sources the patch may change: gate equations, the fused-path flag / test, and
# Keras 3's call of the fused kernel (a layer with per-gate activations calls its per-gate loop).
CHANGED_PREFIXES = (
    "i = self.recurrent_activation(",
    "f = self.recurrent_activation(",
    "c = f * c_tm1 + i * self.activation(",
    "o = self.recurrent_activation(",
    "h = o * self.activation(c)",
    "z = self.recurrent_activation(",
    "r = self.recurrent_activation(",
    'if self.use_cudnn in ("auto", True):',
    "out = backend.lstm(",
    "out = backend.gru(",
    ")",  # the end of `self._could_use_gpu_kernel = (...)`
)


def flavours(site):
    return {flavour.distribution: flavour for flavour in find_flavours([str(site)])}


def rnn_targets():
    return [
        pytest.param(flavour, target, layer_set, id=f"{flavour.distribution}-{layer_set}")
        for flavour in find_flavours(sys.path)
        for layer_set in RNN_SETS
        for target in flavour.files_of({layer_set})
        if "cell" in target.classes.values()
    ]


def test_plain_apply_output_and_bytes_are_unchanged(site):
    before = flavours(site)
    rnn_files = [target.path for flavour in flavours(site).values() for target in flavour.files_of(RNN_SETS)]
    rnn_before = hashes(rnn_files)
    result = cli_at(site, "apply", "--no-verify")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{before['keras'].key}: patched 4 files; undo with `convlstm-patch revert`",
        f"{before['tf_keras'].key}: patched 4 files; undo with `convlstm-patch revert`",
        (
            "note: Python processes that imported Keras before this keep the old code until they restart "
            "(Jupyter: restart the kernel)"
        ),
    ]
    for flavour in before.values():
        lock = load_pins(flavour.distribution, flavour.version)
        convlstm = {relative for relative, locked in lock.files.items() if "convlstm" in locked.patched}
        convlstm_files = flavour.files_of({LayerSet.CONVLSTM})
        assert {target.relative for target in convlstm_files} == convlstm and len(convlstm) == 4
        for target in convlstm_files:
            assert sha256_hex(target.path.read_bytes()) == lock.files[target.relative].patched_for({LayerSet.CONVLSTM})
    assert hashes(rnn_files) == rnn_before, "plain apply touched LSTM/GRU files"


@pytest.mark.parametrize("flavour, target, layer_set", rnn_targets())
def test_rnn_sources_transform(flavour, target, layer_set):
    source = target.path.read_text(encoding="utf-8")
    result = transform_source(source, target.classes, layer_sets=(layer_set,))
    assert result.warnings == ()
    compile(result.code, target.relative, "exec")
    assert transform_source(result.code, target.classes, layer_sets=(layer_set,)).code == result.code
    removed = removed_lines(source.splitlines(), result.code.splitlines())
    assert [line for line in removed if not line.startswith(CHANGED_PREFIXES)] == []
    tree = ast.parse(result.code)
    names = [param.name for param in parameters(layer_set)]
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in target.classes:
            init = next(item for item in node.body if isinstance(item, ast.FunctionDef) and item.name == "__init__")
            assert [arg.arg for arg in init.args.args[-len(names) :]] == names
    # The layer never takes its fused path with a per-gate activation set.
    assert "not self.cell._overriding_activations" in result.code


def test_further_set_is_one_step_and_revert_restores_all(site):
    pristine = tree_hashes(site)
    assert cli_at(site, "apply", "--no-verify").exit_code == 0
    more = cli_at(site, "apply", "--no-verify", "--layers", "lstm,gru", "--only", "keras")
    assert more.exit_code == 0, more.output
    added = len(flavours(site)["keras"].files_of(RNN_SETS))  # lstm.py, gru.py (and bidirectional.py, 3.15+)
    assert more.stdout.splitlines()[0].endswith(f"patched {added} files; undo with `convlstm-patch revert`")
    status = json.loads(cli_at(site, "status", "--json", "--only", "keras").stdout)
    (keras,) = status["flavours"]
    assert keras["state"] == "patched" and len(keras["files"]) == 4 + added
    assert keras["layer_sets"] == {
        "patched": ["convlstm", "lstm", "gru"],
        "chosen": ["convlstm", "lstm", "gru"],
        "supported": ["convlstm", "lstm", "gru"],
    }
    again = cli_at(site, "apply", "--no-verify", "--only", "keras")
    assert "already patched" in again.stdout
    reverted = cli_at(site, "revert")
    assert reverted.exit_code == 0, reverted.output
    assert reverted.stdout.splitlines()[:2] == [
        f"{flavours(site)['keras'].key}: restored {4 + added} files",
        f"{flavours(site)['tf_keras'].key}: restored 4 files",
    ]
    assert tree_hashes(site) == pristine


def test_verify_with_layers_names_the_new_way_and_verifies_every_set_patched(site):
    """`verify --layers` is gone (verify covers what is patched): the error names the apply that
    chooses the sets, said before any probe starts; once it is followed, verify covers them all."""
    assert cli_at(site, "apply", "--no-verify", "--only", "keras").exit_code == 0
    refused = cli_at(site, "verify", "--only", "keras", "--layers", ALL, "--json")
    assert refused.exit_code == 2, refused.output
    message = json.loads(refused.stdout)["error"]["message"]
    assert "`verify --layers` is gone" in message and "`convlstm-patch apply --layers SETS`" in message, message
    followed = cli_at(site, "apply", "--layers", ALL, "--only", "keras", "--no-verify")
    assert followed.exit_code == 0, followed.output
    verified = cli_at(site, "verify", "--only", "keras", "--json")
    assert verified.exit_code == 0, verified.output
    checks = [check["name"] for report in json.loads(verified.stdout)["reports"] for check in report["checks"]]
    assert any(name.startswith("lstm") for name in checks) and any(name.startswith("gru") for name in checks), checks


def test_a_set_the_version_lacks_is_refused(site):
    (gru,) = [t for t in flavours(site)["keras"].files_of({LayerSet.GRU}) if "cell" in t.classes.values()]
    gru.path.write_text(gru.path.read_text().replace("class GRUCell(", "class OtherCell("))
    assert LayerSet.GRU not in flavours(site)["keras"].supported_sets
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--no-verify", "--only", "keras", "--layers", "lstm,gru")
    assert result.exit_code == 4
    assert "has no gru source" in result.stderr and "--layers convlstm,lstm" in result.stderr
    assert tree_hashes(site) == before
    status = cli_at(site, "status", "--only", "keras")
    assert "this version supports convlstm, lstm" in status.stdout


@pytest.mark.parametrize("value", ["lstm,rnn", ","])
def test_bad_layers_value_is_a_usage_error(site, value):
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--layers", value)
    assert result.exit_code == 2
    assert tree_hashes(site) == before


@pytest.mark.parametrize("command", ["revert", "status", "verify", "check", "diff", "clean"])
def test_layers_where_it_no_longer_means_anything_names_the_new_way(site, command):
    before = tree_hashes(site)
    result = cli_at(site, command, "--layers", "gru")
    assert result.exit_code == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"`{command} --layers` is gone" in line and "`convlstm-patch apply --layers SETS`" in line, line
    assert tree_hashes(site) == before


def test_check_compares_every_applied_set_with_the_lock(site):
    pristine = cli_at(site, "check", "--json", "--strict")
    assert pristine.exit_code == 0, pristine.output
    assert [(r["status"], r["state"]) for r in json.loads(pristine.stdout)["results"]] == [("ok", "pristine")] * 2
    assert cli_at(site, "apply", "--no-verify", "--layers", ALL).exit_code == 0
    # check covers the sets the backup records.
    patched = cli_at(site, "check", "--json", "--strict")
    assert patched.exit_code == 0, patched.output
    assert [(r["status"], r["state"]) for r in json.loads(patched.stdout)["results"]] == [("ok", "patched")] * 2
    gru = site / "keras/src/layers/rnn/gru.py"
    gru.write_text(gru.read_text() + "\n# tweak\n")
    drift = cli_at(site, "check", "--only", "keras")
    assert drift.exit_code == 1
    assert "keras/src/layers/rnn/gru.py: live file is modified" in drift.stdout


def test_apply_with_fewer_sets_puts_the_others_back_as_pip_installed_them(site):
    """`apply --layers` is declarative: the environment ends with exactly the sets named."""
    pristine = tree_hashes(site)
    keras = flavours(site)["keras"]
    record = {target.relative: target.record_sha256 for target in keras.files}
    assert cli_at(site, "apply", "--no-verify", "--only", "keras", "--layers", ALL).exit_code == 0
    fewer = cli_at(site, "apply", "--no-verify", "--only", "keras", "--layers", "convlstm,lstm")
    assert fewer.exit_code == 0, fewer.output
    assert "put back as pip installed them: gru (not in --layers)" in fewer.stderr, fewer.output
    gru = "keras/src/layers/rnn/gru.py"
    assert sha256_of(site / gru) == record[gru]
    (status,) = json.loads(cli_at(site, "status", "--json", "--only", "keras").stdout)["flavours"]
    assert status["state"] == "patched" and status["layer_sets"]["patched"] == ["convlstm", "lstm"]
    assert status["layer_sets"]["chosen"] == ["convlstm", "lstm"]
    convlstm_only = cli_at(site, "apply", "--no-verify", "--only", "keras", "--layers", "convlstm")
    assert convlstm_only.exit_code == 0, convlstm_only.output
    unpatched = [t.relative for t in keras.files if LayerSet.CONVLSTM not in t.layer_sets]
    assert all(sha256_of(site / relative) == record[relative] for relative in unpatched)  # lstm.py as pip installed it
    (status,) = json.loads(cli_at(site, "status", "--json", "--only", "keras").stdout)["flavours"]
    assert status["layer_sets"]["patched"] == ["convlstm"] and status["layer_sets"]["chosen"] == []
    again = cli_at(site, "apply", "--no-verify", "--only", "keras")  # plain apply: the sets chosen (ConvLSTM)
    assert "already patched" in again.stdout, again.output
    rest = cli_at(site, "revert", "--only", "keras")
    assert rest.exit_code == 0, rest.output
    assert tree_hashes(site) == pristine


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
