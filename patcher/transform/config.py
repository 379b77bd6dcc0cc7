"""Serialise the five activations in get_config, only those the caller gave."""

from __future__ import annotations

import libcst as cst

from patcher.transform.base import MethodDefTransformer
from patcher.transform.cell_init import EXPLICIT_ATTRIBUTE
from patcher.transform.shapes import is_name, single_assign


class ConfigTransformer(MethodDefTransformer[cst.BaseSuite]):
    """After the ``config = {...}`` literal of a target ``get_config``::

        for name in self._explicit_activations:        # self.cell. in layers
            config[name] = activations.serialize(getattr(self, name))

    A layer built without the five therefore has a config stock Keras loads.
    """

    edited_method = "get_config"

    def _extend(self, body: cst.BaseSuite) -> cst.BaseSuite:
        if not isinstance(body, cst.IndentedBlock):
            return body  # `def get_config(self): return {...}` on one line: no `config = {...}` statement
        owner = "self" if self.role == "cell" else "self.cell"
        statements = list(body.body)
        if any(_is_our_loop(statement) for statement in statements):
            self.record("config")
            return body
        for index, statement in enumerate(statements):
            serializer = _activation_serializer(statement)
            if serializer is None:
                continue
            loop = cst.parse_statement(
                f"for name in {owner}.{EXPLICIT_ATTRIBUTE}:\n    config[name] = {serializer}(getattr({owner}, name))\n"
            )
            self.record("config")
            return body.with_changes(body=[*statements[: index + 1], loop, *statements[index + 1 :]])
        return body


def _activation_serializer(statement: cst.BaseStatement) -> str | None:
    """The code of ``activations.serialize`` in ``config = {"activation": ...}``."""
    assign = single_assign(statement)
    if assign is None or not is_name(assign.targets[0].target, "config") or not isinstance(assign.value, cst.Dict):
        return None
    for element in assign.value.elements:
        if (
            isinstance(element, cst.DictElement)
            and isinstance(element.key, cst.SimpleString)
            and element.key.evaluated_value == "activation"
            and isinstance(element.value, cst.Call)
        ):
            return cst.Module([]).code_for_node(element.value.func)
    return None


def _is_our_loop(statement: cst.BaseStatement) -> bool:
    return (
        isinstance(statement, cst.For)
        and isinstance(statement.iter, cst.Attribute)
        and is_name(statement.iter.attr, EXPLICIT_ATTRIBUTE)
    )
