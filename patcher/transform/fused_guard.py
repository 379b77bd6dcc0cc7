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
        if self.use_cudnn in ("auto", True):           # Keras 3: inner_loop, around backend.lstm()
          ->  if self.use_cudnn in ("auto", True) and not self.cell._explicit_activations:

    tf_keras's ``call`` picks standard_lstm/gpu_lstm from that flag. In Keras 3
    the layer then falls through to the cell loop, and ``use_cudnn=True`` raises
    the ValueError stock raises when cuDNN cannot be used.
    """

    methods = frozenset({"__init__"})  # walked for the flag; inner_loop is edited whole

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

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef | cst.RemovalSentinel:
        if self.role == "layer" and self.method == "inner_loop":
            updated_node = updated_node.with_changes(body=self._guard_inner_loop(updated_node.body))
        return super().leave_FunctionDef(original_node, updated_node)

    def _guard_inner_loop(self, body: cst.IndentedBlock) -> cst.IndentedBlock:
        """Keras 3: the first top-level `if` around ``backend.lstm(...)`` / ``backend.gru(...)``
        (``if self.use_cudnn in ("auto", True):`` from 3.1, ``if not self.dropout and
        not self.recurrent_dropout:`` in 3.0)."""
        statements = list(body.body)
        for index, statement in enumerate(statements):
            if isinstance(statement, cst.If) and _calls_fused_backend(statement.body):
                self.record("fused guard")
                if not _guarded(statement.test):
                    statements[index] = statement.with_changes(test=_and_guard(statement.test))
                return body.with_changes(body=statements)
        return body


def _and_guard(expression: cst.BaseExpression) -> cst.BooleanOperation:
    return cst.BooleanOperation(left=expression, operator=cst.And(), right=cst.parse_expression(GUARD))


def _guarded(expression: cst.BaseExpression) -> bool:
    return (
        isinstance(expression, cst.BooleanOperation)
        and isinstance(expression.right, cst.UnaryOperation)
        and isinstance(expression.right.expression, cst.Attribute)
        and is_name(expression.right.expression.attr, EXPLICIT_ATTRIBUTE)
    )


def _calls_fused_backend(node: cst.CSTNode) -> bool:
    finder = _BackendCallFinder()
    node.visit(finder)
    return finder.found


class _BackendCallFinder(cst.CSTVisitor):
    """Finds ``backend.lstm(...)`` or ``backend.gru(...)``."""

    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def visit_Call(self, node: cst.Call) -> bool:
        func = node.func
        if isinstance(func, cst.Attribute) and is_name(func.value, "backend") and func.attr.value in ("lstm", "gru"):
            self.found = True
        return not self.found
