"""Insert parameters or arguments into a list, in the list's own layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import libcst as cst

Node = TypeVar("Node", cst.Param, cst.Arg)

_NO_SPACE = cst.SimpleWhitespace("")


def insert_after(nodes: Sequence[Node], index: int, added: list[Node], trailing_field: str) -> list[Node]:
    """``nodes`` with ``added`` right after ``nodes[index]``, laid out like it.

    New items get the anchor's comma (one per line if the list is one per
    line) without its trailing comment. If the anchor ended the list without
    a comma, the last new item takes over that ending, so no dangling comma
    or misplaced closing bracket appears. ``trailing_field`` is
    ``whitespace_after_param`` (Param) or ``whitespace_after_arg`` (Arg).
    """
    anchor = nodes[index]
    comma = _template_comma(nodes, index)
    ending: dict[str, object]  # field -> value, for with_changes
    if isinstance(anchor.comma, cst.Comma):
        ending = {"comma": comma, trailing_field: _NO_SPACE}
    else:
        ending = {"comma": anchor.comma, trailing_field: getattr(anchor, trailing_field)}
        anchor = anchor.with_changes(comma=comma, **{trailing_field: _NO_SPACE})
    laid_out = [node.with_changes(comma=comma, **{trailing_field: _NO_SPACE}) for node in added]
    laid_out[-1] = laid_out[-1].with_changes(**ending)
    # Concatenated, not [*nodes[:index], anchor, ...]: mypy rejects a starred Sequence of a
    # constrained TypeVar in a list display (python/mypy#17698).
    return list(nodes[:index]) + [anchor] + laid_out + list(nodes[index + 1 :])


def _template_comma(nodes: Sequence[Node], index: int) -> cst.Comma:
    for node in (nodes[index], nodes[index - 1] if index > 0 else None):
        if node is not None and isinstance(node.comma, cst.Comma):
            return _without_comment(node.comma)
    return cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def _without_comment(comma: cst.Comma) -> cst.Comma:
    after = comma.whitespace_after
    if isinstance(after, cst.ParenthesizedWhitespace) and after.first_line.comment is not None:
        first_line = cst.TrailingWhitespace(newline=after.first_line.newline)
        return comma.with_changes(whitespace_after=after.with_changes(first_line=first_line))
    return comma
