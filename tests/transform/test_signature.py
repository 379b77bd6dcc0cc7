"""signature: the five parameters appended to every target __init__, default None.

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

import pytest
from transform_helpers import NAMES, apply, assert_transforms, assert_unchanged

from patcher.transform.signature import AddParametersTransformer


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
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
            id="other-method",
        ),
        pytest.param(
            """
            class Layer:
                class Inner:
                    def __init__(self, units=1, **kwargs):
                        pass
            """,
            id="nested-non-target-class",
        ),
    ],
)
def test_noop(code):
    assert_unchanged(AddParametersTransformer, code)


@pytest.mark.parametrize(
    ("before", "after"),
    [
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
    ],
)
def test_fix(before, after):
    assert_transforms(AddParametersTransformer, before, after)


@pytest.mark.parametrize(
    "before",
    [
        pytest.param("class Layer:\n    def __init__(self, a=1, **kwargs):\n        pass\n", id="missing"),
        pytest.param(
            "class Layer:\n    def __init__(self, a=1, {}, **kwargs):\n        pass\n".format(
                ", ".join(f"{name}=None" for name in NAMES)
            ),
            id="present",
        ),
    ],
)
def test_signature_counts_every_parameter_once(before):
    # The pipeline tells "patched" from "unrecognised" by this count.
    _, edits = apply(AddParametersTransformer, before)
    assert edits == {("Layer", "signature"): 5}
