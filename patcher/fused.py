"""The guard that keeps a patched LSTM/GRU off the fused kernels, in one place.

The transform (patcher/transform/fused_guard.py) writes it as a conjunct
``and not <guard>`` on each branch that leads to a fused kernel; the audit
(patcher/audit.py) recognises it with ``is_guard``. Both find the kernels with
``entry_point``. Standard library only: the audit must not import libcst.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator, Sequence

from patcher.spec import EntryKind, EntryPoint, fused_kernels

# The cell attribute cell_init.py sets: the per-gate parameters whose function
# is not the one they inherit. Empty means the fused kernel computes exactly
# what the cell would, so it may run.
OVERRIDING_ATTRIBUTE = "_overriding_activations"


def own_cell_guard(layer: str = "self") -> str:
    """For a layer whose cell is patched with it (LSTM's own LSTMCell)."""
    return f"{layer}.cell.{OVERRIDING_ATTRIBUTE}"


def wrapped_layer_guard(layer: str) -> str:
    """For a layer a wrapper holds, which may be unpatched (GRU when only `--layers lstm`
    is applied) or have no cell attribute of ours: such a layer never overrides."""
    return f'getattr(getattr({layer}, "cell", None), "{OVERRIDING_ATTRIBUTE}", ())'


def conjunct(guard: str) -> str:
    """What a guarded test gains: ``if <test> and <conjunct>:``."""
    return f"not {guard}"


def per_gate_loop_method(entry: EntryPoint) -> str:
    """The method the transform adds to a Keras 3 layer for a kernel with a per-gate loop
    (fused.toml's ``per_gate_loop``): ``_per_gate_lstm`` for ``backend.lstm``."""
    return f"_per_gate_{entry.name}"


def per_gate_callee(kernel: str, entry: EntryPoint) -> str:
    """What a Keras 3 layer calls instead of ``kernel`` (``backend.lstm``, the code as written):
    the kernel while no per-gate activation overrides, else the layer's per-gate loop. The
    guard is the test of the conditional expression, which the audit follows like an ``if``."""
    return f"({kernel} if {conjunct(own_cell_guard())} else self.{per_gate_loop_method(entry)})"


def is_guard(node: ast.expr) -> bool:
    """Is ``node`` a conjunct ``not <guard>`` that the transform writes, for any layer?"""
    if not (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return False
    guard = node.operand
    if isinstance(guard, ast.Attribute) and isinstance(guard.value, ast.Attribute):
        return ast.unparse(guard) == own_cell_guard(ast.unparse(guard.value.value))
    if isinstance(guard, ast.Call) and guard.args and isinstance(guard.args[0], ast.Call) and guard.args[0].args:
        return ast.unparse(guard) == _normalised(wrapped_layer_guard(ast.unparse(guard.args[0].args[0])))
    return False


def entry_point(dotted: str) -> EntryPoint | None:
    """The fused-kernel entry point a dotted name (``keras.src.backend.rnn.lstm``) names, if any."""
    if not may_name_entry(dotted.rpartition(".")[2]):
        return None
    parts = tuple(dotted.split("."))
    return next((entry for entry in fused_kernels().entries if entry.matches(parts)), None)


def may_name_entry(name: str) -> bool:
    """A quick test on the last part of a dotted name (most names are no entry point)."""
    exact, prefixes = _entry_names()
    return name in exact or name.startswith(prefixes)


@functools.cache
def _entry_names() -> tuple[frozenset[str], tuple[str, ...]]:
    entries = fused_kernels().entries
    return (
        frozenset(entry.name for entry in entries if not entry.prefix),
        tuple(entry.name for entry in entries if entry.prefix),
    )


def entry_uses(nodes: Iterable[ast.AST], names: Names) -> Iterator[tuple[ast.expr, EntryPoint]]:
    """Every use of an entry point among ``nodes`` (``ast.walk(root)``): a name or attribute that
    reads one (a flag: that is assigned), or ``getattr(backend, "lstm")``. ``backend.rnn.lstm``
    is one use, at its outermost attribute."""
    for node in nodes:
        if isinstance(node, (ast.Name, ast.Attribute)):
            # An attribute's last part is its own; a name's may be an alias's (`fused` for lstm).
            if isinstance(node, ast.Attribute) and not may_name_entry(node.attr):
                continue
            entry = entry_point(names.dotted(node))
            if entry is not None and isinstance(node.ctx, ast.Store) == (entry.kind == EntryKind.FLAG):
                yield node, entry
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            entry = entry_point(f"{names.dotted(node.args[0])}.{node.args[1].value}")
            if entry is not None:
                yield node, entry


class Names:
    """What a module's names stand for, as dotted names: its imports (at any depth, so
    over all scopes at once) and aliases such as ``K = backend``."""

    def __init__(self, nodes: Sequence[ast.AST]) -> None:
        """``nodes``: all of the module's (``list(ast.walk(tree))``)."""
        self.bound: dict[str, str] = {}
        self.star: list[str] = []  # modules of `from <module> import *`
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    first = alias.name.split(".")[0]
                    self.bound[alias.asname or first] = alias.name if alias.asname else first
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""  # relative: `from .. import backend` -> backend
                for alias in node.names:
                    if alias.name == "*":
                        self.star.append(module)
                    else:
                        self.bound[alias.asname or alias.name] = f"{module}.{alias.name}" if module else alias.name
        for node in nodes:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, (ast.Name, ast.Attribute))
            ):
                full = self.dotted(node.value)
                if "backend" in full.split(".") or entry_point(full) is not None:
                    self.bound.setdefault(node.targets[0].id, full)

    def dotted(self, node: ast.expr) -> str:
        """``K.rnn.lstm`` -> ``keras.src.backend.rnn.lstm`` after ``from keras.src import backend as K``;
        an unknown base (a call, a subscript) is ``?``: ``?.defun_layer``."""
        if isinstance(node, ast.Name):
            if node.id in self.bound:
                return self.bound[node.id]
            star = next((module for module in self.star if "backend" in module.split(".")), None)
            return f"{star}.{node.id}" if star else node.id
        if isinstance(node, ast.Attribute):
            return f"{self.dotted(node.value)}.{node.attr}"
        return "?"


@functools.cache
def _normalised(code: str) -> str:
    """``code`` as ``ast.unparse`` writes it (quotes, spacing)."""
    return ast.unparse(ast.parse(code, mode="eval").body)
