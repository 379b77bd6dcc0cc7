"""Keep LSTM/GRU off their fused kernels when a per-gate activation overrides its default."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst

from patcher.fused import (
    Names,
    conjunct,
    entry_point,
    entry_uses,
    is_guard,
    own_cell_guard,
    per_gate_callee,
    wrapped_layer_guard,
)
from patcher.layersets import LayerSet
from patcher.spec import EntryKind, EntryPoint, Parameter
from patcher.transform.base import ClassScopedTransformer
from patcher.transform.per_gate_loop import binds_loop_names
from patcher.transform.shapes import is_name

# Expressions that bind looser than `and`: `a or b` + ` and not g` needs parentheses.
_LOOSER_THAN_AND = (cst.BooleanOperation, cst.IfExp, cst.Lambda, cst.NamedExpr)


class FusedGuardTransformer(ClassScopedTransformer):
    """The fused kernels (patches/fused.toml) compute the gates with hard-coded
    sigmoid/tanh and never call the cell, so every branch of a target class
    that leads to one gains the conjunct ``and not <guard>`` (patcher/fused.py)::

        self._could_use_gpu_kernel = (...)                 # tf_keras, Keras 2: a flag
          ->  (... and not self.cell._overriding_activations)
        if self.use_cudnn in ("auto", True):               # Keras 3: around backend.lstm()
          ->  if self.use_cudnn in ("auto", True) and not self.cell._overriding_activations:
        if self._can_attempt_fused_lstm(mask, initial_state):   # a "wrapper": Bidirectional
          ->  if (self._can_attempt_fused_lstm(mask, initial_state)
                  and not getattr(getattr(self.forward_layer, "cell", None), "_overriding_activations", ())
                  and not getattr(getattr(self.backward_layer, ...), ...)):

    A branch is a top-level ``if`` of a method whose test or body uses an entry
    point, directly or through a method of the class (``self._call_fused_lstm``).
    A "layer" guards its own cell; a "wrapper" guards, for this layer set's
    entry points only, every layer whose ``.cell`` that code reads, never
    assuming the layer is patched. In Keras 3 the layer then falls through to
    the cell loop, and ``use_cudnn=True`` raises the ValueError stock raises
    when cuDNN cannot be used.

    Except where a Keras 3 layer's branch reaches a kernel only by calling it
    there, a kernel with a per-gate loop (fused.toml), in a module binding the
    names the loop uses: then the call is guarded, not the branch::

        out = backend.lstm(dp_sequences, ...)
          ->  out = (backend.lstm if not self.cell._overriding_activations else self._per_gate_lstm)(
                  dp_sequences, ...)

    A layer with per-gate activations takes stock's branch (its dropout, its
    conditions, its fallback to the cell loop on NotImplementedError) and only
    the loop differs: per_gate_loop.py adds the method, which runs under
    PyTorch and raises NotImplementedError elsewhere.

    Which branches is decided on the module's ``ast`` (``tree``, parsed from
    the same source; by default from the module's code): walking libcst nodes
    would cost ten times as much.
    """

    def __init__(
        self,
        targets: dict[str, str],
        params: tuple[Parameter, ...],
        layer_set: LayerSet,
        tree: ast.Module | None = None,
    ) -> None:
        super().__init__(targets, params)
        self.layer_set = layer_set
        self.tree = tree
        self.branches: _Branches = {}
        self.module_names = Names([])

    def visit_Module(self, node: cst.Module) -> bool:
        tree = self.tree if self.tree is not None else ast.parse(node.code)
        nodes = list(ast.walk(tree))
        self.module_names = Names(nodes)
        self.branches = _branches(nodes, self.module_names, self.targets, self.layer_set)
        return True

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        if self.role in ("layer", "wrapper"):
            branches = self.branches.get(updated_node.name.value, {})
            body, method_index = [], 0
            for statement in updated_node.body.body:
                if isinstance(statement, cst.FunctionDef):
                    statement = self._guard_method(statement, branches.get(method_index, {}))
                    method_index += 1
                body.append(statement)
            updated_node = updated_node.with_changes(body=updated_node.body.with_changes(body=body))
        return super().leave_ClassDef(original_node, updated_node)

    def _guard_method(self, method: cst.FunctionDef, branches: dict[int, _Branch]) -> cst.FunctionDef:
        if not isinstance(method.body, cst.IndentedBlock):
            return method
        statements, if_index = [], 0
        for statement in method.body.body:
            if isinstance(statement, cst.If):
                branch = branches.get(if_index)
                if_index += 1
                if branch is not None:
                    self.record("fused guard")
                    if branch.per_gate_calls:
                        self.record("per-gate call")
                        calls = _PerGateCalls(self.module_names, self.layer_set)
                        statement = cst.ensure_type(statement.visit(calls), cst.If)
                    else:
                        test = with_conjuncts(statement.test, [conjunct(guard) for guard in branch.guards])
                        statement = statement.with_changes(test=test)
            elif self.role == "layer":
                statement = self._guard_flag(statement)
            statements.append(statement)
        return method.with_changes(body=method.body.with_changes(body=statements))

    def _guard_flag(self, statement: cst.BaseStatement) -> cst.BaseStatement:
        """``self._could_use_gpu_kernel = (...)`` (tf_keras, Keras 2)."""
        if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1):
            return statement
        assign = statement.body[0]
        if not (isinstance(assign, cst.Assign) and len(assign.targets) == 1):
            return statement
        target = assign.targets[0].target
        if not (isinstance(target, cst.Attribute) and is_name(target.value, "self")):
            return statement
        entry = entry_point(target.attr.value)
        if entry is None or entry.kind != EntryKind.FLAG:
            return statement
        self.record("fused guard")
        guarded = assign.with_changes(value=with_conjuncts(assign.value, [conjunct(own_cell_guard())]))
        return statement.with_changes(body=[guarded])


@dataclass(frozen=True)
class _Branch:
    guards: tuple[str, ...] = ()  # what its test gains: ``and not <guard>`` for each
    per_gate_calls: bool = False  # instead, its kernel calls go to the layer's per-gate loop


# class -> method number -> number of a top-level `if` in it -> what it gains
_Branches = dict[str, dict[int, dict[int, _Branch]]]


def _branches(nodes: list[ast.AST], names: Names, targets: dict[str, str], layer_set: LayerSet) -> _Branches:
    """class -> method number -> number of a top-level ``if`` in it -> what it gains.

    ``nodes``: all of the module's (``list(ast.walk(tree))``). Numbers count a
    class's methods and a method's top-level ``if`` statements in order, which
    ast and libcst see alike.
    """
    found: _Branches = {}
    loop_names = binds_loop_names(names)
    for node in nodes:
        if not isinstance(node, ast.ClassDef):
            continue
        role = targets.get(node.name)
        if role not in ("layer", "wrapper"):
            continue
        methods = [item for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if role == "layer" and any(_assigns_flag(statement) for method in methods for statement in method.body):
            continue  # tf_keras, Keras 2: the layer decides once, in the flag; guarded there
        reach = _Reach({method.name: method for method in methods}, names, role, layer_set)
        for method_index, method in enumerate(methods):
            ifs = [statement for statement in method.body if isinstance(statement, ast.If)]
            for if_index, statement in enumerate(ifs):
                roots = [statement.test, *statement.body]
                entries, cell_owners = reach.of(roots)
                if not entries:
                    continue
                if role == "layer" and loop_names and reach.only_per_gate_calls(roots):
                    branch = _Branch(per_gate_calls=True)
                elif role == "layer":
                    branch = _Branch(guards=(own_cell_guard(),))
                elif cell_owners:
                    branch = _Branch(guards=tuple(wrapped_layer_guard(f"self.{owner}") for owner in cell_owners))
                else:
                    continue  # no layer to guard: the pipeline reports the missing edit
                found.setdefault(node.name, {}).setdefault(method_index, {})[if_index] = branch
    return found


def _assigns_flag(statement: ast.stmt) -> bool:
    """``self._could_use_gpu_kernel = ...``"""
    if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1):
        return False
    target = statement.targets[0]
    if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"):
        return False
    entry = entry_point(target.attr)
    return entry is not None and entry.kind == EntryKind.FLAG


class _Reach:
    """The entry points a class's code reaches, directly or through ``self.<method>``, and the
    layers whose ``.cell`` it reads (``X`` of ``self.X.cell``)."""

    def __init__(
        self, methods: dict[str, ast.FunctionDef | ast.AsyncFunctionDef], names: Names, role: str, layer_set: LayerSet
    ) -> None:
        self.methods, self.names, self.role, self.layer_set = methods, names, role, layer_set
        self._memo: dict[str, tuple[set[str], list[str]]] = {}

    def of(self, nodes: Sequence[ast.AST]) -> tuple[set[str], list[str]]:
        entries: set[str] = set()
        cell_owners: list[str] = []
        for root in nodes:
            entries |= {entry.name for _, entry in self._uses(root)}
            for node in ast.walk(root):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                    more, owners = self._method(node.attr)
                    entries |= more
                    cell_owners += owners
                elif (
                    isinstance(node, ast.Attribute)
                    and node.attr == "cell"
                    and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name)
                    and node.value.value.id == "self"
                ):
                    cell_owners.append(node.value.attr)
        return entries, list(dict.fromkeys(cell_owners))

    def only_per_gate_calls(self, nodes: Sequence[ast.AST]) -> bool:
        """Is every entry point ``nodes`` reach a call, written there, of a kernel with a
        per-gate loop for this layer set (or such a call already given the per-gate callee)?
        Any other use, or one in a method they call, needs the branch guard."""
        for root in nodes:
            callees = set()
            for node in ast.walk(root):
                if isinstance(node, ast.Call):
                    callee = node.func
                    if isinstance(callee, ast.IfExp) and is_guard(callee.test):
                        callee = callee.body  # already patched
                    callees.add(id(callee))
                elif (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                    and self._method(node.attr)[0]
                ):
                    return False
            for node, entry in self._uses(root):
                if id(node) not in callees or not entry.has_per_gate_loop(self.layer_set):
                    return False
        return True

    def _uses(self, root: ast.AST) -> list[tuple[ast.expr, EntryPoint]]:
        return [(node, entry) for node, entry in entry_uses(ast.walk(root), self.names) if self._concerns(entry)]

    def _concerns(self, entry: EntryPoint) -> bool:
        """A layer guards every kernel it reaches; a wrapper those of this layer set (or shared)."""
        if entry.kind == EntryKind.FLAG:
            return False  # guarded where it is assigned
        return self.role == "layer" or not entry.sets or self.layer_set in entry.sets

    def _method(self, name: str) -> tuple[set[str], list[str]]:
        if name not in self.methods:
            return set(), []
        if name not in self._memo:
            self._memo[name] = (set(), [])  # a recursive method reaches nothing more through itself
            self._memo[name] = self.of(self.methods[name].body)
        return self._memo[name]


class _PerGateCalls(cst.CSTTransformer):
    """``backend.lstm(...)`` -> ``(backend.lstm if not <guard> else self._per_gate_lstm)(...)``
    for each call of a kernel with a per-gate loop for ``layer_set``."""

    def __init__(self, names: Names, layer_set: LayerSet) -> None:
        super().__init__()
        self.names, self.layer_set = names, layer_set

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if not isinstance(updated_node.func, (cst.Name, cst.Attribute)):
            return updated_node
        kernel = _code(updated_node.func)
        entry = entry_point(self.names.dotted(ast.parse(kernel, mode="eval").body))
        if entry is None or not entry.has_per_gate_loop(self.layer_set):
            return updated_node
        return updated_node.with_changes(func=cst.parse_expression(per_gate_callee(kernel, entry)))


def with_conjuncts(test: cst.BaseExpression, conjuncts: list[str]) -> cst.BaseExpression:
    """``test and <each conjunct>``, leaving out those already there.

    A parenthesised multi-line ``and`` chain (black's style in Keras) is
    continued in its own style; two or more new conjuncts make one.
    """
    present = {_code(operand) for operand in _and_operands(test)}
    missing = [cst.parse_expression(text) for text in dict.fromkeys(conjuncts) if text not in present]
    if not missing:
        return test
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And) and test.lpar:
        chain: cst.BaseExpression = test.with_changes(lpar=[], rpar=[])
        for operand in missing:
            chain = cst.BooleanOperation(left=chain, operator=test.operator, right=operand)
        return chain.with_changes(lpar=test.lpar, rpar=test.rpar)
    if isinstance(test, _LOOSER_THAN_AND) and not test.lpar and not _is_and(test):
        test = test.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    if len(missing) == 1:
        return cst.BooleanOperation(left=test, operator=cst.And(), right=missing[0])
    chain = test
    for operand in missing:
        chain = cst.BooleanOperation(left=chain, operator=cst.And(whitespace_before=_new_line("    ")), right=operand)
    return chain.with_changes(
        lpar=[cst.LeftParen(whitespace_after=_new_line("    "))], rpar=[cst.RightParen(whitespace_before=_new_line(""))]
    )


def _new_line(indent: str) -> cst.ParenthesizedWhitespace:
    return cst.ParenthesizedWhitespace(indent=True, last_line=cst.SimpleWhitespace(indent))


def _is_and(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.BooleanOperation) and isinstance(node.operator, cst.And)


def _and_operands(node: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(node, cst.BooleanOperation) and isinstance(node.operator, cst.And):
        return [*_and_operands(node.left), *_and_operands(node.right)]
    return [node]


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)
