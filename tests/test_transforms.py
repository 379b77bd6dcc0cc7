"""Before/after tests for each libcst transformer, on small hand-written classes.

The snippets only imitate the shape of Keras's ConvLSTM classes; they are not
Keras source. Every expected output is also checked to be a fixed point, since
`apply` must be safe to run on an already patched file.
"""

import ast
import re
import textwrap

import libcst as cst
import pytest

from patcher.marker import marker_text
from patcher.spec import Parameter, parameters
from patcher.transform.cell_call import GateActivationsTransformer
from patcher.transform.cell_init import ResolveActivationsTransformer
from patcher.transform.config import ConfigTransformer
from patcher.transform.docstrings import DocstringTransformer
from patcher.transform.forwarding import ForwardArgumentsTransformer
from patcher.transform.marker import MarkerTransformer
from patcher.transform.pipeline import TransformError, transform_source
from patcher.transform.properties import PropertiesTransformer
from patcher.transform.signature import AddParametersTransformer

NAMES = tuple(param.name for param in parameters())
TARGETS = {"Cell": "cell", "Layer": "layer"}


def dedent(code):
    return textwrap.dedent(code).lstrip("\n")


def visit(transformer, code):
    return cst.parse_module(code).visit(transformer).code


def apply(transformer_class, code, targets=TARGETS, params=None):
    transformer = transformer_class(targets, params or parameters())
    return visit(transformer, dedent(code)), transformer.edits


def assert_transforms(transformer_class, before, after, targets=TARGETS, params=None):
    code, _ = apply(transformer_class, before, targets, params)
    assert code == dedent(after)
    again, _ = apply(transformer_class, after, targets, params)
    assert again == dedent(after), "not idempotent"


def test_parameters_are_the_five_in_order():
    # Every expected output below is written in this order.
    assert tuple(param.name for param in parameters()) == NAMES


# --- signature ------------------------------------------------------------

SIGNATURE_CASES = [
    pytest.param(
        """
        class Layer:
            def __init__(
                self,
                filters,
                activation="tanh",
                recurrent_activation="sigmoid",
                **kwargs,
            ):
                pass
        """,
        """
        class Layer:
            def __init__(
                self,
                filters,
                activation="tanh",
                recurrent_activation="sigmoid",
                activation_i=None,
                activation_o=None,
                recurrent_activation_f=None,
                recurrent_activation_i=None,
                recurrent_activation_o=None,
                **kwargs,
            ):
                pass
        """,
        id="one-per-line-trailing-comma",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(
                self,
                filters,
                recurrent_activation="sigmoid",
                **kwargs
            ):
                pass
        """,
        """
        class Layer:
            def __init__(
                self,
                filters,
                recurrent_activation="sigmoid",
                activation_i=None,
                activation_o=None,
                recurrent_activation_f=None,
                recurrent_activation_i=None,
                recurrent_activation_o=None,
                **kwargs
            ):
                pass
        """,
        id="one-per-line-no-trailing-comma",
    ),
    pytest.param(
        """
        class Cell:
            def __init__(self, filters, activation="tanh", **kwargs):
                pass
        """,
        """
        class Cell:
            def __init__(self, filters, activation="tanh", activation_i=None, activation_o=None, recurrent_activation_f=None, recurrent_activation_i=None, recurrent_activation_o=None, **kwargs):
                pass
        """,
        id="single-line",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, filters, kernel_size,
                         activation='tanh',
                         recurrent_activation='hard_sigmoid',
                         **kwargs):
                pass
        """,
        """
        class Layer:
            def __init__(self, filters, kernel_size,
                         activation='tanh',
                         recurrent_activation='hard_sigmoid',
                         activation_i=None,
                         activation_o=None,
                         recurrent_activation_f=None,
                         recurrent_activation_i=None,
                         recurrent_activation_o=None,
                         **kwargs):
                pass
        """,
        id="aligned-keras2-style",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, *, filters, activation="tanh", **kwargs):
                pass
        """,
        """
        class Layer:
            def __init__(self, *, filters, activation="tanh", activation_i=None, activation_o=None, recurrent_activation_f=None, recurrent_activation_i=None, recurrent_activation_o=None, **kwargs):
                pass
        """,
        id="keyword-only",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(
                self,
                recurrent_activation="sigmoid",
                activation_o=None,
                recurrent_activation_i=None,
                **kwargs,
            ):
                pass
        """,
        """
        class Layer:
            def __init__(
                self,
                recurrent_activation="sigmoid",
                activation_o=None,
                recurrent_activation_i=None,
                activation_i=None,
                recurrent_activation_f=None,
                recurrent_activation_o=None,
                **kwargs,
            ):
                pass
        """,
        id="some-already-present",
    ),
    pytest.param(
        """
        class Other:
            def __init__(self, filters, activation="tanh", **kwargs):
                pass
        """,
        """
        class Other:
            def __init__(self, filters, activation="tanh", **kwargs):
                pass
        """,
        id="non-target-class",
    ),
    pytest.param(
        """
        class Layer:
            def build(self, input_shape, seed=None, **kwargs):
                pass

            def call(self, inputs, training=None):
                pass
        """,
        """
        class Layer:
            def build(self, input_shape, seed=None, **kwargs):
                pass

            def call(self, inputs, training=None):
                pass
        """,
        id="other-method",
    ),
    pytest.param(
        """
        class Layer:
            class Inner:
                def __init__(self, units=1, **kwargs):
                    pass
        """,
        """
        class Layer:
            class Inner:
                def __init__(self, units=1, **kwargs):
                    pass
        """,
        id="nested-non-target-class",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, filters, activation="tanh"):
                pass
        """,
        """
        class Layer:
            def __init__(self, filters, activation="tanh", activation_i=None, activation_o=None, recurrent_activation_f=None, recurrent_activation_i=None, recurrent_activation_o=None):
                pass
        """,
        id="no-kwargs",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, filters, **kwargs):
                pass
        """,
        """
        class Layer:
            def __init__(self, filters, activation_i=None, activation_o=None, recurrent_activation_f=None, recurrent_activation_i=None, recurrent_activation_o=None, **kwargs):
                pass
        """,
        id="no-defaulted-parameter",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, filters,
                         recurrent_activation='hard_sigmoid',  # gates i, f, o
                         **kwargs):
                pass
        """,
        """
        class Layer:
            def __init__(self, filters,
                         recurrent_activation='hard_sigmoid',  # gates i, f, o
                         activation_i=None,
                         activation_o=None,
                         recurrent_activation_f=None,
                         recurrent_activation_i=None,
                         recurrent_activation_o=None,
                         **kwargs):
                pass
        """,
        id="comment-after-last-default-not-copied",
    ),
]


@pytest.mark.parametrize("before, after", SIGNATURE_CASES)
def test_signature(before, after):
    assert_transforms(AddParametersTransformer, before, after)


@pytest.mark.parametrize(
    "before",
    [
        pytest.param('class Layer:\n    def __init__(self, a=1, **kwargs):\n        pass\n', id="missing"),
        pytest.param(
            "class Layer:\n    def __init__(self, a=1, %s, **kwargs):\n        pass\n"
            % ", ".join(f"{name}=None" for name in NAMES),
            id="present",
        ),
    ],
)
def test_signature_counts_every_parameter_once(before):
    # The pipeline tells "patched" from "unrecognised" by this count.
    _, edits = apply(AddParametersTransformer, before)
    assert edits == {("Layer", "signature"): 5}


# --- forwarding -----------------------------------------------------------

FORWARDING_CASES = [
    pytest.param(
        """
        class Layer:
            def __init__(self, filters, recurrent_activation="sigmoid", **kwargs):
                cell = Cell(
                    filters=filters,
                    recurrent_activation=recurrent_activation,
                    use_bias=use_bias,
                )
        """,
        """
        class Layer:
            def __init__(self, filters, recurrent_activation="sigmoid", **kwargs):
                cell = Cell(
                    filters=filters,
                    recurrent_activation=recurrent_activation,
                    activation_i=activation_i,
                    activation_o=activation_o,
                    recurrent_activation_f=recurrent_activation_f,
                    recurrent_activation_i=recurrent_activation_i,
                    recurrent_activation_o=recurrent_activation_o,
                    use_bias=use_bias,
                )
        """,
        id="cell-constructor",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, filters, recurrent_activation="sigmoid", **kwargs):
                super().__init__(
                    rank=2,
                    filters=filters,
                    recurrent_activation=recurrent_activation,
                    **kwargs,
                )
        """,
        """
        class Layer:
            def __init__(self, filters, recurrent_activation="sigmoid", **kwargs):
                super().__init__(
                    rank=2,
                    filters=filters,
                    recurrent_activation=recurrent_activation,
                    activation_i=activation_i,
                    activation_o=activation_o,
                    recurrent_activation_f=recurrent_activation_f,
                    recurrent_activation_i=recurrent_activation_i,
                    recurrent_activation_o=recurrent_activation_o,
                    **kwargs,
                )
        """,
        id="super-init",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, filters, recurrent_activation='hard_sigmoid', **kwargs):
                super(Layer, self).__init__(filters,
                                            recurrent_activation=recurrent_activation,
                                            **kwargs)
        """,
        """
        class Layer:
            def __init__(self, filters, recurrent_activation='hard_sigmoid', **kwargs):
                super(Layer, self).__init__(filters,
                                            recurrent_activation=recurrent_activation,
                                            activation_i=activation_i,
                                            activation_o=activation_o,
                                            recurrent_activation_f=recurrent_activation_f,
                                            recurrent_activation_i=recurrent_activation_i,
                                            recurrent_activation_o=recurrent_activation_o,
                                            **kwargs)
        """,
        id="super-cls-self-init",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, activation, recurrent_activation):
                self.cell = Cell(activation=activation, recurrent_activation=recurrent_activation)
        """,
        """
        class Layer:
            def __init__(self, activation, recurrent_activation):
                self.cell = Cell(activation=activation, recurrent_activation=recurrent_activation, activation_i=activation_i, activation_o=activation_o, recurrent_activation_f=recurrent_activation_f, recurrent_activation_i=recurrent_activation_i, recurrent_activation_o=recurrent_activation_o)
        """,
        id="last-argument-single-line",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, activation, recurrent_activation):
                self.cell = Cell(
                    activation=activation,
                    recurrent_activation=recurrent_activation
                )
        """,
        """
        class Layer:
            def __init__(self, activation, recurrent_activation):
                self.cell = Cell(
                    activation=activation,
                    recurrent_activation=recurrent_activation,
                    activation_i=activation_i,
                    activation_o=activation_o,
                    recurrent_activation_f=recurrent_activation_f,
                    recurrent_activation_i=recurrent_activation_i,
                    recurrent_activation_o=recurrent_activation_o
                )
        """,
        id="last-argument-multi-line",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, recurrent_activation, **kwargs):
                self.cell = Cell(
                    recurrent_activation=activations.get(recurrent_activation),
                )
                super().__init__(recurrent_activation=recurrent, **kwargs)
                self.other = Cell(activation=recurrent_activation)
        """,
        """
        class Layer:
            def __init__(self, recurrent_activation, **kwargs):
                self.cell = Cell(
                    recurrent_activation=activations.get(recurrent_activation),
                )
                super().__init__(recurrent_activation=recurrent, **kwargs)
                self.other = Cell(activation=recurrent_activation)
        """,
        id="value-is-not-the-parameter",
    ),
    pytest.param(
        """
        class Layer:
            def build(self, recurrent_activation):
                self.cell = Cell(recurrent_activation=recurrent_activation)

            @classmethod
            def from_config(cls, recurrent_activation):
                return cls(recurrent_activation=recurrent_activation)
        """,
        """
        class Layer:
            def build(self, recurrent_activation):
                self.cell = Cell(recurrent_activation=recurrent_activation)

            @classmethod
            def from_config(cls, recurrent_activation):
                return cls(recurrent_activation=recurrent_activation)
        """,
        id="outside-init",
    ),
    pytest.param(
        """
        class Other:
            def __init__(self, recurrent_activation):
                self.cell = Cell(recurrent_activation=recurrent_activation)
        """,
        """
        class Other:
            def __init__(self, recurrent_activation):
                self.cell = Cell(recurrent_activation=recurrent_activation)
        """,
        id="non-target-class",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, recurrent_activation, activation_o=None):
                self.cell = Cell(
                    recurrent_activation=recurrent_activation,
                    activation_o=activation_o,
                )
        """,
        """
        class Layer:
            def __init__(self, recurrent_activation, activation_o=None):
                self.cell = Cell(
                    recurrent_activation=recurrent_activation,
                    activation_i=activation_i,
                    recurrent_activation_f=recurrent_activation_f,
                    recurrent_activation_i=recurrent_activation_i,
                    recurrent_activation_o=recurrent_activation_o,
                    activation_o=activation_o,
                )
        """,
        id="some-already-forwarded",
    ),
    pytest.param(
        """
        class Layer:
            def __init__(self, filters, recurrent_activation='hard_sigmoid', **kwargs):
                super(Layer, self).__init__(filters,
                                            recurrent_activation=recurrent_activation,  # gates
                                            **kwargs)
        """,
        """
        class Layer:
            def __init__(self, filters, recurrent_activation='hard_sigmoid', **kwargs):
                super(Layer, self).__init__(filters,
                                            recurrent_activation=recurrent_activation,  # gates
                                            activation_i=activation_i,
                                            activation_o=activation_o,
                                            recurrent_activation_f=recurrent_activation_f,
                                            recurrent_activation_i=recurrent_activation_i,
                                            recurrent_activation_o=recurrent_activation_o,
                                            **kwargs)
        """,
        id="comment-after-anchor-not-copied",
    ),
]


@pytest.mark.parametrize("before, after", FORWARDING_CASES)
def test_forwarding(before, after):
    assert_transforms(ForwardArgumentsTransformer, before, after)


def test_forwarding_counts_each_call():
    _, edits = apply(
        ForwardArgumentsTransformer,
        """
        class Layer:
            def __init__(self, recurrent_activation):
                cell = Cell(recurrent_activation=recurrent_activation)
                super().__init__(cell, recurrent_activation=recurrent_activation)
        """,
    )
    assert edits == {("Layer", "forwarding"): 10}


# --- cell_init ------------------------------------------------------------

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

CELL_INIT_CASES = [
    pytest.param(CELL_INIT_BEFORE, CELL_INIT_AFTER, TARGETS, id="after-recurrent-activation"),
    pytest.param(
        CELL_INIT_BEFORE.replace("activations.get", "acts.get"),
        CELL_INIT_AFTER.replace("activations.get", "acts.get"),
        TARGETS,
        id="same-getter-as-original",
    ),
    pytest.param(CELL_INIT_BEFORE, CELL_INIT_BEFORE, {"Cell": "layer"}, id="layer-role"),
    pytest.param(CELL_INIT_BEFORE, CELL_INIT_BEFORE, {"Other": "cell"}, id="non-target-class"),
    pytest.param(
        """
        class Cell:
            def __init__(self, recurrent_activation):
                self.recurrent_activation = recurrent_activation
        """,
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
        """
        class Cell:
            def build(self, recurrent_activation):
                self.recurrent_activation = activations.get(recurrent_activation)
        """,
        TARGETS,
        id="outside-init",
    ),
]


@pytest.mark.parametrize("before, after, targets", CELL_INIT_CASES)
def test_cell_init(before, after, targets):
    assert_transforms(ResolveActivationsTransformer, before, after, targets)


@pytest.mark.parametrize("code", [CELL_INIT_BEFORE, CELL_INIT_AFTER], ids=["pristine", "patched"])
def test_cell_init_counts_one_resolve(code):
    _, edits = apply(ResolveActivationsTransformer, code)
    assert edits == {("Cell", "resolve"): 1}


# --- cell_call ------------------------------------------------------------

GATES_BEFORE = """
    i = self.recurrent_activation(x_i + h_i)
    f = self.recurrent_activation(x_f + h_f)
    c = f * c_tm1 + i * self.activation(x_c + h_c)
    o = self.recurrent_activation(x_o + h_o)
    h = o * self.activation(c)
    """

GATES_AFTER = """
    i = self.recurrent_activation_i(x_i + h_i)
    f = self.recurrent_activation_f(x_f + h_f)
    c = f * c_tm1 + i * self.activation_i(x_c + h_c)
    o = self.recurrent_activation_o(x_o + h_o)
    h = o * self.activation_o(c)
    """


def cell_with(method, gates):
    """A cell whose `method` computes `gates`, and that uses self.activation elsewhere."""
    return (
        "class Cell:\n"
        f"    def {method}(self, inputs, states):\n"
        "        h_tm1, c_tm1 = states\n"
        + textwrap.indent(dedent(gates), " " * 8)
        + "        return h, [h, c]\n"
        "\n"
        "    def activate(self, c):\n"
        "        h = o * self.activation(c)\n"
        "        i = self.recurrent_activation(c)\n"
        "        return self.activation(h)\n"
    )


CELL_CALL_CASES = [
    pytest.param(cell_with("call", GATES_BEFORE), cell_with("call", GATES_AFTER), TARGETS, id="call"),
    pytest.param(cell_with("step", GATES_BEFORE), cell_with("step", GATES_AFTER), TARGETS, id="step"),
    pytest.param(cell_with("call", GATES_BEFORE), cell_with("call", GATES_BEFORE), {"Cell": "layer"}, id="layer-role"),
    pytest.param(cell_with("call", GATES_BEFORE), cell_with("call", GATES_BEFORE), {"Other": "cell"}, id="non-target"),
    pytest.param(
        cell_with("call", GATES_BEFORE.replace("i = self.recurrent", "i = self.hard_recurrent")),
        cell_with("call", GATES_AFTER.replace("i = self.recurrent_activation_i", "i = self.hard_recurrent_activation")),
        TARGETS,
        id="gate-with-another-activation",
    ),
]


@pytest.mark.parametrize("before, after, targets", CELL_CALL_CASES)
def test_cell_call(before, after, targets):
    assert_transforms(GateActivationsTransformer, before, after, targets)


@pytest.mark.parametrize("code", [cell_with("call", GATES_BEFORE), cell_with("call", GATES_AFTER)], ids=["pristine", "patched"])
def test_cell_call_counts_each_gate(code):
    _, edits = apply(GateActivationsTransformer, code)
    assert edits == {("Cell", f"gate {gate}"): 1 for gate in "ifcoh"}


# --- config ---------------------------------------------------------------

def get_config(owner, serializer="activations.serialize", loop=True):
    added = (
        f"        for name in {owner}._explicit_activations:\n"
        f"            config[name] = {serializer}(getattr({owner}, name))\n"
    )
    return (
        "    def get_config(self):\n"
        "        config = {\n"
        '            "filters": self.filters,\n'
        f'            "activation": {serializer}(self.activation),\n'
        f'            "recurrent_activation": {serializer}(self.recurrent_activation),\n'
        "        }\n"
        + (added if loop else "")
        + "        base_config = super().get_config()\n"
        "        return {**base_config, **config}\n"
    )


CONFIG_CASES = [
    pytest.param(
        "class Cell:\n" + get_config("self", loop=False),
        "class Cell:\n" + get_config("self"),
        id="cell-owner-self",
    ),
    pytest.param(
        "class Layer:\n" + get_config("self.cell", loop=False),
        "class Layer:\n" + get_config("self.cell"),
        id="layer-owner-self-cell",
    ),
    pytest.param(
        "class Cell:\n" + get_config("self", "serialization_lib.serialize_keras_object", loop=False),
        "class Cell:\n" + get_config("self", "serialization_lib.serialize_keras_object"),
        id="serializer-copied",
    ),
    pytest.param(
        "class Other:\n" + get_config("self", loop=False),
        "class Other:\n" + get_config("self", loop=False),
        id="non-target-class",
    ),
    pytest.param(
        """
        class Cell:
            def get_config(self):
                config = {"filters": self.filters}
                config["activation"] = activations.serialize(self.activation)
                return config
        """,
        """
        class Cell:
            def get_config(self):
                config = {"filters": self.filters}
                config["activation"] = activations.serialize(self.activation)
                return config
        """,
        id="no-activation-entry",
    ),
    pytest.param(
        """
        class Cell:
            def describe(self):
                config = {"activation": activations.serialize(self.activation)}
                return config
        """,
        """
        class Cell:
            def describe(self):
                config = {"activation": activations.serialize(self.activation)}
                return config
        """,
        id="other-method",
    ),
]


@pytest.mark.parametrize("before, after", CONFIG_CASES)
def test_config(before, after):
    assert_transforms(ConfigTransformer, before, after)


# --- properties -----------------------------------------------------------

def layer_properties(*names, comment=""):
    return "class Layer(RNN):\n" + "\n".join(
        (comment if name == "recurrent_activation" else "")
        + f"    @property\n    def {name}(self):\n        return self.cell.{name}\n"
        for name in names
    )


PROPERTIES_CASES = [
    pytest.param(
        layer_properties("activation", "recurrent_activation", "use_bias"),
        layer_properties("activation", "recurrent_activation", *NAMES, "use_bias"),
        TARGETS,
        id="layer",
    ),
    pytest.param(
        layer_properties("activation", "recurrent_activation"),
        layer_properties("activation", "recurrent_activation", *NAMES),
        TARGETS,
        id="last-in-class",
    ),
    pytest.param(
        layer_properties("activation", "recurrent_activation", "activation_o", "use_bias"),
        layer_properties(
            "activation",
            "recurrent_activation",
            "activation_i",
            "recurrent_activation_f",
            "recurrent_activation_i",
            "recurrent_activation_o",
            "activation_o",
            "use_bias",
        ),
        TARGETS,
        id="some-already-present",
    ),
    pytest.param(
        layer_properties("recurrent_activation", "use_bias"),
        layer_properties("recurrent_activation", *NAMES, "use_bias"),
        TARGETS,
        id="anchor-first-in-class",
    ),
    pytest.param(
        layer_properties("activation", "recurrent_activation", "use_bias"),
        layer_properties("activation", "recurrent_activation", "use_bias"),
        {"Layer": "cell"},
        id="cell-role",
    ),
    pytest.param(
        layer_properties("activation", "use_bias"),
        layer_properties("activation", "use_bias"),
        TARGETS,
        id="no-recurrent-activation-property",
    ),
    pytest.param(
        """
        class Layer(RNN):
            def recurrent_activation(self):
                return self.cell.recurrent_activation
        """,
        """
        class Layer(RNN):
            def recurrent_activation(self):
                return self.cell.recurrent_activation
        """,
        TARGETS,
        id="plain-method-not-property",
    ),
    pytest.param(
        layer_properties("activation", "recurrent_activation", comment="    # Activations.\n"),
        layer_properties("activation", "recurrent_activation", comment="    # Activations.\n") + "".join(
            f"\n    @property\n    def {name}(self):\n        return self.cell.{name}\n" for name in NAMES
        ),
        TARGETS,
        id="comment-above-anchor-not-copied",
    ),
]


@pytest.mark.parametrize("before, after, targets", PROPERTIES_CASES)
def test_properties(before, after, targets):
    assert_transforms(PropertiesTransformer, before, after, targets)


# --- docstrings -----------------------------------------------------------

DOCSTRING_CASES = [
    pytest.param(
        '''
        class Layer:
            """2D Convolutional LSTM.

            Args:
              filters: Integer, the dimensionality of the output space.
              recurrent_activation: Activation function to use
                for the recurrent step.
              use_bias: Boolean.
            """
        ''',
        '''
        class Layer:
            """2D Convolutional LSTM.

            Args:
              filters: Integer, the dimensionality of the output space.
              recurrent_activation: Activation function to use
                for the recurrent step.
              activation_i: Activation function for the candidate cell input,
                `c = f * c_tm1 + i * activation_i(x_c + h_c)`. Default: `None`, which
                uses `activation`.
              activation_o: Activation function applied to the cell state to form the
                output, `h = o * activation_o(c)`. Default: `None`, which uses
                `activation`.
              recurrent_activation_f: Activation function for the forget gate `f`.
                Default: `None`, which uses `recurrent_activation`.
              recurrent_activation_i: Activation function for the input gate `i`.
                Default: `None`, which uses `recurrent_activation`.
              recurrent_activation_o: Activation function for the output gate `o`.
                Default: `None`, which uses `recurrent_activation`.
              use_bias: Boolean.
            """
        ''',
        id="args-2-space",
    ),
    pytest.param(
        '''
        class Cell:
            """Cell class for the ConvLSTM layer.

            Args:
                filters: int, the dimension of the output space.
                recurrent_activation: Activation function to use for the recurrent step.
                use_bias: Boolean, (default `True`), whether the layer
                    should use a bias vector.

            Call arguments:
                inputs: A (2+ `rank`)D tensor.
            """
        ''',
        '''
        class Cell:
            """Cell class for the ConvLSTM layer.

            Args:
                filters: int, the dimension of the output space.
                recurrent_activation: Activation function to use for the recurrent step.
                activation_i: Activation function for the candidate cell input,
                    `c = f * c_tm1 + i * activation_i(x_c + h_c)`. Default: `None`,
                    which uses `activation`.
                activation_o: Activation function applied to the cell state to form the
                    output, `h = o * activation_o(c)`. Default: `None`, which uses
                    `activation`.
                recurrent_activation_f: Activation function for the forget gate `f`.
                    Default: `None`, which uses `recurrent_activation`.
                recurrent_activation_i: Activation function for the input gate `i`.
                    Default: `None`, which uses `recurrent_activation`.
                recurrent_activation_o: Activation function for the output gate `o`.
                    Default: `None`, which uses `recurrent_activation`.
                use_bias: Boolean, (default `True`), whether the layer
                    should use a bias vector.

            Call arguments:
                inputs: A (2+ `rank`)D tensor.
            """
        ''',
        id="args-4-space",
    ),
    pytest.param(
        '''
        class Layer:
            """Convolutional LSTM.

            Args:
                    filters: Integer, the dimensionality of the output space
                        (i.e. the number of output filters in the convolution).
                    recurrent_activation: Activation function to use.
            """
        ''',
        '''
        class Layer:
            """Convolutional LSTM.

            Args:
                    filters: Integer, the dimensionality of the output space
                        (i.e. the number of output filters in the convolution).
                    recurrent_activation: Activation function to use.
                    activation_i: Activation function for the candidate cell input,
                        `c = f * c_tm1 + i * activation_i(x_c + h_c)`. Default: `None`,
                        which uses `activation`.
                    activation_o: Activation function applied to the cell state to form
                        the output, `h = o * activation_o(c)`. Default: `None`, which
                        uses `activation`.
                    recurrent_activation_f: Activation function for the forget gate `f`.
                        Default: `None`, which uses `recurrent_activation`.
                    recurrent_activation_i: Activation function for the input gate `i`.
                        Default: `None`, which uses `recurrent_activation`.
                    recurrent_activation_o: Activation function for the output gate `o`.
                        Default: `None`, which uses `recurrent_activation`.
            """
        ''',
        id="args-8-space",
    ),
    pytest.param(
        '''
        class Layer:
            """Convolutional LSTM.

            # Arguments
                filters: Integer, the dimensionality of the output space
                    (i.e. the number output of filters in the convolution).
                recurrent_activation: Activation function to use
                    for the recurrent step
                    (see [activations](../activations.md)).
                use_bias: Boolean, whether the layer uses a bias vector.

            # Input shape
                5D tensor.
            """
        ''',
        '''
        class Layer:
            """Convolutional LSTM.

            # Arguments
                filters: Integer, the dimensionality of the output space
                    (i.e. the number output of filters in the convolution).
                recurrent_activation: Activation function to use
                    for the recurrent step
                    (see [activations](../activations.md)).
                activation_i: Activation function for the candidate cell input,
                    `c = f * c_tm1 + i * activation_i(x_c + h_c)`. Default: `None`,
                    which uses `activation`.
                activation_o: Activation function applied to the cell state to form the
                    output, `h = o * activation_o(c)`. Default: `None`, which uses
                    `activation`.
                recurrent_activation_f: Activation function for the forget gate `f`.
                    Default: `None`, which uses `recurrent_activation`.
                recurrent_activation_i: Activation function for the input gate `i`.
                    Default: `None`, which uses `recurrent_activation`.
                recurrent_activation_o: Activation function for the output gate `o`.
                    Default: `None`, which uses `recurrent_activation`.
                use_bias: Boolean, whether the layer uses a bias vector.

            # Input shape
                5D tensor.
            """
        ''',
        id="arguments-heading",
    ),
    pytest.param(
        '''
        class Layer:
            """Convolutional LSTM.

            Args:
                filters: Integer.
                activation: Activation function to use.
            """
        ''',
        '''
        class Layer:
            """Convolutional LSTM.

            Args:
                filters: Integer.
                activation: Activation function to use.
            """
        ''',
        id="no-anchor",
    ),
    pytest.param(
        '''
        class Other:
            """Args:
                recurrent_activation: Activation function to use.
            """
        ''',
        '''
        class Other:
            """Args:
                recurrent_activation: Activation function to use.
            """
        ''',
        id="non-target-class",
    ),
    pytest.param(
        '''
        class Layer:
            def __init__(self):
                """Args:
                    recurrent_activation: Activation function to use.
                """
        ''',
        '''
        class Layer:
            def __init__(self):
                """Args:
                    recurrent_activation: Activation function to use.
                """
        ''',
        id="method-docstring",
    ),
]


@pytest.mark.parametrize("before, after", DOCSTRING_CASES)
def test_docstrings(before, after):
    assert_transforms(DocstringTransformer, before, after)


def inserted_lines(before, after):
    before_lines = set(dedent(before).splitlines())
    return [line for line in dedent(after).splitlines() if line not in before_lines]


@pytest.mark.parametrize("before, after", DOCSTRING_CASES)
def test_docstring_entries_fit_80_columns_and_keep_code_spans(before, after):
    # Check the expectations themselves, so a hand edit cannot break the rules.
    for line in inserted_lines(before, after):
        assert len(line) <= 80, line
        assert line.count("`") % 2 == 0, f"code span broken across lines: {line!r}"


def test_docstring_wrap_never_breaks_inside_code_span():
    # Without protection, textwrap would break this span after "alpha"
    # (the first line would end at column 79).
    param = Parameter(
        name="activation_i",
        inherits="activation",
        gate="c",
        doc="Words to push the span to the end of the line: `alpha beta gamma` here.",
    )
    before = '''
        class Cell:
            """Args:
                recurrent_activation: Activation.
            """
        '''
    after = '''
        class Cell:
            """Args:
                recurrent_activation: Activation.
                activation_i: Words to push the span to the end of the line:
                    `alpha beta gamma` here.
            """
        '''
    assert_transforms(DocstringTransformer, before, after, params=(param,))


def class_docstring(code, class_name):
    tree = ast.parse(code)
    return next(ast.get_docstring(node) for node in tree.body if getattr(node, "name", None) == class_name)


def assert_documented_after_anchor(docstring):
    positions = [re.search(rf"^\s*{name}:", docstring, re.M).start() for name in ("recurrent_activation", *NAMES)]
    assert positions == sorted(positions), docstring


def test_docstring_anchor_on_closing_line():
    code, _ = apply(
        DocstringTransformer,
        '''
        class Cell:
            """Args:
                filters: Integer.
                recurrent_activation: Activation function to use."""
        ''',
    )
    assert_documented_after_anchor(class_docstring(code, "Cell"))


# --- marker ---------------------------------------------------------------

VERSION = "1.2.3"
MARKER = marker_text(VERSION)

MARKER_CASES = [
    pytest.param("import os\n", f"{MARKER}\nimport os\n", id="first-line"),
    pytest.param(
        "# Copyright 2024 Someone.\n\nimport os\n",
        f"{MARKER}\n# Copyright 2024 Someone.\n\nimport os\n",
        id="before-licence-comment",
    ),
    pytest.param('"""Module."""\nimport os\n', f'{MARKER}\n"""Module."""\nimport os\n', id="before-docstring"),
    pytest.param(
        "# -*- coding: utf-8 -*-\nimport os\n",
        f"# -*- coding: utf-8 -*-\n{MARKER}\nimport os\n",
        id="after-coding",
    ),
    pytest.param(
        "#!/usr/bin/env python\nimport os\n",
        f"#!/usr/bin/env python\n{MARKER}\nimport os\n",
        id="after-shebang",
    ),
    pytest.param(
        "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n\nimport os\n",
        f"#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n{MARKER}\n\nimport os\n",
        id="after-shebang-and-coding",
    ),
    pytest.param(f"{MARKER}\nimport os\n", f"{MARKER}\nimport os\n", id="present"),
    pytest.param(
        "# -*- coding: utf-8 -*-\n" + marker_text("0.0.1") + "\nimport os\n",
        "# -*- coding: utf-8 -*-\n" + marker_text("0.0.1") + "\nimport os\n",
        id="present-from-other-version",
    ),
]


@pytest.mark.parametrize("before, after", MARKER_CASES)
def test_marker(before, after):
    assert visit(MarkerTransformer(VERSION), before) == after
    assert visit(MarkerTransformer(VERSION), after) == after


def test_marker_keeps_coding_declaration_within_two_lines():
    # PEP 263: a coding line after one blank line still counts, but only
    # on line 1 or 2.
    code = visit(MarkerTransformer(VERSION), "\n# -*- coding: latin-1 -*-\nimport os\n")
    lines = code.splitlines()
    assert MARKER in lines
    assert "# -*- coding: latin-1 -*-" in lines[:2]


# --- pipeline -------------------------------------------------------------

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
