"""forwarding: the five passed on wherever recurrent_activation is.

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

import pytest
from transform_helpers import apply, assert_transforms, assert_unchanged

from patcher.transform.forwarding import ForwardArgumentsTransformer


@pytest.mark.parametrize(
    "code",
    [
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
            id="outside-init",
        ),
        pytest.param(
            """
            class Other:
                def __init__(self, recurrent_activation):
                    self.cell = Cell(recurrent_activation=recurrent_activation)
            """,
            id="non-target-class",
        ),
    ],
)
def test_noop(code):
    assert_unchanged(ForwardArgumentsTransformer, code)


@pytest.mark.parametrize(
    ("before", "after"),
    [
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
    ],
)
def test_fix(before, after):
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
