"""Forward the five parameters wherever a constructor forwards recurrent_activation."""

from __future__ import annotations

import libcst as cst

from patcher.transform.base import ClassScopedTransformer
from patcher.transform.layout import insert_after
from patcher.transform.shapes import is_name


class ForwardArgumentsTransformer(ClassScopedTransformer):
    """In a target ``__init__``, ``ConvLSTMCell(..., recurrent_activation=
    recurrent_activation, ...)`` and ``super().__init__(...)`` also pass
    ``activation_i=activation_i`` etc., right after ``recurrent_activation``.
    """

    methods = frozenset({"__init__"})

    def visit_Call(self, node: cst.Call) -> bool:
        return False  # forwarding calls are never nested in another call's arguments

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if self.method != "__init__":
            return updated_node
        args = list(updated_node.args)
        anchor = next(
            (index for index, arg in enumerate(args) if _forwards_recurrent_activation(arg)),
            None,
        )
        if anchor is None:
            return updated_node
        passed = {arg.keyword.value for arg in args if arg.keyword is not None}
        missing = [name for name in self.names if name not in passed]
        self.record("forwarding", len(self.names) - len(missing))
        if not missing:
            return updated_node
        equal = args[anchor].equal
        added = [cst.Arg(keyword=cst.Name(name), value=cst.Name(name), equal=equal) for name in missing]
        self.record("forwarding", len(missing))
        return updated_node.with_changes(args=insert_after(args, anchor, added, "whitespace_after_arg"))


def _forwards_recurrent_activation(arg: cst.Arg) -> bool:
    """``recurrent_activation=recurrent_activation``"""
    return is_name(arg.keyword, "recurrent_activation") and is_name(arg.value, "recurrent_activation")
