"""Shared bookkeeping for transformers that edit only some classes."""

from __future__ import annotations

from collections import Counter
from typing import Generic, TypeVar

import libcst as cst

from patcher.spec import Parameter


class ClassScopedTransformer(cst.CSTTransformer):
    """Tracks the enclosing class and method; counts edits per class.

    ``targets`` maps a class name to its role ("cell" or "layer"). Edits are
    counted as ``edits[(class_name, kind)]`` so the pipeline can tell a Keras
    whose structure we did not recognise from one we patched fully.
    """

    # Methods whose bodies this transformer edits; others are not descended
    # into (libcst visits are the slow part of `apply`).
    methods: frozenset[str] = frozenset()

    def __init__(self, targets: dict[str, str], params: tuple[Parameter, ...]) -> None:
        super().__init__()
        self.targets = targets
        self.params = params
        self.edits: Counter[tuple[str, str]] = Counter()
        self._scopes: list[tuple[str, str]] = []  # ("class" | "def", name)

    @property
    def target_class(self) -> str | None:
        """The innermost class, if we patch it (in its body or its methods)."""
        for kind, name in reversed(self._scopes):
            if kind == "class":
                return name if name in self.targets else None
        return None

    @property
    def role(self) -> str | None:
        name = self.target_class
        return self.targets[name] if name else None

    @property
    def method(self) -> str | None:
        """The method we are in, when directly inside a target class."""
        if len(self._scopes) >= 2 and self._scopes[-2][0] == "class" and self._scopes[-1][0] == "def":
            return self._scopes[-1][1] if self.target_class else None
        return None

    @property
    def names(self) -> list[str]:
        return [param.name for param in self.params]

    def record(self, kind: str, count: int = 1) -> None:
        name = self.target_class
        # Every caller edits only inside a target class (it checks role, method or target_class first).
        assert name is not None, f"edit {kind!r} recorded outside a target class"
        self.edits[(name, kind)] += count

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self._scopes.append(("class", node.name.value))
        return node.name.value in self.targets

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        self._scopes.pop()
        return updated_node

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self._scopes.append(("def", node.name.value))
        return node.name.value in self.methods

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef | cst.RemovalSentinel:
        self._scopes.pop()
        return updated_node


# The part of a FunctionDef a MethodDefTransformer edits: Parameters (``params``) or BaseSuite (``body``).
Part = TypeVar("Part", cst.Parameters, cst.BaseSuite)


class MethodDefTransformer(ClassScopedTransformer, Generic[Part]):
    """Edits one part of one method's def (its ``params`` or ``body`` list) as
    a whole, in leave_FunctionDef: no need to walk the body (``methods`` stays empty).
    A subclass names the part's type: ``MethodDefTransformer[cst.Parameters]`` edits ``params``.
    """

    edited_method: str = ""
    edited_part: str = "body"  # "body" or "params"
    edited_role: str | None = None  # only classes of this role; None: every target class

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef | cst.RemovalSentinel:
        if self.method == self.edited_method and self.edited_role in (None, self.role):
            part: Part = getattr(updated_node, self.edited_part)
            part = self._extend(part)
            updated_node = updated_node.with_changes(**{self.edited_part: part})
        return super().leave_FunctionDef(original_node, updated_node)

    def _extend(self, part: Part) -> Part:
        raise NotImplementedError
