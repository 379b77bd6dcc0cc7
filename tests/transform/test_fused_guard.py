"""fused_guard: LSTM/GRU take their fused kernels only without per-gate activations.

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

import pytest

from patcher.layersets import LayerSet
from patcher.spec import parameters
from patcher.transform.fused_guard import FusedGuardTransformer
from transform_helpers import apply, assert_transforms, assert_unchanged

PARAMS = parameters(LayerSet.LSTM)

TF_KERAS_BEFORE = """
class Layer:
    def __init__(self, cell, recurrent_dropout=0, use_bias=True):
        self._could_use_gpu_kernel = (
            self.activation in (activations.tanh, tf.tanh)
            and use_bias
        )
"""

TF_KERAS_AFTER = """
class Layer:
    def __init__(self, cell, recurrent_dropout=0, use_bias=True):
        self._could_use_gpu_kernel = (
            self.activation in (activations.tanh, tf.tanh)
            and use_bias
        ) and not self.cell._explicit_activations
"""

KERAS3_BEFORE = """
class Layer:
    def inner_loop(self, sequences, initial_state, mask, training=False):
        if self.use_cudnn in ("auto", True):
            return backend.lstm(sequences)
        if self.use_cudnn is True:
            raise ValueError("use_cudnn=True was specified")
        return super().inner_loop(sequences, initial_state, mask=mask)
"""

KERAS3_AFTER = """
class Layer:
    def inner_loop(self, sequences, initial_state, mask, training=False):
        if self.use_cudnn in ("auto", True) and not self.cell._explicit_activations:
            return backend.lstm(sequences)
        if self.use_cudnn is True:
            raise ValueError("use_cudnn=True was specified")
        return super().inner_loop(sequences, initial_state, mask=mask)
"""


@pytest.mark.parametrize(
    ("code", "targets"),
    [
        pytest.param(TF_KERAS_BEFORE, {"Other": "layer"}, id="non-target"),
        pytest.param(TF_KERAS_BEFORE, {"Layer": "cell"}, id="cell-role"),
        pytest.param(KERAS3_BEFORE.replace("inner_loop", "call"), {"Layer": "layer"}, id="other-method"),
        pytest.param(
            KERAS3_BEFORE.replace("backend.lstm(sequences)", "self.fast(sequences)"), {"Layer": "layer"}, id="no-backend-call"
        ),
        pytest.param(
            TF_KERAS_BEFORE.replace("self._could_use_gpu_kernel", "self._use_gpu"), {"Layer": "layer"}, id="other-flag"
        ),
    ],
)
def test_noop(code, targets):
    assert_unchanged(FusedGuardTransformer, code, targets, PARAMS)


KERAS30_BEFORE = """
class Layer:
    def inner_loop(self, sequences, initial_state, mask, training=False):
        if tree.is_nested(mask):
            mask = mask[0]
        if not self.dropout and not self.recurrent_dropout:
            try:
                return backend.gru(sequences)
            except NotImplementedError:
                pass
        return super().inner_loop(sequences, initial_state, mask=mask)
"""

KERAS30_AFTER = KERAS30_BEFORE.replace(
    "if not self.dropout and not self.recurrent_dropout:",
    "if not self.dropout and not self.recurrent_dropout and not self.cell._explicit_activations:",
)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(TF_KERAS_BEFORE, TF_KERAS_AFTER, id="tf_keras-could-use-gpu-kernel"),
        pytest.param(KERAS3_BEFORE, KERAS3_AFTER, id="keras3-inner-loop"),
        pytest.param(KERAS30_BEFORE, KERAS30_AFTER, id="keras-3.0-inner-loop"),
    ],
)
def test_fix(before, after):
    assert_transforms(FusedGuardTransformer, before, after, {"Layer": "layer"}, PARAMS)


@pytest.mark.parametrize("code", [KERAS3_BEFORE, KERAS3_AFTER, KERAS30_BEFORE, TF_KERAS_BEFORE, TF_KERAS_AFTER])
def test_counts_the_guard(code):
    _, edits = apply(FusedGuardTransformer, code, {"Layer": "layer"}, PARAMS)
    assert edits == {("Layer", "fused guard"): 1}
