"""pipeline: every transformer over one minimal module; a missing essential edit
raises, a missing docstring anchor warns."""

import pytest

from patcher.transform.pipeline import TransformError, transform_source
from transform_helpers import MARKER, TARGETS, VERSION, assert_documented_after_anchor, class_docstring


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
    result = transform_source(MODULE, TARGETS, version=VERSION)
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
    from patcher.layersets import LayerSet

    # MODULE's layer has no fused path: fine for ConvLSTM, not for LSTM.
    with pytest.raises(TransformError, match=r"class Layer\b.*fused guard"):
        transform_source(MODULE, TARGETS, VERSION, layer_sets=(LayerSet.LSTM,))
    anchor = "    @property\n    def recurrent_activation(self):\n        return self.cell.recurrent_activation\n"
    guarded = MODULE.replace(
        anchor,
        anchor + '\n    def inner_loop(self, sequences):\n        if self.use_cudnn in ("auto", True):\n            return backend.lstm(sequences)\n',
    )
    assert guarded != MODULE
    code = transform_source(guarded, TARGETS, VERSION, layer_sets=(LayerSet.LSTM,)).code
    assert 'if self.use_cudnn in ("auto", True) and not self.cell._explicit_activations:' in code
    assert "LSTM takes five activations" in code
