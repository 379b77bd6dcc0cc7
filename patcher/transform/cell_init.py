"""Resolve the five activations in the cell's __init__."""

from __future__ import annotations

import libcst as cst

from patcher.fused import OVERRIDING_ATTRIBUTE
from patcher.spec import Parameter
from patcher.transform.base import MethodDefTransformer
from patcher.transform.shapes import assigns_self_attribute, is_name, single_assign

EXPLICIT_ATTRIBUTE = "_explicit_activations"


class ResolveActivationsTransformer(MethodDefTransformer[cst.BaseSuite]):
    """After ``self.recurrent_activation = activations.get(...)`` the cell sets
    ``self.activation_i = self.activation if activation_i is None else
    activations.get(activation_i)`` (and the other four), plus
    ``self._explicit_activations``: the names the caller gave, so that
    ``get_config`` writes only those and a layer that uses none of the five
    still serialises exactly as on stock Keras.

    With ``overriding`` (a layer set with fused kernels: LSTM, GRU), also
    ``self._overriding_activations``: the names whose function is not the one
    they inherit, which keep the layer off the fused kernels (``activations.get``
    returns the same function object for the same name, so
    ``recurrent_activation_f="sigmoid"`` beside the default
    ``recurrent_activation="sigmoid"`` overrides nothing and stays as fast as
    stock). ConvLSTM has no fused kernel, and its files stay as they were.
    """

    edited_method, edited_role = "__init__", "cell"

    def __init__(self, targets: dict[str, str], params: tuple[Parameter, ...], overriding: bool = False) -> None:
        super().__init__(targets, params)
        self.overriding = overriding

    def _extend(self, body: cst.BaseSuite) -> cst.BaseSuite:
        if not isinstance(body, cst.IndentedBlock):
            return body  # `def __init__(...): ...` on one line: no `self.recurrent_activation = ...` statement
        statements = list(body.body)
        explicit = next(
            (
                index
                for index, statement in enumerate(statements)
                if assigns_self_attribute(statement, EXPLICIT_ATTRIBUTE)
            ),
            None,
        )
        if explicit is not None:
            self.record("resolve")
            if self.overriding and not any(assigns_self_attribute(s, OVERRIDING_ATTRIBUTE) for s in statements):
                statements.insert(explicit + 1, cst.parse_statement(self._overriding()))
                return body.with_changes(body=statements)
            return body
        found = next(
            (
                (index, call)
                for index, call in enumerate(map(_recurrent_activation_call, statements))
                if call is not None
            ),
            None,
        )
        if found is None:
            return body
        anchor, call = found
        getter = cst.Module([]).code_for_node(call.func)
        added = [cst.parse_statement(self._resolve(param.name, param.inherits, getter)) for param in self.params]
        added.append(cst.parse_statement(self._explicit()))
        if self.overriding:
            added.append(cst.parse_statement(self._overriding()))
        self.record("resolve")
        return body.with_changes(body=[*statements[: anchor + 1], *added, *statements[anchor + 1 :]])

    @staticmethod
    def _resolve(name: str, inherits: str, getter: str) -> str:
        return f"self.{name} = (\n    {getter}({name})\n    if {name} is not None\n    else self.{inherits}\n)\n"

    def _explicit(self) -> str:
        pairs = "".join(f'        ("{name}", {name}),\n' for name in self.names)
        return (
            f"self.{EXPLICIT_ATTRIBUTE} = tuple(\n"
            "    name\n"
            "    for name, value in (\n"
            f"{pairs}"
            "    )\n"
            "    if value is not None\n"
            ")\n"
        )

    def _overriding(self) -> str:
        triples = "".join(
            f'        ("{param.name}", self.{param.name}, self.{param.inherits}),\n' for param in self.params
        )
        return (
            f"self.{OVERRIDING_ATTRIBUTE} = tuple(\n"
            "    name\n"
            "    for name, function, inherited in (\n"
            f"{triples}"
            "    )\n"
            "    if function is not inherited\n"
            ")\n"
        )


def _recurrent_activation_call(statement: cst.BaseStatement) -> cst.Call | None:
    """The call ``activations.get(recurrent_activation)`` of
    ``self.recurrent_activation = activations.get(recurrent_activation)``, else None."""
    assign = single_assign(statement)
    if (
        assign is not None
        and assigns_self_attribute(statement, "recurrent_activation")
        and isinstance(assign.value, cst.Call)
        and len(assign.value.args) == 1
        and is_name(assign.value.args[0].value, "recurrent_activation")
    ):
        return assign.value
    return None
