"""Keep LSTM/GRU off their fused kernels when a per-gate activation is set."""

from __future__ import annotations

import libcst as cst

from patcher.transform.base import ClassScopedTransformer
from patcher.transform.cell_init import EXPLICIT_ATTRIBUTE
from patcher.transform.shapes import is_name, is_self_attribute

GUARD = f"not self.cell.{EXPLICIT_ATTRIBUTE}"


class FusedGuardTransformer(ClassScopedTransformer):
    """The fused paths compute the gates with hard-coded sigmoid/tanh and never
    call the cell, so a layer takes them only when none of the new activations
    is set::

        self._could_use_gpu_kernel = (...)             # tf_keras, Keras 2: __init__
          ->  self._could_use_gpu_kernel = (...) and not self.cell._explicit_activations
        if self.use_cudnn in ("auto", True):           # Keras 3: inner_loop
          ->  if self.use_cudnn in ("auto", True) and not self.cell._explicit_activations:

    tf_keras's ``call`` picks standard_lstm/gpu_lstm from that flag. In Keras 3
    the layer then falls through to the cell loop, and ``use_cudnn=True`` raises
    the ValueError stock raises when cuDNN cannot be used.
    """

    methods = frozenset({"__init__", "inner_loop"})

    def visit_Call(self, node: cst.Call) -> bool:
        return False

    def visit_Assign(self, node: cst.Assign) -> bool:
        return False

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        if self.role != "layer" or self.method != "__init__":
            return updated_node
        if len(updated_node.targets) != 1 or not is_self_attribute(updated_node.targets[0].target, "_could_use_gpu_kernel"):
            return updated_node
        self.record("fused guard")
        if _guarded(updated_node.value):
            return updated_node
        return updated_node.with_changes(value=_and_guard(updated_node.value))

    def leave_If(self, original_node: cst.If, updated_node: cst.If) -> cst.If:
        if self.role != "layer" or self.method != "inner_loop" or not _tests_use_cudnn(updated_node.test):
            return updated_node
        self.record("fused guard")
        if _guarded(updated_node.test):
            return updated_node
        return updated_node.with_changes(test=_and_guard(updated_node.test))


def _and_guard(expression: cst.BaseExpression) -> cst.BooleanOperation:
    return cst.BooleanOperation(left=expression, operator=cst.And(), right=cst.parse_expression(GUARD))


def _guarded(expression: cst.BaseExpression) -> bool:
    return (
        isinstance(expression, cst.BooleanOperation)
        and isinstance(expression.right, cst.UnaryOperation)
        and isinstance(expression.right.expression, cst.Attribute)
        and is_name(expression.right.expression.attr, EXPLICIT_ATTRIBUTE)
    )


def _tests_use_cudnn(test: cst.BaseExpression) -> bool:
    """``self.use_cudnn in (...)`` (possibly already followed by our guard)."""
    if isinstance(test, cst.BooleanOperation):
        test = test.left
    return (
        isinstance(test, cst.Comparison)
        and is_self_attribute(test.left, "use_cudnn")
        and len(test.comparisons) == 1
        and isinstance(test.comparisons[0].operator, cst.In)
    )



