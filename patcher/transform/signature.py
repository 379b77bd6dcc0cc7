"""Append the five parameters, defaulting to None, to every target __init__."""

from __future__ import annotations

import libcst as cst

from patcher.transform.base import MethodDefTransformer
from patcher.transform.layout import insert_after


class AddParametersTransformer(MethodDefTransformer[cst.Parameters]):
    """``def __init__(self, ..., stateful=False, **kwargs)`` gains
    ``activation_i=None, ..., recurrent_activation_o=None`` before ``**kwargs``.

    Appending (never inserting) keeps every positional call's meaning.
    """

    edited_method, edited_part = "__init__", "params"

    def _extend(self, params: cst.Parameters) -> cst.Parameters:
        existing = {param.name.value for param in (*params.params, *params.kwonly_params)}
        missing = [name for name in self.names if name not in existing]
        self.record("signature", len(self.names) - len(missing))
        if not missing:
            return params
        # Keyword-only parameters, if any, come last; append after them.
        field = "kwonly_params" if params.kwonly_params else "params"
        current = list(getattr(params, field))
        equal = _equal_sign(current)
        added = [cst.Param(name=cst.Name(name), equal=equal, default=cst.Name("None")) for name in missing]
        self.record("signature", len(missing))
        if not current:
            return params.with_changes(**{field: added})
        return params.with_changes(**{field: insert_after(current, len(current) - 1, added, "whitespace_after_param")})


def _equal_sign(current: list[cst.Param]) -> cst.AssignEqual:
    """The `=` of the last defaulted parameter (Keras writes `a=1`, not `a = 1`)."""
    for param in reversed(current):
        if isinstance(param.equal, cst.AssignEqual):
            return param.equal
    return cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))
