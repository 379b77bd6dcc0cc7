"""per_gate_loop: a Keras 3 LSTM/GRU layer that calls ``self._per_gate_lstm`` (fused_guard.py
writes the call) gains that method, after the method calling it, computing each gate with
the parameter that sets it.

`test_noop`: snippets the transformer must leave as they are; `test_fix`: before and after
(each after is also checked to be a fixed point). What the loops compute is checked against
the NumPy reference by the LSTM/GRU probe under PyTorch (tests/keras/test_verify_rnn.py).
"""

import ast

import pytest
from transform_helpers import apply, assert_transforms, assert_unchanged, dedent

from patcher.layersets import LayerSet
from patcher.spec import fused_kernels, parameters
from patcher.transform.per_gate_loop import LOOPS, PerGateLoopTransformer

LSTM_PARAMS = parameters(LayerSet.LSTM)
GRU_PARAMS = parameters(LayerSet.GRU)
TARGETS = {"Cell": "cell", "Layer": "layer"}

CALLER = """
class Cell:
    def call(self, inputs, states):
        return self._per_gate_lstm(inputs)


class Layer:
    def inner_loop(self, sequences, initial_state, mask, training=False):
        try:
            return (backend.{kernel} if not self.cell._overriding_activations else self._per_gate_{kernel})(sequences)
        except NotImplementedError:
            pass
        return super().inner_loop(sequences, initial_state, mask=mask)

    def call(self, sequences):
        return super().call(sequences)
"""
LSTM_BEFORE = CALLER.format(kernel="lstm")
GRU_BEFORE = CALLER.format(kernel="gru")
# The gates' parameters as parameters.toml names them, written out: the loop's text is the
# transformer's own, where each gate's function comes from is what these cases pin down.
LSTM_GATES = {
    "i": "recurrent_activation_i",
    "f": "recurrent_activation_f",
    "c": "activation_i",
    "o": "recurrent_activation_o",
    "h": "activation_o",
}
GRU_GATES = {"z": "recurrent_activation_z", "r": "recurrent_activation_r"}


def with_loop(before, kernel, gates):
    """``before`` with the loop after inner_loop (the cell, not a layer, gains nothing)."""
    anchor = "        return super().inner_loop(sequences, initial_state, mask=mask)\n"
    loop = dedent(LOOPS[kernel].format(method=f"_per_gate_{kernel}", **gates))
    loop = "".join(f"    {line}" if line.strip() else line for line in loop.splitlines(keepends=True))
    return before.replace(anchor, anchor + "\n" + loop)


LSTM_AFTER = with_loop(LSTM_BEFORE, "lstm", LSTM_GATES)
GRU_AFTER = with_loop(GRU_BEFORE, "gru", GRU_GATES)


@pytest.mark.parametrize(
    ("code", "targets", "params"),
    [
        pytest.param(
            LSTM_BEFORE.replace("self._per_gate_lstm)", "self._fast)"), TARGETS, LSTM_PARAMS, id="no-loop-called"
        ),
        pytest.param(LSTM_BEFORE.replace("_per_gate_lstm", "_per_gate_lstm_"), TARGETS, LSTM_PARAMS, id="other-method"),
        pytest.param(LSTM_BEFORE, {"Cell": "cell", "Layer": "cell"}, LSTM_PARAMS, id="cells-only"),
        pytest.param(LSTM_BEFORE, {"Cell": "cell"}, LSTM_PARAMS, id="layer-not-a-target"),
        # The GRU set's parameters lack LSTM's gates: nothing to write (the pipeline refuses).
        pytest.param(LSTM_BEFORE, TARGETS, GRU_PARAMS, id="parameters-without-its-gates"),
    ],
)
def test_noop(code, targets, params):
    assert_unchanged(PerGateLoopTransformer, code, targets, params)


@pytest.mark.parametrize(
    ("before", "after", "params"),
    [
        pytest.param(LSTM_BEFORE, LSTM_AFTER, LSTM_PARAMS, id="lstm"),
        pytest.param(GRU_BEFORE, GRU_AFTER, GRU_PARAMS, id="gru"),
    ],
)
def test_fix(before, after, params):
    assert_transforms(PerGateLoopTransformer, before, after, TARGETS, params)


@pytest.mark.parametrize(
    ("before", "params", "lines"),
    [
        pytest.param(
            LSTM_BEFORE,
            LSTM_PARAMS,
            [
                "i = cell.recurrent_activation_i(z_i)",
                "f = cell.recurrent_activation_f(z_f)",
                "c = f * c + i * cell.activation_i(z_c)",
                "h = cell.recurrent_activation_o(z_o) * cell.activation_o(c)",
            ],
            id="lstm",
        ),
        pytest.param(
            GRU_BEFORE,
            GRU_PARAMS,
            [
                "z = cell.recurrent_activation_z(x_z + h_z)",
                "r = cell.recurrent_activation_r(x_r + h_r)",
                "hh = cell.activation(x_h + r * h_h)",
            ],
            id="gru",
        ),
    ],
)
def test_each_gate_takes_its_parameter(before, params, lines):
    code, _ = apply(PerGateLoopTransformer, before, TARGETS, params)
    ast.parse(code)
    for line in lines:
        assert line in code


def test_counts_the_loop():
    for code in (LSTM_BEFORE, LSTM_AFTER):
        _, edits = apply(PerGateLoopTransformer, code, TARGETS, LSTM_PARAMS)
        assert edits == {("Layer", "per-gate loop"): 1}


def test_a_loop_for_each_kernel_that_has_one():
    """fused.toml's per_gate_loop entries and the loops written here name the same kernels."""
    assert set(LOOPS) == {entry.name for entry in fused_kernels().entries if entry.per_gate_loop}
