"""cell_init: the cell's __init__ resolves the five (None: inherit).

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

from functools import partial

import pytest
from transform_helpers import TARGETS, apply, assert_transforms, assert_unchanged

from patcher.transform.cell_init import ResolveActivationsTransformer

CELL_INIT_BEFORE = """
    class Cell:
        def __init__(self, filters, activation="tanh", recurrent_activation="sigmoid", **kwargs):
            super().__init__(**kwargs)
            self.filters = filters
            self.activation = activations.get(activation)
            self.recurrent_activation = activations.get(recurrent_activation)
            self.use_bias = use_bias
    """

CELL_INIT_AFTER = """
    class Cell:
        def __init__(self, filters, activation="tanh", recurrent_activation="sigmoid", **kwargs):
            super().__init__(**kwargs)
            self.filters = filters
            self.activation = activations.get(activation)
            self.recurrent_activation = activations.get(recurrent_activation)
            self.activation_i = (
                activations.get(activation_i)
                if activation_i is not None
                else self.activation
            )
            self.activation_o = (
                activations.get(activation_o)
                if activation_o is not None
                else self.activation
            )
            self.recurrent_activation_f = (
                activations.get(recurrent_activation_f)
                if recurrent_activation_f is not None
                else self.recurrent_activation
            )
            self.recurrent_activation_i = (
                activations.get(recurrent_activation_i)
                if recurrent_activation_i is not None
                else self.recurrent_activation
            )
            self.recurrent_activation_o = (
                activations.get(recurrent_activation_o)
                if recurrent_activation_o is not None
                else self.recurrent_activation
            )
            self._explicit_activations = tuple(
                name
                for name, value in (
                    ("activation_i", activation_i),
                    ("activation_o", activation_o),
                    ("recurrent_activation_f", recurrent_activation_f),
                    ("recurrent_activation_i", recurrent_activation_i),
                    ("recurrent_activation_o", recurrent_activation_o),
                )
                if value is not None
            )
            self.use_bias = use_bias
    """


# LSTM and GRU (layer sets with fused kernels) also record which activations override.
OVERRIDING = """
            self._overriding_activations = tuple(
                name
                for name, function, inherited in (
                    ("activation_i", self.activation_i, self.activation),
                    ("activation_o", self.activation_o, self.activation),
                    ("recurrent_activation_f", self.recurrent_activation_f, self.recurrent_activation),
                    ("recurrent_activation_i", self.recurrent_activation_i, self.recurrent_activation),
                    ("recurrent_activation_o", self.recurrent_activation_o, self.recurrent_activation),
                )
                if function is not inherited
            )
"""
CELL_INIT_FUSED_AFTER = CELL_INIT_AFTER.replace(
    "            self.use_bias = use_bias\n", OVERRIDING.lstrip("\n") + "            self.use_bias = use_bias\n"
)
FUSED = partial(ResolveActivationsTransformer, overriding=True)


@pytest.mark.parametrize(
    ("code", "targets"),
    [
        pytest.param(CELL_INIT_BEFORE, {"Cell": "layer"}, id="layer-role"),
        pytest.param(CELL_INIT_BEFORE, {"Other": "cell"}, id="non-target-class"),
        pytest.param(
            """
            class Cell:
                def __init__(self, recurrent_activation):
                    self.recurrent_activation = recurrent_activation
            """,
            TARGETS,
            id="no-getter-call",
        ),
        pytest.param(
            """
            class Cell:
                def build(self, recurrent_activation):
                    self.recurrent_activation = activations.get(recurrent_activation)
            """,
            TARGETS,
            id="outside-init",
        ),
    ],
)
def test_noop(code, targets):
    assert_unchanged(ResolveActivationsTransformer, code, targets)


@pytest.mark.parametrize(
    ("before", "after", "targets"),
    [
        pytest.param(CELL_INIT_BEFORE, CELL_INIT_AFTER, TARGETS, id="after-recurrent-activation"),
        pytest.param(
            CELL_INIT_BEFORE.replace("activations.get", "acts.get"),
            CELL_INIT_AFTER.replace("activations.get", "acts.get"),
            TARGETS,
            id="same-getter-as-original",
        ),
    ],
)
def test_fix(before, after, targets):
    assert_transforms(ResolveActivationsTransformer, before, after, targets)


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(CELL_INIT_BEFORE, id="pristine"),
        pytest.param(CELL_INIT_AFTER, id="resolved-without-overriding"),
    ],
)
def test_fix_fused_sets_record_overriding(before):
    assert CELL_INIT_FUSED_AFTER != CELL_INIT_AFTER
    assert_transforms(FUSED, before, CELL_INIT_FUSED_AFTER)


@pytest.mark.parametrize("code", [CELL_INIT_BEFORE, CELL_INIT_AFTER], ids=["pristine", "patched"])
def test_cell_init_counts_one_resolve(code):
    _, edits = apply(ResolveActivationsTransformer, code)
    assert edits == {("Cell", "resolve"): 1}


# A cell whose constructor already takes the five (as after signature.py), to run.
RUNNABLE_CELL = """
    class Cell:
        def __init__(self, activation="tanh", recurrent_activation="sigmoid", activation_i=None, activation_o=None,
                     recurrent_activation_f=None, recurrent_activation_i=None, recurrent_activation_o=None):
            self.activation = activations.get(activation)
            self.recurrent_activation = activations.get(recurrent_activation)
    """


def _functions():
    """Like Keras's activations.get: one function object per name, callables as they are."""

    def tanh(x):
        return x

    def sigmoid(x):
        return x

    def relu(x):
        return x

    named = {"tanh": tanh, "sigmoid": sigmoid, "relu": relu}
    return named, lambda identifier: named.get(identifier, identifier)


@pytest.mark.parametrize(
    ("kwargs", "explicit", "overriding"),
    [
        pytest.param({}, (), (), id="none-given"),
        pytest.param({"recurrent_activation_f": "sigmoid"}, ("recurrent_activation_f",), (), id="same-as-inherited"),
        pytest.param(
            {"recurrent_activation_f": "relu"}, ("recurrent_activation_f",), ("recurrent_activation_f",), id="other"
        ),
        pytest.param(
            {"activation": "relu", "activation_i": "relu", "activation_o": "tanh"},
            ("activation_i", "activation_o"),
            ("activation_o",),
            id="against-a-non-default-inherited",
        ),
        pytest.param({"recurrent_activation_o": "sigmoid-object"}, ("recurrent_activation_o",), (), id="same-object"),
    ],
)
def test_overriding_activations_compare_resolved_functions(kwargs, explicit, overriding):
    code, _ = apply(FUSED, RUNNABLE_CELL)
    named, get = _functions()
    kwargs = {name: named["sigmoid"] if value == "sigmoid-object" else value for name, value in kwargs.items()}
    namespace = {"activations": type("activations", (), {"get": staticmethod(get)})}
    exec(code, namespace)
    cell = namespace["Cell"](**kwargs)
    assert cell._explicit_activations == explicit
    assert cell._overriding_activations == overriding
