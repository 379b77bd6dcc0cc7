"""config: get_config serialises the five the caller gave.

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

import pytest
from transform_helpers import assert_transforms, assert_unchanged

from patcher.transform.config import ConfigTransformer


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
        "        }\n" + (added if loop else "") + "        base_config = super().get_config()\n"
        "        return {**base_config, **config}\n"
    )


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
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
            id="no-activation-entry",
        ),
        pytest.param(
            """
            class Cell:
                def describe(self):
                    config = {"activation": activations.serialize(self.activation)}
                    return config
            """,
            id="other-method",
        ),
    ],
)
def test_noop(code):
    assert_unchanged(ConfigTransformer, code)


@pytest.mark.parametrize(
    ("before", "after"),
    [
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
    ],
)
def test_fix(before, after):
    assert_transforms(ConfigTransformer, before, after)
