"""Forward the five parameters wherever a constructor forwards recurrent_activation."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from patcher.transform.base import ClassScopedTransformer

_FORWARDS_RECURRENT_ACTIVATION = m.Arg(
    keyword=m.Name("recurrent_activation"), value=m.Name("recurrent_activation")
)


class ForwardArgumentsTransformer(ClassScopedTransformer):
    """In a target ``__init__``, ``ConvLSTMCell(..., recurrent_activation=
    recurrent_activation, ...)`` and ``super().__init__(...)`` also pass
    ``activation_i=activation_i`` etc., right after ``recurrent_activation``.
    """

    methods = frozenset({"__init__"})

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if self.method != "__init__":
            return updated_node
        args = list(updated_node.args)
        anchor = next(
            (index for index, arg in enumerate(args) if m.matches(arg, _FORWARDS_RECURRENT_ACTIVATION)),
            None,
        )
        if anchor is None:
            return updated_node
        passed = {arg.keyword.value for arg in args if arg.keyword is not None}
        missing = [name for name in self.names if name not in passed]
        self.record("forwarding", len(self.names) - len(missing))
        if not missing:
            return updated_node
        template = args[anchor]
        if not isinstance(template.comma, cst.Comma):
            template = template.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            args[anchor] = template
        added = [template.with_changes(keyword=cst.Name(name), value=cst.Name(name)) for name in missing]
        if anchor == len(args) - 1:
            # The anchor was last: keep the call's original (absent) trailing comma.
            added[-1] = added[-1].with_changes(comma=updated_node.args[anchor].comma)
        self.record("forwarding", len(missing))
        return updated_node.with_changes(args=[*args[: anchor + 1], *added, *args[anchor + 1 :]])
