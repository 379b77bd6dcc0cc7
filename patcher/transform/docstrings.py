"""Document the five parameters in each target class's docstring."""

from __future__ import annotations

import re
import textwrap

import libcst as cst

from patcher.transform.base import ClassScopedTransformer
from patcher.transform.shapes import docstring

_ARG_LINE = re.compile(r"^(?P<indent>[ \t]*)recurrent_activation\s*:")
_WIDTH = 80
_CODE_SPAN = re.compile(r"`[^`]*`")
_NBSP = "\x00"


class DocstringTransformer(ClassScopedTransformer):
    """Insert our descriptions right after the ``recurrent_activation:`` entry,
    in that docstring's own indentation, so ``help(ConvLSTM2D)`` shows them.
    """

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        if self.target_class:
            body = list(updated_node.body.body)
            first = body[0] if body else None
            if isinstance(first, cst.SimpleStatementLine) and (string := docstring(first)) is not None:
                documented = self._document(string.value)
                if documented is not None:
                    self.record("docstring")
                    expr = first.body[0].with_changes(value=string.with_changes(value=documented))
                    body[0] = first.with_changes(body=[expr])
                    updated_node = updated_node.with_changes(body=updated_node.body.with_changes(body=body))
        return super().leave_ClassDef(original_node, updated_node)

    def _document(self, literal: str) -> str | None:
        """The docstring literal with our entries, or None if it has no anchor."""
        lines = literal.splitlines(keepends=True)
        found = next(((index, match) for index, match in enumerate(map(_ARG_LINE.match, lines)) if match), None)
        if found is None:
            return None
        anchor, match = found
        indent = match.group("indent")
        if any(line.startswith(f"{indent}{self.names[0]}:") for line in lines):
            return literal
        end = anchor + 1
        while end < len(lines) and _indent_of(lines[end]) > len(indent) and lines[end].strip():
            end += 1
        continuation = _continuation_indent(lines, indent)
        entries = [
            _fill(
                param.doc,
                width=_WIDTH,
                initial_indent=f"{indent}{param.name}: ",
                subsequent_indent=continuation,
            )
            + "\n"
            for param in self.params
        ]
        if end == len(lines):
            # The entry runs into the closing quotes: keep them last.
            quote = literal[-3:] if literal[-3:] in ('"""', "'''") else literal[-1]
            lines[-1] = lines[-1][: -len(quote)] + "\n"
            entries[-1] = entries[-1][:-1] + quote
        return "".join([*lines[:end], *entries, *lines[end:]])


def _continuation_indent(lines: list[str], indent: str) -> str:
    """How this docstring indents an entry's second line (default: 4 more)."""
    for line, following in zip(lines, lines[1:]):
        if (
            _indent_of(line) == len(indent)
            and line.strip()
            and _indent_of(following) > len(indent)
            and following.strip()
        ):
            return following[: _indent_of(following)]
    return indent + "    "


def _fill(text: str, **options) -> str:
    """textwrap.fill that never breaks inside a `code span`."""
    protected = _CODE_SPAN.sub(lambda match: match.group(0).replace(" ", _NBSP), text)
    return textwrap.fill(protected, break_on_hyphens=False, **options).replace(_NBSP, " ")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))
