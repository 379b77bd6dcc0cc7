"""fused_guard: LSTM/GRU (and wrappers holding them) take their fused kernels
only when no per-gate activation overrides the function it inherits.

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

from functools import partial

import pytest
from transform_helpers import apply, assert_transforms, assert_unchanged, dedent

from patcher.layersets import LayerSet
from patcher.spec import parameters
from patcher.transform.fused_guard import FusedGuardTransformer

LSTM_GUARD = partial(FusedGuardTransformer, layer_set=LayerSet.LSTM)
GRU_GUARD = partial(FusedGuardTransformer, layer_set=LayerSet.GRU)
PARAMS = parameters(LayerSet.LSTM)
LAYER = {"Layer": "layer"}
WRAPPER = {"Wrapper": "wrapper"}
OWN = "not self.cell._overriding_activations"
FORWARD = 'not getattr(getattr(self.forward_layer, "cell", None), "_overriding_activations", ())'
BACKWARD = 'not getattr(getattr(self.backward_layer, "cell", None), "_overriding_activations", ())'

TF_KERAS_BEFORE = """
class Layer:
    def __init__(self, cell, recurrent_dropout=0, use_bias=True):
        self._could_use_gpu_kernel = (
            self.activation in (activations.tanh, tf.tanh)
            and use_bias
        )

    def _defun_call(self, inputs):
        if gru_lstm_utils.use_new_gru_lstm_impl():
            return self._defun_wrapper.defun_layer(inputs)
        return gpu_gru(inputs)
"""

TF_KERAS_AFTER = TF_KERAS_BEFORE.replace(
    "            and use_bias\n", f"            and use_bias\n            and {OWN}\n"
)

KERAS3_BEFORE = """
class Layer:
    def inner_loop(self, sequences, initial_state, mask, training=False):
        if tree.is_nested(mask):
            mask = mask[0]
        if self.use_cudnn in ("auto", True):
            return backend.lstm(sequences)
        if self.use_cudnn is True:
            raise ValueError("use_cudnn=True was specified")
        return super().inner_loop(sequences, initial_state, mask=mask)
"""

KERAS3_AFTER = KERAS3_BEFORE.replace(
    'if self.use_cudnn in ("auto", True):', f'if self.use_cudnn in ("auto", True) and {OWN}:'
)

KERAS30_BEFORE = """
class Layer:
    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self.dropout and not self.recurrent_dropout:
            try:
                return backend.gru(sequences)
            except NotImplementedError:
                pass
        return super().inner_loop(sequences, initial_state, mask=mask)
"""

KERAS30_AFTER = KERAS30_BEFORE.replace(
    "if not self.dropout and not self.recurrent_dropout:",
    f"if not self.dropout and not self.recurrent_dropout and {OWN}:",
)

# Keras 3.3+: LSTM.__init__ marks the layer not jit-compilable when cuDNN will run.
CUDNN_OK_BEFORE = """
class Layer:
    def __init__(self, units, use_cudnn="auto"):
        cell = Cell(units)
        super().__init__(cell)
        if (
            backend.backend() == "tensorflow"
            and backend.cudnn_ok(
                cell.activation,
                cell.recurrent_activation,
            )
            and use_cudnn in (True, "auto")
        ):
            self.supports_jit = False
"""

CUDNN_OK_AFTER = CUDNN_OK_BEFORE.replace(
    '            and use_cudnn in (True, "auto")\n',
    f'            and use_cudnn in (True, "auto")\n            and {OWN}\n',
)

# Keras 3.0-3.2: the same test, unparenthesised.
CUDNN_OK_30_BEFORE = """
class Layer:
    def __init__(self, units):
        cell = Cell(units)
        super().__init__(cell)
        if backend.backend() == "tensorflow" and backend.cudnn_ok(
            cell.activation,
            cell.recurrent_activation,
        ):
            self.supports_jit = False
"""

CUDNN_OK_30_AFTER = CUDNN_OK_30_BEFORE.replace("        ):\n", f"        ) and {OWN}:\n")

# keras-nightly (3.16): the kernels moved to backend.rnn.
NIGHTLY_BEFORE = """
class Layer:
    def __init__(self, units):
        super().__init__(Cell(units))
        if backend.rnn.cudnn_ok(self.cell.activation):
            self.supports_jit = False

    def inner_loop(self, sequences):
        if self.use_cudnn in ("auto", True):
            return backend.rnn.lstm(sequences)
        return backend.rnn.rnn(self.step, sequences)
"""

NIGHTLY_AFTER = NIGHTLY_BEFORE.replace(
    "if backend.rnn.cudnn_ok(self.cell.activation):", f"if backend.rnn.cudnn_ok(self.cell.activation) and {OWN}:"
).replace('if self.use_cudnn in ("auto", True):', f'if self.use_cudnn in ("auto", True) and {OWN}:')


# Keras 3 as it is: lstm.py binds backend and ops, the names the per-gate loop uses, so the
# layer keeps stock's branch and only its call of the kernel is guarded.
LOOP_IMPORTS = "from keras.src import backend\nfrom keras.src import ops\n\n\n"
PER_GATE_LSTM = f"(backend.lstm if {OWN} else self._per_gate_lstm)"

KERAS3_LOOP_BEFORE = (
    LOOP_IMPORTS
    + """class Layer:
    def inner_loop(self, sequences, initial_state, mask, training=False):
        if self.use_cudnn in ("auto", True):
            if not self.recurrent_dropout:
                try:
                    out = backend.lstm(
                        sequences,
                        kernel=self.cell.kernel,
                    )
                    return out
                except NotImplementedError:
                    pass
        return super().inner_loop(sequences, initial_state, mask=mask)
"""
)

KERAS3_LOOP_AFTER = KERAS3_LOOP_BEFORE.replace("out = backend.lstm(", f"out = {PER_GATE_LSTM}(")

KERAS30_LOOP_BEFORE = LOOP_IMPORTS + dedent(KERAS30_BEFORE)
KERAS30_LOOP_AFTER = KERAS30_LOOP_BEFORE.replace(
    "return backend.gru(sequences)", f"return (backend.gru if {OWN} else self._per_gate_gru)(sequences)"
)

# keras-nightly (3.16): the call through backend.rnn; cudnn_ok, a predicate, keeps the branch guard.
NIGHTLY_LOOP_BEFORE = LOOP_IMPORTS + dedent(NIGHTLY_BEFORE)
NIGHTLY_LOOP_AFTER = NIGHTLY_LOOP_BEFORE.replace(
    "if backend.rnn.cudnn_ok(self.cell.activation):", f"if backend.rnn.cudnn_ok(self.cell.activation) and {OWN}:"
).replace(
    "return backend.rnn.lstm(sequences)",
    f"return (backend.rnn.lstm if {OWN} else self._per_gate_lstm)(sequences)",
)


def branch_guarded(before):
    """KERAS3_LOOP_BEFORE changed by ``before``: the branch guarded, the call left alone."""
    return before.replace('if self.use_cudnn in ("auto", True):', f'if self.use_cudnn in ("auto", True) and {OWN}:')


def aliased(imports, call):
    before = f"""
{imports}


class Layer:
    def inner_loop(self, sequences):
        if self.use_cudnn:
            return {call}(sequences)
        return super().inner_loop(sequences)
"""
    return before, before.replace("if self.use_cudnn:", f"if self.use_cudnn and {OWN}:")


# Keras 3.15: Bidirectional runs both directions in one fused call.
WRAPPER_BEFORE = """
class Wrapper:
    def call(self, sequences, initial_state=None, mask=None):
        if self._can_attempt_fused_lstm(mask, initial_state):
            try:
                return self._call_fused_lstm(sequences, initial_state)
            except NotImplementedError:
                pass
        if self._can_attempt_fused_gru(mask, initial_state):
            try:
                return self._call_fused_gru(sequences, initial_state)
            except NotImplementedError:
                pass
        return self.forward_layer(sequences)

    def _can_attempt_fused_lstm(self, mask, initial_state=None):
        return self.forward_layer.cell.activation is self.backward_layer.cell.activation

    def _call_fused_lstm(self, sequences, initial_state):
        fwd_cell = self.forward_layer.cell
        bwd_cell = self.backward_layer.cell
        return backend.bidirectional_lstm(sequences, fwd_cell.kernel, bwd_cell.kernel)

    def _can_attempt_fused_gru(self, mask, initial_state=None):
        return True

    def _call_fused_gru(self, sequences, initial_state):
        return backend.bidirectional_gru(sequences, self.forward_layer.cell.kernel, self.backward_layer.cell.kernel)
"""


def wrapper_after(*kinds):
    """WRAPPER_BEFORE with the branches of these kernels guarded."""
    code = WRAPPER_BEFORE
    for kind in kinds:
        test = f"self._can_attempt_fused_{kind}(mask, initial_state)"
        code = code.replace(
            f"if {test}:",
            f"if (\n            {test}\n            and {FORWARD}\n            and {BACKWARD}\n        ):",
        )
    return code


@pytest.mark.parametrize(
    ("code", "targets", "transformer"),
    [
        pytest.param(KERAS3_BEFORE, {"Other": "layer"}, LSTM_GUARD, id="non-target"),
        pytest.param(KERAS3_BEFORE, {"Layer": "cell"}, LSTM_GUARD, id="cell-role"),
        pytest.param(
            KERAS3_BEFORE.replace("backend.lstm(sequences)", "self.fast(sequences)"),
            LAYER,
            LSTM_GUARD,
            id="no-fused-call",
        ),
        pytest.param(
            KERAS3_BEFORE.replace("backend.lstm(sequences)", "backend.rnn(self.step, sequences)"),
            LAYER,
            LSTM_GUARD,
            id="generic-rnn-loop",
        ),
        pytest.param(
            KERAS3_BEFORE.replace("backend.lstm(sequences)", "layers.lstm(sequences)"),
            LAYER,
            LSTM_GUARD,
            id="lstm-not-from-backend",
        ),
        pytest.param(
            TF_KERAS_BEFORE.replace("self._could_use_gpu_kernel", "self._use_gpu")
            .replace(
                "if gru_lstm_utils.use_new_gru_lstm_impl():\n            return self._defun_wrapper.defun_layer(inputs)\n        ",
                "",
            )
            .replace("return gpu_gru(inputs)", "return inputs"),
            LAYER,
            LSTM_GUARD,
            id="other-flag",
        ),
        pytest.param(
            WRAPPER_BEFORE.replace("backend.bidirectional_lstm", "backend.concatenate"),
            WRAPPER,
            LSTM_GUARD,
            id="wrapper-without-the-sets-kernel",
        ),
        pytest.param(wrapper_after("lstm"), WRAPPER, LSTM_GUARD, id="wrapper-guarded"),
        pytest.param(wrapper_after("gru"), WRAPPER, GRU_GUARD, id="wrapper-gru-guarded"),
        pytest.param(KERAS3_LOOP_AFTER, LAYER, LSTM_GUARD, id="per-gate-call-patched"),
        pytest.param(
            KERAS3_LOOP_AFTER.replace("self._per_gate_lstm", "self._per_gate_lstm_"),
            LAYER,
            LSTM_GUARD,
            id="per-gate-call-other-method-kept",
        ),
    ],
)
def test_noop(code, targets, transformer):
    assert_unchanged(transformer, code, targets, PARAMS)


@pytest.mark.parametrize(
    ("before", "after", "targets", "transformer"),
    [
        # The flag is the decision in tf_keras: the methods reached under it stay as they are.
        pytest.param(TF_KERAS_BEFORE, TF_KERAS_AFTER, LAYER, LSTM_GUARD, id="tf_keras-could-use-gpu-kernel"),
        pytest.param(KERAS3_BEFORE, KERAS3_AFTER, LAYER, LSTM_GUARD, id="keras3-inner-loop"),
        pytest.param(KERAS30_BEFORE, KERAS30_AFTER, LAYER, GRU_GUARD, id="keras-3.0-inner-loop"),
        pytest.param(CUDNN_OK_BEFORE, CUDNN_OK_AFTER, LAYER, LSTM_GUARD, id="keras3-init-cudnn-ok"),
        pytest.param(CUDNN_OK_30_BEFORE, CUDNN_OK_30_AFTER, LAYER, LSTM_GUARD, id="keras-3.0-init-cudnn-ok"),
        pytest.param(NIGHTLY_BEFORE, NIGHTLY_AFTER, LAYER, LSTM_GUARD, id="nightly-backend-rnn-names"),
        pytest.param(*aliased("from keras.src import backend as K", "K.lstm"), LAYER, LSTM_GUARD, id="alias-module"),
        pytest.param(
            *aliased("import keras.src.backend as kb", "kb.rnn.lstm"), LAYER, LSTM_GUARD, id="alias-import-as"
        ),
        pytest.param(
            *aliased("from keras.src.backend import lstm as fused", "fused"), LAYER, LSTM_GUARD, id="alias-function"
        ),
        pytest.param(
            *aliased("from keras.src.backend.tensorflow.rnn import lstm", "lstm"),
            LAYER,
            LSTM_GUARD,
            id="backend-module",
        ),
        pytest.param(
            KERAS3_BEFORE.replace('if self.use_cudnn in ("auto", True):', "if self.use_cudnn or self.fast:"),
            KERAS3_BEFORE.replace(
                'if self.use_cudnn in ("auto", True):', f"if (self.use_cudnn or self.fast) and {OWN}:"
            ),
            LAYER,
            LSTM_GUARD,
            id="or-test-parenthesised",
        ),
        pytest.param(WRAPPER_BEFORE, wrapper_after("lstm"), WRAPPER, LSTM_GUARD, id="wrapper-lstm-set"),
        pytest.param(WRAPPER_BEFORE, wrapper_after("gru"), WRAPPER, GRU_GUARD, id="wrapper-gru-set"),
        pytest.param(KERAS3_LOOP_BEFORE, KERAS3_LOOP_AFTER, LAYER, LSTM_GUARD, id="per-gate-call"),
        pytest.param(KERAS30_LOOP_BEFORE, KERAS30_LOOP_AFTER, LAYER, GRU_GUARD, id="per-gate-call-keras-3.0-gru"),
        pytest.param(NIGHTLY_LOOP_BEFORE, NIGHTLY_LOOP_AFTER, LAYER, LSTM_GUARD, id="per-gate-call-nightly"),
        # Where the loop's names or the call itself are not plain, the branch guard as before.
        pytest.param(
            KERAS3_LOOP_BEFORE.replace("from keras.src import ops\n", ""),
            branch_guarded(KERAS3_LOOP_BEFORE.replace("from keras.src import ops\n", "")),
            LAYER,
            LSTM_GUARD,
            id="no-ops-branch-guard",
        ),
        pytest.param(
            KERAS3_LOOP_BEFORE.replace("from keras.src import ops", "import numpy as ops"),
            branch_guarded(KERAS3_LOOP_BEFORE.replace("from keras.src import ops", "import numpy as ops")),
            LAYER,
            LSTM_GUARD,
            id="ops-not-keras-branch-guard",
        ),
        pytest.param(
            KERAS3_LOOP_BEFORE.replace("if not self.recurrent_dropout:", "if backend.cudnn_ok(self.cell.activation):"),
            branch_guarded(
                KERAS3_LOOP_BEFORE.replace(
                    "if not self.recurrent_dropout:", "if backend.cudnn_ok(self.cell.activation):"
                )
            ),
            LAYER,
            LSTM_GUARD,
            id="with-a-predicate-branch-guard",
        ),
        pytest.param(
            KERAS3_LOOP_BEFORE.replace("out = backend.lstm(", "fused = backend.lstm\n                    out = fused("),
            branch_guarded(
                KERAS3_LOOP_BEFORE.replace(
                    "out = backend.lstm(", "fused = backend.lstm\n                    out = fused("
                )
            ),
            LAYER,
            LSTM_GUARD,
            id="kernel-not-called-branch-guard",
        ),
        pytest.param(
            KERAS3_LOOP_BEFORE.replace("backend.lstm(", "backend.gru("),
            branch_guarded(KERAS3_LOOP_BEFORE.replace("backend.lstm(", "backend.gru(")),
            LAYER,
            LSTM_GUARD,
            id="other-sets-kernel-branch-guard",
        ),
        pytest.param(
            KERAS3_LOOP_BEFORE.replace("out = backend.lstm(", "out = self._fused(")
            + "\n    def _fused(self, *args, **kwargs):\n        return backend.lstm(*args, **kwargs)\n",
            branch_guarded(
                KERAS3_LOOP_BEFORE.replace("out = backend.lstm(", "out = self._fused(")
                + "\n    def _fused(self, *args, **kwargs):\n        return backend.lstm(*args, **kwargs)\n"
            ),
            LAYER,
            LSTM_GUARD,
            id="through-a-method-branch-guard",
        ),
    ],
)
def test_fix(before, after, targets, transformer):
    assert_transforms(transformer, before, after, targets, PARAMS)


def test_wrapper_sets_add_up():
    """The LSTM set's guard then the GRU set's: both branches guarded, each once."""
    once, _ = apply(LSTM_GUARD, WRAPPER_BEFORE, WRAPPER, PARAMS)
    both, _ = apply(GRU_GUARD, once, WRAPPER, PARAMS)
    assert both == dedent(wrapper_after("lstm", "gru"))


@pytest.mark.parametrize(
    ("code", "targets", "transformer"),
    [
        pytest.param(KERAS3_BEFORE, LAYER, LSTM_GUARD, id="keras3"),
        pytest.param(KERAS3_AFTER, LAYER, LSTM_GUARD, id="keras3-patched"),
        pytest.param(KERAS30_BEFORE, LAYER, GRU_GUARD, id="keras-3.0"),
        pytest.param(TF_KERAS_BEFORE, LAYER, LSTM_GUARD, id="tf_keras"),
        pytest.param(TF_KERAS_AFTER, LAYER, LSTM_GUARD, id="tf_keras-patched"),
        pytest.param(WRAPPER_BEFORE, WRAPPER, LSTM_GUARD, id="wrapper"),
        pytest.param(wrapper_after("gru"), WRAPPER, GRU_GUARD, id="wrapper-patched"),
    ],
)
def test_counts_the_guard(code, targets, transformer):
    _, edits = apply(transformer, code, targets, PARAMS)
    assert edits == {(next(iter(targets)), "fused guard"): 1}


@pytest.mark.parametrize(
    "code", [pytest.param(KERAS3_LOOP_BEFORE, id="keras3"), pytest.param(KERAS3_LOOP_AFTER, id="keras3-patched")]
)
def test_counts_the_per_gate_call(code):
    """What the pipeline reads to require the loop the call needs (per_gate_loop.py adds it)."""
    _, edits = apply(LSTM_GUARD, code, LAYER, PARAMS)
    assert edits == {("Layer", "fused guard"): 1, ("Layer", "per-gate call"): 1}


def test_counts_every_guarded_branch():
    _, edits = apply(LSTM_GUARD, NIGHTLY_BEFORE, LAYER, PARAMS)
    assert edits == {("Layer", "fused guard"): 2}
