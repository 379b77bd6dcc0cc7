"""Small structural predicates over libcst nodes.

These stand in for libcst.matchers, whose import alone (~0.25 s) would cost
a quarter of `apply`'s time budget; each reads like the matcher it replaces.
"""

from __future__ import annotations

import libcst as cst


def is_name(node: cst.CSTNode | None, value: str) -> bool:
    return isinstance(node, cst.Name) and node.value == value


def is_self_attribute(node: cst.CSTNode | None, attribute: str) -> bool:
    """``self.<attribute>``"""
    return isinstance(node, cst.Attribute) and is_name(node.value, "self") and is_name(node.attr, attribute)


def single_assign(statement: cst.CSTNode) -> cst.Assign | None:
    """The Assign of a line ``<one target> = <value>``, else None."""
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        assign = statement.body[0]
        if isinstance(assign, cst.Assign) and len(assign.targets) == 1:
            return assign
    return None


def assigns_self_attribute(statement: cst.CSTNode, attribute: str) -> bool:
    """``self.<attribute> = ...``"""
    assign = single_assign(statement)
    return assign is not None and is_self_attribute(assign.targets[0].target, attribute)


def docstring(statement: cst.CSTNode) -> cst.SimpleString | None:
    """The string of a line that is only a (non-concatenated) string literal."""
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        expression = statement.body[0]
        if isinstance(expression, cst.Expr) and isinstance(expression.value, cst.SimpleString):
            return expression.value
    return None


def is_property(function: cst.FunctionDef) -> bool:
    """``@property def ...`` (exactly that one decorator)."""
    return len(function.decorators) == 1 and is_name(function.decorators[0].decorator, "property")


class RenameSelfAttribute(cst.CSTTransformer):
    """``self.<old>`` -> ``self.<new>`` everywhere in a subtree."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__()
        self.old, self.new = old, new

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.Attribute:
        if is_self_attribute(updated_node, self.old):
            return updated_node.with_changes(attr=cst.Name(self.new))
        return updated_node


def contains_self_attribute(node: cst.CSTNode, attribute: str) -> bool:
    finder = _Finder(attribute)
    node.visit(finder)
    return finder.found


class _Finder(cst.CSTVisitor):
    def __init__(self, attribute: str) -> None:
        super().__init__()
        self.attribute, self.found = attribute, False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.found |= is_self_attribute(node, self.attribute)
        return not self.found
