"""Fail closed: find every use of a fused LSTM/GRU kernel in an installed Keras
and tell whether the patch's guard keeps per-gate layers away from it.

The transform guards the branches it knows (LSTM, GRU, Bidirectional); a
release that adds another call site would be silently wrong, so before
``apply --layers lstm|gru`` writes anything this audit reads the flavour's
whole package (as patched, in memory) and lists every use of an entry point
(patches/fused.toml) outside the backend implementations and tests, each
covered or not, and why. Standard library only, text first: a file is parsed
only if it names an entry point.

A use is covered when
  - a branch on the way to it tests the guard (patcher/fused.py): it is in
    the body of ``if <... and> not <guard>``, in the else of ``if not <flag>``
    where every assignment of the flag in the module carries the guard, or
    after the guard in an ``and`` chain (a predicate such as ``cudnn_ok``:
    anywhere in a chain with the guard, since it only helps decide);
  - it is in a function every use of which (in its module, and none in other
    modules) is covered, such as Bidirectional's ``_call_fused_lstm``; a
    function nobody calls is not;
  - it is inside a kernel's own definition (a function named like an entry
    point, or a fused.toml kernel_definition), whose own uses are audited;
  - it is in a fused-only layer of fused.toml's allow-list.
Anything else, an early ``return`` before the kernel included, is uncovered.
A ``lambda`` counts as run where it is written.
"""

from __future__ import annotations

import ast
import functools
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from patcher.enums import TextEnum
from patcher.fused import Names, entry_point, entry_uses, is_guard
from patcher.layersets import FUSED_SETS, LayerSet
from patcher.spec import EntryKind, EntryPoint, fused_kernels
from patcher.text import where_not_utf8


class Coverage(TextEnum):
    GUARDED = "guarded"  # a branch on the way tests the guard
    CALLERS_GUARDED = "callers guarded"  # in a function every use of which is covered
    KERNEL = "kernel"  # inside a kernel's own definition
    ALLOWED = "allowed"  # in a fused-only layer of the allow-list
    UNCOVERED = "uncovered"


@dataclass(frozen=True)
class CallSite:
    path: str  # relative to the site folder, as in RECORD: keras/src/layers/rnn/lstm.py
    line: int
    entry: str  # the use as written: backend.rnn.lstm, self._defun_wrapper.defun_layer
    layer_sets: frozenset[LayerSet]  # whose layers can reach it
    coverage: Coverage
    why: str
    via: tuple[str, ...] = ()  # CALLERS_GUARDED: the functions whose callers cover it

    @property
    def covered(self) -> bool:
        return self.coverage != Coverage.UNCOVERED

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.entry} ({self.coverage}: {self.why})"


def audit(package_dir: Path, package: str, patched: Mapping[str, str] | None = None) -> list[CallSite]:
    """Every use of a fused-kernel entry point in the package ``package_dir`` (import name ``package``).

    ``patched``: the text the patch gives some files, by path relative to the
    site folder (``keras/src/layers/rnn/lstm.py``), read instead of the disk.
    """
    sources = dict(_package_sources(Path(package_dir), package))
    for path, text in (patched or {}).items():
        if path in sources:
            sources[path] = text.encode("utf-8")
    modules = {path: _Module(path, source) for path, source in sources.items() if _may_use_entry(source)}
    sites = [site for module in modules.values() for site in module.sites()]
    return sorted(_elsewhere(sites, modules, sources), key=lambda site: (site.path, site.line))


def uncovered(sites: Iterable[CallSite], layer_sets: Collection[LayerSet]) -> list[CallSite]:
    """The uncovered sites that layers of ``layer_sets`` can reach (a GRU site does not stop `--layers lstm`)."""
    return [site for site in sites if not site.covered and site.layer_sets & set(layer_sets)]


def _package_sources(package_dir: Path, package: str):
    """(site-relative path, bytes) of the package's modules, without Keras 3's backend
    implementations (``src/backend/``: the kernels themselves) and tests."""
    backends = os.path.join(package_dir, "src", "backend")
    for folder, subfolders, files in os.walk(package_dir):
        subfolders[:] = [
            name for name in subfolders if name != "__pycache__" and os.path.join(folder, name) != backends
        ]
        relative = os.path.relpath(folder, package_dir).replace(os.sep, "/")
        prefix = package if relative == "." else f"{package}/{relative}"
        for name in files:
            if name.endswith(".py") and not name.endswith("_test.py"):
                path = os.path.join(folder, name)
                if not os.path.isfile(path):  # a FIFO would block; a folder named *.py is no module
                    raise UnreadableModule(f"{prefix}/{name}", b"", None, "it is not a regular file")
                try:
                    with open(path, "rb") as handle:
                        yield f"{prefix}/{name}", handle.read()
                except OSError as error:
                    raise UnreadableModule(
                        f"{prefix}/{name}", b"", None, f"it cannot be read ({error.strerror})"
                    ) from None


def _may_use_entry(source: bytes) -> bool:
    """Does the text name an entry point as a word (Keras 3's, only beside the word backend)?
    Substrings first: most modules mention none, and ``in`` is much faster than a regex."""
    words, groups = _mentions()
    if not any(word in source for word in words):
        return False
    return any(
        (not needs_backend or b"backend" in source) and pattern.search(source) for pattern, needs_backend in groups
    )


@functools.cache
def _mentions() -> tuple[tuple[bytes, ...], tuple[tuple[re.Pattern, bool], ...]]:
    """The fewest substrings one of which every mention of an entry point has (``lstm``
    stands for ``bidirectional_lstm`` too); for the entry points reached through backend and
    the others, the pattern of their names as words (a prefix entry: as a word start)."""
    entries = fused_kernels().entries
    words: list[str] = []
    for name in sorted({entry.name for entry in entries}, key=len):
        if not any(shorter in name for shorter in words):
            words.append(name)
    groups = []
    for through_backend in (True, False):
        names = [
            re.escape(entry.name) + ("" if entry.prefix else r"\b")
            for entry in entries
            if entry.through_backend == through_backend
        ]
        groups.append((re.compile(rb"\b(?:" + "|".join(names).encode() + rb")"), through_backend))
    return tuple(word.encode() for word in words), tuple(groups)


def _elsewhere(sites: list[CallSite], modules: dict[str, _Module], sources: dict[str, bytes]) -> list[CallSite]:
    """A site covered because its functions' callers are must have no caller in another module either."""
    result = []
    for site in sites:
        for function in site.via:
            use = _use_in_other_modules(function, site.path, modules, sources)
            if use is not None:
                why = f"{site.why}, but {function} is also used at {use}"
                site = CallSite(site.path, site.line, site.entry, site.layer_sets, Coverage.UNCOVERED, why)
                break
        result.append(site)
    return result


def _use_in_other_modules(name: str, home: str, modules: dict[str, _Module], sources: dict[str, bytes]) -> str | None:
    word = re.compile(rb"\b" + re.escape(name.encode()) + rb"\b")
    for path, source in sources.items():
        if path == home or name.encode() not in source or not word.search(source):
            continue
        module = modules.get(path) or modules.setdefault(path, _Module(path, source))
        for node in module.nodes:
            if (
                (isinstance(node, ast.Attribute) and node.attr == name)
                or (isinstance(node, ast.Name) and node.id == name)
                or (isinstance(node, (ast.Import, ast.ImportFrom)) and any(alias.name == name for alias in node.names))
            ):
                return f"{path}:{node.lineno}"
    return None


# coverage, why, and the functions whose callers make it covered
_Verdict = tuple[Coverage, str, tuple[str, ...]]
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


class UnreadableModule(Exception):
    """A module of the package that does not parse (edited by hand since it was installed): the
    audit cannot show its call sites guarded."""

    def __init__(self, path: str, source: bytes, error: SyntaxError | None, reason: str = "") -> None:
        super().__init__(f"{path}: {error or reason}")
        self.path = path
        self.not_utf8 = where_not_utf8(source)  # where its first byte that is not UTF-8 is, if one is
        self.reason = f"{error.msg}, line {error.lineno}" if error is not None else reason


class _Module:
    """One module's uses of entry points and their coverage."""

    def __init__(self, path: str, source: bytes) -> None:
        self.path = path
        try:
            self.tree = ast.parse(source)
        except SyntaxError as error:  # a hand edit: not UTF-8, or not Python
            raise UnreadableModule(path, source, error) from None
        self.parents: dict[ast.AST, ast.AST] = {}
        self.nodes: list[ast.AST] = [self.tree]  # every node but contexts (Load, Store), in one walk
        for node in self.nodes:  # grows as it goes; ast.iter_child_nodes is slower
            for field in node._fields:
                value = getattr(node, field, None)
                if value.__class__ is list:
                    for item in value:
                        if isinstance(item, ast.AST):
                            self.parents[item] = node
                            self.nodes.append(item)
                elif isinstance(value, ast.AST) and not isinstance(value, ast.expr_context):
                    self.parents[value] = node
                    self.nodes.append(value)
        self.names = Names(self.nodes)
        self._function_memo: dict[ast.AST, _Verdict] = {}
        self._flags = self._guarded_flags()

    def sites(self) -> list[CallSite]:
        found = []
        uses = list(entry_uses(self.nodes, self.names))
        for node, entry in uses:
            found.append(self._site(node, ast.unparse(node), entry, *self._coverage(node, entry)))
        used = {self.names.dotted(node) for node, _ in uses}
        for node, entry, imported in self._imports():
            if not any(name == imported or name.startswith(f"{imported}.") for name in used):
                why = "imported but not used here: a re-export, whose users cannot be followed"
                found.append(self._site(node, ast.unparse(node), entry, Coverage.UNCOVERED, why))
        return found

    def _site(self, node, text: str, entry: EntryPoint, coverage: Coverage, why: str, via=()) -> CallSite:
        return CallSite(self.path, node.lineno, text, self._layer_sets(node, entry), coverage, why, tuple(via))

    def _imports(self):
        """Imports of entry points (``from keras.src.backend import lstm``): (node, entry, dotted name)."""
        for node in self.nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = f"{node.module or ''}." if isinstance(node, ast.ImportFrom) else ""
                for alias in node.names:
                    entry = entry_point(module + alias.name) if alias.name != "*" else None
                    if entry is not None and entry.kind != EntryKind.FLAG:
                        yield node, entry, module + alias.name

    def _layer_sets(self, node: ast.AST, entry: EntryPoint) -> frozenset[LayerSet]:
        """The entry's own sets; for a shared one, the first enclosing scope (then the file)
        whose name names exactly one of lstm and gru; else every set."""
        if entry.sets:
            return entry.sets
        names = [scope.name for scope in self._scopes(node)] + [Path(self.path).stem]
        for name in names:
            named = frozenset(layer_set for layer_set in FUSED_SETS if layer_set.value in name.lower())
            if len(named) == 1:
                return named
            if named:
                break
        return FUSED_SETS

    def _scopes(self, node: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
        """The functions and classes around ``node``, innermost first."""
        scopes: list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = []
        parent = self.parents.get(node)
        while parent is not None:
            if isinstance(parent, _SCOPES):
                scopes.append(parent)
            parent = self.parents.get(parent)
        return scopes

    def _exemption(self, node: ast.AST) -> _Verdict | None:
        scopes = self._scopes(node)
        kernels = fused_kernels()
        for scope in scopes:
            entry = entry_point(scope.name)
            if isinstance(scope, _FUNCTIONS) and entry is not None and entry.kind == EntryKind.KERNEL:
                return Coverage.KERNEL, f"inside the kernel definition {scope.name}", ()
            for exemption in kernels.kernel_definitions:
                if exemption.scope == scope.name:
                    return Coverage.KERNEL, f"inside {scope.name}, which {exemption.reason}", ()
        if scopes:
            outermost = scopes[-1].name
            for exemption in kernels.allowed:
                if exemption.scope == outermost and self.path.endswith(exemption.path):
                    return Coverage.ALLOWED, exemption.reason, ()
        return None

    def _coverage(self, node: ast.AST, entry: EntryPoint) -> _Verdict:
        exempt = self._exemption(node)
        if exempt is not None:
            return exempt
        if entry.kind == EntryKind.FLAG:
            assignment = self.parents.get(node)
            if isinstance(assignment, ast.Assign) and self._sets_flag_safely(assignment.value):
                return Coverage.GUARDED, "the assignment carries the guard", ()
            return Coverage.UNCOVERED, "the flag is assigned without the guard", ()
        return self._walk_up(node, entry.kind == EntryKind.PREDICATE)

    def _walk_up(self, node: ast.AST, predicate: bool) -> _Verdict:
        """From ``node`` out to its function (then to that function's uses) or the module."""
        child, parent = node, self.parents.get(node)
        while parent is not None:
            if isinstance(parent, (ast.If, ast.While, ast.IfExp)) and child is not parent.test:
                in_body = child is parent.body or any(child is statement for statement in _as_list(parent.body))
                if in_body and self._implies_guard(parent.test):
                    return Coverage.GUARDED, f"under the guarded test at line {parent.test.lineno}", ()
                if not in_body and self._negation_implies_guard(parent.test):
                    return Coverage.GUARDED, f"in the else of the guarded test at line {parent.test.lineno}", ()
            elif isinstance(parent, ast.BoolOp):
                index = next(position for position, value in enumerate(parent.values) if value is child)
                before, after = parent.values[:index], parent.values[index + 1 :]
                if isinstance(parent.op, ast.And):
                    if any(self._implies_guard(value) for value in before):
                        return Coverage.GUARDED, f"after the guard in the `and` at line {parent.lineno}", ()
                    if predicate and any(self._implies_guard(value) for value in after):
                        why = f"decides together with the guard in the `and` at line {parent.lineno}"
                        return Coverage.GUARDED, why, ()
                elif any(self._negation_implies_guard(value) for value in before):
                    return Coverage.GUARDED, f"after the negated guard in the `or` at line {parent.lineno}", ()
            elif isinstance(parent, _FUNCTIONS):
                return self._function_coverage(parent)
            child, parent = parent, self.parents.get(parent)
        return Coverage.UNCOVERED, "not under a guarded branch", ()

    def _function_coverage(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> _Verdict:
        """Covered when every use of the function in this module is (recursively)."""
        if function in self._function_memo:
            return self._function_memo[function]
        unguarded = f"not under a guarded branch of {function.name}"
        self._function_memo[function] = (Coverage.UNCOVERED, f"{unguarded}, which calls itself", ())
        method = isinstance(self.parents.get(function), ast.ClassDef)
        uses = [
            node
            for node in self.nodes
            if (method and isinstance(node, ast.Attribute) and node.attr == function.name)
            or (not method and isinstance(node, ast.Name) and node.id == function.name)
        ]
        verdict: _Verdict | None = None
        via = [function.name]
        if function.name.startswith("__") and function.name.endswith("__"):
            verdict = Coverage.UNCOVERED, f"{unguarded}, which Python calls by itself", ()
        elif not uses:
            verdict = Coverage.UNCOVERED, f"{unguarded}, which nothing in its module calls", ()
        for use in uses if verdict is None else ():
            coverage, _, more = self._walk_up(use, predicate=False)
            if coverage == Coverage.UNCOVERED:
                verdict = Coverage.UNCOVERED, f"{unguarded}, which is used unguarded at line {use.lineno}", ()
                break
            via += [name for name in more if name not in via]
        if verdict is None:
            lines = ", ".join(str(use.lineno) for use in uses)
            why = f"in {function.name}, used only where covered (line {lines})"
            verdict = Coverage.CALLERS_GUARDED, why, tuple(via)
        self._function_memo[function] = verdict
        return verdict

    def _guarded_flags(self) -> frozenset[str]:
        """Flags every assignment of which in this module carries the guard (at least one)."""
        assigned: dict[str, bool] = {}
        for node in self.nodes:
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Attribute):
                    entry = entry_point(target.attr)
                    if entry is not None and entry.kind == EntryKind.FLAG:
                        safe = isinstance(node, ast.Assign) and self._sets_flag_safely(node.value)
                        assigned[target.attr] = assigned.get(target.attr, True) and safe
        return frozenset(name for name, safe in assigned.items() if safe)

    @staticmethod
    def _sets_flag_safely(value: ast.expr) -> bool:
        """``(...) and not <guard>``, or ``False``."""
        if isinstance(value, ast.Constant) and not value.value:
            return True
        return (
            isinstance(value, ast.BoolOp) and isinstance(value.op, ast.And) and any(is_guard(v) for v in value.values)
        )

    def _implies_guard(self, test: ast.expr) -> bool:
        """Does ``test`` being true mean no per-gate activation overrides?"""
        if is_guard(test):
            return True
        if isinstance(test, ast.BoolOp):
            implied = [self._implies_guard(value) for value in test.values]
            return any(implied) if isinstance(test.op, ast.And) else all(implied)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return self._negation_implies_guard(test.operand)
        return isinstance(test, ast.Attribute) and test.attr in self._flags

    def _negation_implies_guard(self, test: ast.expr) -> bool:
        """Does ``test`` being false mean no per-gate activation overrides?"""
        if isinstance(test, ast.BoolOp):
            implied = [self._negation_implies_guard(value) for value in test.values]
            return all(implied) if isinstance(test.op, ast.And) else any(implied)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return self._implies_guard(test.operand)
        return False


def _as_list(body) -> list:
    return body if isinstance(body, list) else [body]
