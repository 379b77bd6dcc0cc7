"""properties: read-only layer properties for the five.

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

import pytest
from transform_helpers import NAMES, TARGETS, assert_transforms, assert_unchanged

from patcher.transform.properties import PropertiesTransformer


def layer_properties(*names, comment=""):
    return "class Layer(RNN):\n" + "\n".join(
        (comment if name == "recurrent_activation" else "")
        + f"    @property\n    def {name}(self):\n        return self.cell.{name}\n"
        for name in names
    )


@pytest.mark.parametrize(
    ("code", "targets"),
    [
        pytest.param(
            layer_properties("activation", "recurrent_activation", "use_bias"),
            {"Layer": "cell"},
            id="cell-role",
        ),
        pytest.param(
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
            TARGETS,
            id="plain-method-not-property",
        ),
    ],
)
def test_noop(code, targets):
    assert_unchanged(PropertiesTransformer, code, targets)


@pytest.mark.parametrize(
    ("before", "after", "targets"),
    [
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
            layer_properties("activation", "recurrent_activation", comment="    # Activations.\n"),
            layer_properties("activation", "recurrent_activation", comment="    # Activations.\n")
            + "".join(f"\n    @property\n    def {name}(self):\n        return self.cell.{name}\n" for name in NAMES),
            TARGETS,
            id="comment-above-anchor-not-copied",
        ),
    ],
)
def test_fix(before, after, targets):
    assert_transforms(PropertiesTransformer, before, after, targets)
