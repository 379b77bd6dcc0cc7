"""The comment convlstm-patch puts at the top of every file it patches.

It names the layer sets the file is patched for (patcher/layersets.py says what
each gains) and how to undo, but not the tool's version: the patched bytes, and
so the hash pins, depend only on Keras's source and the transform.
"""

from __future__ import annotations

from collections.abc import Iterable

from patcher.layersets import REGISTRY, LayerSet, ordered

MARKER_PREFIX = "# Patched by convlstm-patch"


def marker_text(layer_sets: Iterable[LayerSet] = (LayerSet.CONVLSTM,)) -> str:
    """The marker of a file patched for ``layer_sets`` (a file such as Bidirectional's serves several)."""
    what = "; ".join(REGISTRY[layer_set].gains for layer_set in ordered(layer_sets))
    return f"{MARKER_PREFIX}: {what}. Undo: convlstm-patch revert"


def described_sets(comment: str) -> set[LayerSet]:
    """The layer sets a marker comment names."""
    return {layer_set for layer_set, info in REGISTRY.items() if info.gains in comment}
