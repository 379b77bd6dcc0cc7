"""cell_call: each gate equation uses its own activation.

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

import textwrap

import pytest
from transform_helpers import TARGETS, apply, assert_transforms, assert_unchanged, dedent

from patcher.transform.cell_call import GateActivationsTransformer

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
        "        h_tm1, c_tm1 = states\n" + textwrap.indent(dedent(gates), " " * 8) + "        return h, [h, c]\n"
        "\n"
        "    def activate(self, c):\n"
        "        h = o * self.activation(c)\n"
        "        i = self.recurrent_activation(c)\n"
        "        return self.activation(h)\n"
    )


@pytest.mark.parametrize(
    ("code", "targets"),
    [
        pytest.param(cell_with("call", GATES_BEFORE), {"Cell": "layer"}, id="layer-role"),
        pytest.param(cell_with("call", GATES_BEFORE), {"Other": "cell"}, id="non-target"),
    ],
)
def test_noop(code, targets):
    assert_unchanged(GateActivationsTransformer, code, targets)


@pytest.mark.parametrize(
    ("before", "after", "targets"),
    [
        pytest.param(cell_with("call", GATES_BEFORE), cell_with("call", GATES_AFTER), TARGETS, id="call"),
        pytest.param(cell_with("step", GATES_BEFORE), cell_with("step", GATES_AFTER), TARGETS, id="step"),
        pytest.param(
            cell_with("call", GATES_BEFORE.replace("i = self.recurrent", "i = self.hard_recurrent")),
            cell_with(
                "call", GATES_AFTER.replace("i = self.recurrent_activation_i", "i = self.hard_recurrent_activation")
            ),
            TARGETS,
            id="gate-with-another-activation",
        ),
    ],
)
def test_fix(before, after, targets):
    assert_transforms(GateActivationsTransformer, before, after, targets)


@pytest.mark.parametrize(
    "code", [cell_with("call", GATES_BEFORE), cell_with("call", GATES_AFTER)], ids=["pristine", "patched"]
)
def test_cell_call_counts_each_gate(code):
    _, edits = apply(GateActivationsTransformer, code)
    assert edits == {("Cell", f"gate {gate}"): 1 for gate in "ifcoh"}
