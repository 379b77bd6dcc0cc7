"""A comment at the top of each patched file: who changed it and how to undo."""

from __future__ import annotations

import re

import libcst as cst

from patcher.marker import MARKER_PREFIX, marker_text

# PEP 263: an encoding declaration must stay on line 1 or 2.
_KEEP_FIRST = re.compile(r"^#!|^#.*coding[:=]")


class MarkerTransformer(cst.CSTTransformer):
    def __init__(self, version: str, layer_set: str = "convlstm") -> None:
        super().__init__()
        self.comment = marker_text(version, layer_set)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        header = list(updated_node.header)
        comments = [line.comment.value for line in header if line.comment is not None]
        if any(comment.startswith(MARKER_PREFIX) for comment in comments):
            return updated_node
        position = 0
        for index, line in enumerate(header[:2]):
            if line.comment is not None and _KEEP_FIRST.match(line.comment.value):
                position = index + 1
        header.insert(position, cst.EmptyLine(comment=cst.Comment(self.comment)))
        return updated_node.with_changes(header=header)
