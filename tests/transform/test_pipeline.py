"""pipeline: every transformer over one minimal module; a missing essential edit
raises, a missing docstring anchor warns."""

import pytest
from transform_helpers import MARKER, TARGETS, assert_documented_after_anchor, class_docstring

from patcher.layersets import LayerSet
from patcher.marker import marker_text
from patcher.transform.pipeline import TransformError, transform_source

MODULE = '''
from keras import activations


class Cell(Layer):
    """Cell.

    Args:
        activation: Activation function.
        recurrent_activation: Activation function for the recurrent step.
    """

    def __init__(self, filters, activation="tanh", recurrent_activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)

    def call(self, inputs, states):
        h_tm1, c_tm1 = states
        i = self.recurrent_activation(x_i + h_i)
        f = self.recurrent_activation(x_f + h_f)
        c = f * c_tm1 + i * self.activation(x_c + h_c)
        o = self.recurrent_activation(x_o + h_o)
        h = o * self.activation(c)
        return h, [h, c]

    def get_config(self):
        config = {
            "filters": self.filters,
            "activation": activations.serialize(self.activation),
        }
        return {**super().get_config(), **config}


class Layer(RNN):
    """Layer.

    Args:
        recurrent_activation: Activation function the layer's cell uses.
    """

    def __init__(self, filters, activation="tanh", recurrent_activation="sigmoid", **kwargs):
        cell = Cell(
            filters,
            activation=activation,
            recurrent_activation=recurrent_activation,
        )
        super().__init__(cell, **kwargs)

    @property
    def recurrent_activation(self):
        return self.cell.recurrent_activation

    def get_config(self):
        config = {
            "filters": self.filters,
            "activation": activations.serialize(self.activation),
        }
        return {**super().get_config(), **config}
'''.lstrip("\n")


LAYER_ANCHOR = "        recurrent_activation: Activation function the layer's cell uses."


GATE_LINES = {
    "i": "i = self.recurrent_activation(x_i + h_i)",
    "f": "f = self.recurrent_activation(x_f + h_f)",
    "c": "c = f * c_tm1 + i * self.activation(x_c + h_c)",
    "o": "o = self.recurrent_activation(x_o + h_o)",
    "h": "h = o * self.activation(c)",
}


def without(text, old, new="pass"):
    assert old in text
    return text.replace(old, new)


def test_pipeline_patches_the_minimal_module():
    result = transform_source(MODULE, TARGETS)
    assert result.warnings == ()
    assert result.code.splitlines()[0] == MARKER
    compile(result.code, "module.py", "exec")
    for class_name in TARGETS:
        assert_documented_after_anchor(class_docstring(result.code, class_name))


def test_pipeline_is_idempotent():
    once = transform_source(MODULE, TARGETS).code
    assert transform_source(once, TARGETS).code == once


@pytest.mark.parametrize("gate", GATE_LINES)
def test_pipeline_fails_when_a_gate_is_missing(gate):
    source = without(MODULE, GATE_LINES[gate], f"{gate} = compute()")
    with pytest.raises(TransformError, match=rf"class Cell\b.*gate {gate}"):
        transform_source(source, TARGETS)


def test_pipeline_fails_when_cell_has_no_gate_equations():
    source = MODULE
    for line in GATE_LINES.values():
        source = without(source, line)
    with pytest.raises(TransformError, match=r"class Cell\b"):
        transform_source(source, TARGETS)


@pytest.mark.parametrize(
    "old, new, class_name",
    [
        pytest.param(
            "self.recurrent_activation = activations.get(recurrent_activation)",
            "self.recurrent_activation = recurrent_activation",
            "Cell",
            id="no-resolve-anchor",
        ),
        pytest.param('"activation": activations.serialize', '"act": activations.serialize', "Cell", id="no-config"),
        pytest.param(
            "recurrent_activation=recurrent_activation,\n        )",
            "recurrent_activation=activations.get(recurrent_activation),\n        )",
            "Layer",
            id="no-forwarding",
        ),
    ],
)
def test_pipeline_fails_on_other_missing_essential_edits(old, new, class_name):
    with pytest.raises(TransformError, match=rf"class {class_name}\b"):
        transform_source(without(MODULE, old, new), TARGETS)


def test_pipeline_warns_when_docstring_lacks_anchor():
    source = without(MODULE, LAYER_ANCHOR, "        activation: Activation function.")
    result = transform_source(source, TARGETS)
    assert len(result.warnings) == 1
    assert "class Layer" in result.warnings[0]
    assert "recurrent_activation:" in result.warnings[0]
    assert "activation_i=activation_i" in result.code


def test_pipeline_rejects_a_syntax_error():
    with pytest.raises(TransformError, match="does not parse"):
        transform_source(without(MODULE, "def call(self, inputs, states):", "def call(self, inputs, states)"), TARGETS)


def test_lstm_set_requires_the_fused_guard():
    # MODULE's layer has no fused path: fine for ConvLSTM, not for LSTM.
    with pytest.raises(TransformError, match=r"class Layer\b.*fused guard"):
        transform_source(MODULE, TARGETS, layer_sets=[LayerSet.LSTM])
    anchor = "    @property\n    def recurrent_activation(self):\n        return self.cell.recurrent_activation\n"
    guarded = MODULE.replace(
        anchor,
        anchor
        + '\n    def inner_loop(self, sequences):\n        if self.use_cudnn in ("auto", True):\n            return backend.lstm(sequences)\n',
    )
    assert guarded != MODULE
    code = transform_source(guarded, TARGETS, layer_sets=[LayerSet.LSTM]).code
    assert 'if self.use_cudnn in ("auto", True) and not self.cell._overriding_activations:' in code
    assert "self._overriding_activations = tuple(" in code
    assert code.splitlines()[0] == marker_text(["lstm"])


def keras3_lstm_module():
    """MODULE as Keras 3's lstm.py has it: importing backend and ops, calling backend.lstm."""
    anchor = "    @property\n    def recurrent_activation(self):\n        return self.cell.recurrent_activation\n"
    inner_loop = (
        "\n    def inner_loop(self, sequences, initial_state, mask, training=False):\n"
        '        if self.use_cudnn in ("auto", True):\n'
        "            try:\n"
        "                return backend.lstm(sequences, initial_state[0], initial_state[1], mask)\n"
        "            except NotImplementedError:\n"
        "                pass\n"
        "        return super().inner_loop(sequences, initial_state, mask=mask, training=training)\n"
    )
    module = without(MODULE, anchor, anchor + inner_loop)
    return without(
        module, "from keras import activations\n", "from keras import activations\nfrom keras.src import backend, ops\n"
    )


def test_lstm_layer_calls_its_per_gate_loop():
    code = transform_source(keras3_lstm_module(), TARGETS, layer_sets=[LayerSet.LSTM]).code
    assert "return (backend.lstm if not self.cell._overriding_activations else self._per_gate_lstm)(" in code
    assert 'if self.use_cudnn in ("auto", True):' in code  # stock's branch, unguarded
    assert code.count("    def _per_gate_lstm(") == 1
    assert code.index("    def inner_loop(") < code.index("    def _per_gate_lstm(")
    assert transform_source(code, TARGETS, layer_sets=[LayerSet.LSTM]).code == code


def test_per_gate_call_requires_its_loop(monkeypatch):
    from patcher.transform import per_gate_loop

    monkeypatch.delitem(per_gate_loop.LOOPS, "lstm")
    # Not the text of the test above: the transform caches its results by source.
    source = keras3_lstm_module().replace("Layer.", "Layer without its loop.")
    with pytest.raises(TransformError, match=r"class Layer\b.*per-gate loop"):
        transform_source(source, TARGETS, layer_sets=[LayerSet.LSTM])


# Bidirectional's shape (Keras 3.15): a wrapper serves the LSTM and the GRU sets.
WRAPPER_MODULE = """
from keras.src import backend


class Bidirectional(Layer):
    def call(self, sequences, initial_state=None, mask=None):
        if self._can_attempt_fused_lstm(mask, initial_state):
            return self._call_fused_lstm(sequences)
        if self._can_attempt_fused_gru(mask, initial_state):
            return self._call_fused_gru(sequences)
        return self.forward_layer(sequences)

    def _can_attempt_fused_lstm(self, mask, initial_state):
        return mask is None

    def _call_fused_lstm(self, sequences):
        return backend.bidirectional_lstm(sequences, self.forward_layer.cell.kernel, self.backward_layer.cell.kernel)

    def _can_attempt_fused_gru(self, mask, initial_state):
        return mask is None

    def _call_fused_gru(self, sequences):
        return backend.bidirectional_gru(sequences, self.forward_layer.cell.kernel, self.backward_layer.cell.kernel)
"""
WRAPPER_TARGETS = {"Bidirectional": "wrapper"}
LSTM_BRANCH = "if self._can_attempt_fused_lstm(mask, initial_state):"
GRU_BRANCH = "if self._can_attempt_fused_gru(mask, initial_state):"


@pytest.mark.parametrize(
    ("layer_sets", "guarded", "unguarded"),
    [
        pytest.param([LayerSet.LSTM], [LSTM_BRANCH], [GRU_BRANCH], id="lstm"),
        pytest.param([LayerSet.GRU], [GRU_BRANCH], [LSTM_BRANCH], id="gru"),
        pytest.param([LayerSet.GRU, LayerSet.LSTM], [LSTM_BRANCH, GRU_BRANCH], [], id="both"),
    ],
)
def test_wrapper_gets_the_union_of_its_sets_edits(layer_sets, guarded, unguarded):
    result = transform_source(WRAPPER_MODULE, WRAPPER_TARGETS, layer_sets=layer_sets)
    assert result.warnings == ()
    for branch in guarded:
        assert branch not in result.code
        test = branch.removeprefix("if ").removesuffix(":")
        assert f"if (\n            {test}\n            and not getattr(getattr(self.forward_layer" in result.code
    for branch in unguarded:
        assert branch in result.code
    assert result.code.count("_overriding_activations") == 2 * len(guarded)
    assert result.code.splitlines()[0] == marker_text(layer_sets)
    assert transform_source(result.code, WRAPPER_TARGETS, layer_sets=layer_sets).code == result.code


def test_marker_names_every_set_of_a_file():
    code = transform_source(WRAPPER_MODULE, WRAPPER_TARGETS, layer_sets=[LayerSet.GRU, LayerSet.LSTM]).code
    marker = code.splitlines()[0]
    assert "LSTM takes five activations; GRU takes separate update and reset gate activations" in marker
    # A file patched for LSTM and then for GRU as well names both, once.
    lstm_only = transform_source(WRAPPER_MODULE, WRAPPER_TARGETS, layer_sets=[LayerSet.LSTM]).code
    then_gru = transform_source(lstm_only, WRAPPER_TARGETS, layer_sets=[LayerSet.GRU]).code
    assert then_gru == code


@pytest.mark.parametrize(
    ("old", "missing"),
    [
        pytest.param("backend.bidirectional_gru(", "gru", id="no-gru-kernel"),
        pytest.param("backend.bidirectional_lstm(", "lstm", id="no-lstm-kernel"),
    ],
)
def test_wrapper_requires_a_guard_for_each_set(old, missing):
    source = without(WRAPPER_MODULE, old, "backend.concatenate(")
    with pytest.raises(TransformError, match=rf"class Bidirectional\b.*fused guard \({missing}\)"):
        transform_source(source, WRAPPER_TARGETS, layer_sets=[LayerSet.LSTM, LayerSet.GRU])


def test_wrapper_requires_layers_to_guard():
    """A fused call that reads no `self.<layer>.cell` leaves nothing to guard: refused, not guessed."""
    source = WRAPPER_MODULE.replace("self.forward_layer.cell.kernel, self.backward_layer.cell.kernel", "self.kernels")
    with pytest.raises(TransformError, match=r"class Bidirectional\b.*fused guard \(lstm\)"):
        transform_source(source, WRAPPER_TARGETS, layer_sets=[LayerSet.LSTM])


def test_cells_and_layers_belong_to_one_set():
    with pytest.raises(ValueError, match="exactly one layer set"):
        transform_source(MODULE, TARGETS, layer_sets=[LayerSet.LSTM, LayerSet.GRU])
