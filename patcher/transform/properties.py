"""Read-only layer properties for the five, beside ``recurrent_activation``."""

from __future__ import annotations

import libcst as cst

from patcher.transform.base import ClassScopedTransformer
from patcher.transform.shapes import is_property


class PropertiesTransformer(ClassScopedTransformer):
    """A layer with ``@property def recurrent_activation`` gains
    ``@property def activation_i(self): return self.cell.activation_i`` etc.
    """

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        # A one-line class body (`class X(Layer): pass`) has no properties to stand beside.
        if self.role == "layer" and isinstance(updated_node.body, cst.IndentedBlock):
            updated_node = updated_node.with_changes(body=self._extend(updated_node.body))
        return super().leave_ClassDef(original_node, updated_node)

    def _extend(self, body: cst.IndentedBlock) -> cst.IndentedBlock:
        statements = list(body.body)
        properties = {
            statement.name.value: index
            for index, statement in enumerate(statements)
            if isinstance(statement, cst.FunctionDef) and is_property(statement)
        }
        if "recurrent_activation" not in properties:
            return body
        missing = [name for name in self.names if name not in properties]
        if not missing:
            return body
        anchor = properties["recurrent_activation"]
        # One blank line before each, as between Keras's methods; never copy
        # the anchor's leading comments.
        added = [
            cst.parse_statement(f"@property\ndef {name}(self):\n    return self.cell.{name}\n").with_changes(
                leading_lines=[cst.EmptyLine(indent=False)]
            )
            for name in missing
        ]
        return body.with_changes(body=[*statements[: anchor + 1], *added, *statements[anchor + 1 :]])
