"""A comment at the top of each patched file: who changed it and how to undo."""

from __future__ import annotations

import re
from collections.abc import Iterable

import libcst as cst

from patcher.layersets import LayerSet
from patcher.marker import MARKER_PREFIX, described_sets, marker_text

# PEP 263: an encoding declaration must stay on line 1 or 2.
_KEEP_FIRST = re.compile(r"^#!|^#.*coding[:=]")


class MarkerTransformer(cst.CSTTransformer):
    """Adds the marker; a marker already there (also one an older convlstm-patch wrote)
    stays, unless it lacks one of ``layer_sets``: then it names them all."""

    def __init__(self, layer_sets: Iterable[LayerSet] = (LayerSet.CONVLSTM,)) -> None:
        super().__init__()
        self.layer_sets = set(layer_sets)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        header = list(updated_node.header)
        for index, line in enumerate(header):
            if line.comment is not None and line.comment.value.startswith(MARKER_PREFIX):
                described = described_sets(line.comment.value)
                if self.layer_sets <= described:
                    return updated_node
                comment = cst.Comment(marker_text(described | self.layer_sets))
                header[index] = line.with_changes(comment=comment)
                return updated_node.with_changes(header=header)
        position = 0
        for index, line in enumerate(header[:2]):
            if line.comment is not None and _KEEP_FIRST.match(line.comment.value):
                position = index + 1
        header.insert(position, cst.EmptyLine(comment=cst.Comment(marker_text(self.layer_sets))))
        return updated_node.with_changes(header=header)
