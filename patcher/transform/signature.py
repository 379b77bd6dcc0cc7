"""Append the five parameters, defaulting to None, to every target __init__."""

from __future__ import annotations

import libcst as cst

from patcher.transform.base import ClassScopedTransformer


class AddParametersTransformer(ClassScopedTransformer):
    """``def __init__(self, ..., stateful=False, **kwargs)`` gains
    ``activation_i=None, ..., recurrent_activation_o=None`` before ``**kwargs``.

    Appending (never inserting) keeps every positional call's meaning.
    """

    methods = frozenset({"__init__"})

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef:
        if self.method == "__init__":
            updated_node = updated_node.with_changes(params=self._extend(updated_node.params))
        return super().leave_FunctionDef(original_node, updated_node)

    def _extend(self, params: cst.Parameters) -> cst.Parameters:
        existing = {param.name.value for param in (*params.params, *params.kwonly_params)}
        missing = [name for name in self.names if name not in existing]
        self.record("signature", len(self.names) - len(missing))
        if not missing:
            return params
        # Keyword-only parameters, if any, come last; append after them.
        field = "kwonly_params" if params.kwonly_params else "params"
        current = list(getattr(params, field))
        template = _template_param(current)
        added = [
            template.with_changes(name=cst.Name(name), default=cst.Name("None"), annotation=None)
            for name in missing
        ]
        if current and current[-1].comma is cst.MaybeSentinel.DEFAULT:
            current[-1] = current[-1].with_changes(comma=template.comma)
        self.record("signature", len(missing))
        return params.with_changes(**{field: [*current, *added]})


def _template_param(current: list[cst.Param]) -> cst.Param:
    """A parameter to copy the `=` and comma formatting from (the last with a default)."""
    for param in reversed(current):
        if param.default is not None:
            comma = param.comma if isinstance(param.comma, cst.Comma) else cst.Comma(
                whitespace_after=cst.SimpleWhitespace(" ")
            )
            return param.with_changes(comma=comma)
    return cst.Param(
        name=cst.Name("_"),
        equal=cst.AssignEqual(
            whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
        ),
        comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")),
    )
