"""The comment convlstm-patch puts at the top of every file it patches."""

from __future__ import annotations

from collections.abc import Iterable

MARKER_PREFIX = "# Patched by convlstm-patch"
# What each layer set's files gain (patcher.spec.LayerSet values), in the order the marker lists them.
WHAT = {
    "convlstm": "ConvLSTM takes five activations",
    "lstm": "LSTM takes five activations",
    "gru": "GRU takes separate update and reset gate activations",
}


def marker_text(version: str, layer_sets: Iterable[str] = ("convlstm",)) -> str:
    """The marker of a file patched for ``layer_sets`` (a file such as Bidirectional's serves several)."""
    chosen = set_names(layer_sets)
    what = "; ".join(text for name, text in WHAT.items() if name in chosen)
    return f"{MARKER_PREFIX} {version}: {what}. Undo: convlstm-patch revert"


def described_sets(comment: str) -> set[str]:
    """The layer sets a marker comment names."""
    return {name for name, text in WHAT.items() if text in comment}


def set_names(layer_sets: Iterable[str]) -> set[str]:
    """``{"lstm", "gru"}`` from layer sets or their names; one set alone (a str) is one name, not letters."""
    if isinstance(layer_sets, str):
        return {str(layer_sets)}
    return {str(layer_set) for layer_set in layer_sets}
