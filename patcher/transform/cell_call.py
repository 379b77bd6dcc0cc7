"""Use the five activations in the cell's gate equations."""

from __future__ import annotations

import libcst as cst

from patcher.transform.base import ClassScopedTransformer
from patcher.transform.shapes import RenameSelfAttribute, contains_self_attribute


class GateActivationsTransformer(ClassScopedTransformer):
    """In the cell's ``call``::

        i = self.recurrent_activation(x_i + h_i)  ->  self.recurrent_activation_i(...)
        c = f * c_tm1 + i * self.activation(...)   ->  self.activation_i(...)
        h = o * self.activation(c)                 ->  self.activation_o(c)

    Matched by the assigned name and the attribute called, so it works however
    the surrounding dropout and convolution code is written.
    """

    # Keras 2.0 computes the gates in ConvLSTM2D.step; later versions in Cell.call;
    # LSTMCell in two helpers of call (split and fused kernels).
    methods = frozenset({"call", "step", "_compute_carry_and_output", "_compute_carry_and_output_fused"})

    def visit_Assign(self, node: cst.Assign) -> bool:
        return False  # leave_Assign rewrites the whole value; no need to walk it

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        if self.role != "cell" or self.method not in self.methods:
            return updated_node
        if len(updated_node.targets) != 1 or not isinstance(updated_node.targets[0].target, cst.Name):
            return updated_node
        gate = updated_node.targets[0].target.value
        param = next((param for param in self.params if param.gate == gate), None)
        if param is None:
            return updated_node
        value = updated_node.value.visit(RenameSelfAttribute(param.inherits, param.name))
        # visit() may in general remove or flatten a node; RenameSelfAttribute only renames attributes.
        assert isinstance(value, cst.BaseExpression)
        if contains_self_attribute(value, param.name):
            self.record(f"gate {gate}")
        return updated_node.with_changes(value=value)
