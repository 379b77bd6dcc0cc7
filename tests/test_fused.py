"""patcher/fused.py: the guard's text and how it is recognised; which dotted names
are fused-kernel entry points; patches/fused.toml's data."""

import ast

import pytest

from patcher.fused import (
    Names,
    conjunct,
    entry_point,
    entry_uses,
    is_guard,
    own_cell_guard,
    per_gate_callee,
    per_gate_loop_method,
    wrapped_layer_guard,
)
from patcher.layersets import LayerSet
from patcher.spec import EntryKind, fused_kernels


def expression(code):
    return ast.parse(code, mode="eval").body


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(conjunct(own_cell_guard()), id="own-cell"),
        pytest.param(conjunct(own_cell_guard("self.forward_layer")), id="own-cell-of-another-layer"),
        pytest.param(conjunct(wrapped_layer_guard("self.forward_layer")), id="wrapped-layer"),
        pytest.param(conjunct(wrapped_layer_guard("layers[0]")), id="wrapped-layer-any-expression"),
        pytest.param(
            "not getattr(getattr(self.backward_layer, 'cell', None), '_overriding_activations', ())",
            id="other-quotes",
        ),
    ],
)
def test_is_guard(code):
    assert is_guard(expression(code))


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(own_cell_guard(), id="without-not"),
        pytest.param("not self.cell._explicit_activations", id="explicit-is-not-overriding"),
        pytest.param("not self._overriding_activations", id="no-cell"),
        pytest.param("not self.cell.recurrent_activation", id="other-attribute"),
        pytest.param(
            'not getattr(getattr(self.forward_layer, "cell", None), "_explicit_activations", ())', id="other-getattr"
        ),
        pytest.param('not getattr(self.forward_layer, "_overriding_activations", ())', id="one-getattr"),
        pytest.param("not (self.cell._overriding_activations or x)", id="inside-another-test"),
    ],
)
def test_is_not_guard(code):
    assert not is_guard(expression(code))


@pytest.mark.parametrize(
    ("dotted", "name"),
    [
        ("keras.src.backend.lstm", "lstm"),
        ("keras.src.backend.rnn.lstm", "lstm"),
        ("keras.src.backend.tensorflow.rnn.gru", "gru"),
        ("backend.bidirectional_gru", "bidirectional_gru"),
        ("backend.rnn.cudnn_ok", "cudnn_ok"),
        ("tf_keras.src.layers.rnn.lstm.standard_lstm", "standard_lstm"),
        ("lstm.lstm_with_backend_selection", "lstm_with_backend_selection"),
        ("?.defun_layer", "defun_layer"),
        ("tf.raw_ops.CudnnRNNV3", "CudnnRNN"),
        ("tensorflow.python.ops.gen_cudnn_rnn_ops", "gen_cudnn_rnn_ops"),
        ("self._could_use_gpu_kernel", "_could_use_gpu_kernel"),
    ],
)
def test_entry_point(dotted, name):
    assert entry_point(dotted).name == name


@pytest.mark.parametrize(
    "dotted",
    [
        "keras.src.backend.rnn",  # the generic step loop
        "keras.src.backend.rnn.rnn",
        "tf_keras.src.layers.rnn.lstm",  # a module named lstm
        "lstm",
        "layers.gru",
        "keras.src.backend.lstm_cell",
        "keras.src.backend",
    ],
)
def test_not_entry_point(dotted):
    assert entry_point(dotted) is None


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        pytest.param("from keras.src import backend as K\nK.lstm(x)", ["K.lstm"], id="module-alias"),
        pytest.param("from keras.src.backend import lstm as fused\nfused(x)", ["fused"], id="function-alias"),
        pytest.param("import keras.src.backend as kb\nkb.rnn.gru(x)", ["kb.rnn.gru"], id="import-as"),
        pytest.param("import keras.src.backend\nkeras.src.backend.gru(x)", ["keras.src.backend.gru"], id="import"),
        pytest.param("from keras.src import backend\nK = backend\nK.lstm(x)", ["K.lstm"], id="assigned-alias"),
        pytest.param("from keras.src.backend import *\nlstm(x)", ["lstm"], id="star-import"),
        pytest.param("from .. import backend\nbackend.lstm(x)", ["backend.lstm"], id="relative-import"),
        pytest.param(
            'from keras.src import backend\ngetattr(backend, "gru")(x)', ["getattr(backend, 'gru')"], id="getattr"
        ),
        pytest.param("from keras.src import backend\nbackend.rnn(step, x)", [], id="generic-loop"),
        pytest.param("from tf_keras.src.layers.rnn import lstm\nlstm.LSTM(4)", [], id="module-named-lstm"),
        pytest.param(
            "self._could_use_gpu_kernel = True\nif self._could_use_gpu_kernel: pass",
            ["self._could_use_gpu_kernel"],
            id="flag-assigned-not-read",
        ),
    ],
)
def test_entry_uses(module, expected):
    tree = ast.parse(module)
    nodes = list(ast.walk(tree))
    assert [ast.unparse(node) for node, _ in entry_uses(nodes, Names(nodes))] == expected


def test_fused_toml():
    kernels = fused_kernels()
    names = {entry.name for entry in kernels.entries}
    assert {"lstm", "gru", "bidirectional_lstm", "bidirectional_gru", "cudnn_ok", "standard_lstm", "gpu_gru"} <= names
    by_name = {entry.name: entry for entry in kernels.entries}
    assert by_name["bidirectional_lstm"].sets == {LayerSet.LSTM} and by_name["gru"].sets == {LayerSet.GRU}
    assert by_name["cudnn_ok"].kind == EntryKind.PREDICATE and by_name["_could_use_gpu_kernel"].kind == EntryKind.FLAG
    assert all(exemption.reason for exemption in (*kernels.kernel_definitions, *kernels.allowed))
    assert {exemption.scope for exemption in kernels.allowed} == {"CuDNNLSTM", "CuDNNGRU"}


@pytest.mark.parametrize(
    ("name", "layer_set", "has"),
    [
        pytest.param("lstm", LayerSet.LSTM, True, id="lstm"),
        pytest.param("gru", LayerSet.GRU, True, id="gru"),
        pytest.param("lstm", LayerSet.GRU, False, id="another-sets-kernel"),
        pytest.param("bidirectional_lstm", LayerSet.LSTM, False, id="bidirectional"),
        pytest.param("standard_lstm", LayerSet.LSTM, False, id="tf_keras"),
        pytest.param("cudnn_ok", LayerSet.LSTM, False, id="predicate"),
    ],
)
def test_per_gate_loop(name, layer_set, has):
    entry = {entry.name: entry for entry in fused_kernels().entries}[name]
    assert entry.has_per_gate_loop(layer_set) is has


def test_per_gate_callee_is_guarded():
    """The call a Keras 3 layer makes instead of the kernel: the kernel only under the guard."""
    entry = entry_point("keras.src.backend.lstm")
    callee = expression(per_gate_callee("backend.lstm", entry))
    assert isinstance(callee, ast.IfExp) and is_guard(callee.test)
    assert ast.unparse(callee.body) == "backend.lstm"
    assert ast.unparse(callee.orelse) == f"self.{per_gate_loop_method(entry)}" == "self._per_gate_lstm"
