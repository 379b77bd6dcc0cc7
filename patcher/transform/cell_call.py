"""Use the five activations in the cell's gate equations."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from patcher.transform.base import ClassScopedTransformer


def _self_attribute(name: str) -> m.Attribute:
    return m.Attribute(value=m.Name("self"), attr=m.Name(name))


class GateActivationsTransformer(ClassScopedTransformer):
    """In the cell's ``call``::

        i = self.recurrent_activation(x_i + h_i)  ->  self.recurrent_activation_i(...)
        c = f * c_tm1 + i * self.activation(...)   ->  self.activation_i(...)
        h = o * self.activation(c)                 ->  self.activation_o(c)

    Matched by the assigned name and the attribute called, so it works however
    the surrounding dropout and convolution code is written.
    """

    # Keras 2.0 computes the gates in ConvLSTM2D.step; later versions in Cell.call.
    methods = frozenset({"call", "step"})

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        if self.role != "cell" or self.method not in self.methods:
            return updated_node
        if not m.matches(updated_node, m.Assign(targets=[m.AssignTarget(target=m.Name())])):
            return updated_node
        gate = updated_node.targets[0].target.value
        param = next((param for param in self.params if param.gate == gate), None)
        if param is None:
            return updated_node
        value = m.replace(
            updated_node.value,
            _self_attribute(param.inherits),
            cst.Attribute(value=cst.Name("self"), attr=cst.Name(param.name)),
        )
        if m.findall(value, _self_attribute(param.name)):
            self.record(f"gate {gate}")
        return updated_node.with_changes(value=value)
