"""The comment convlstm-patch puts at the top of every file it patches."""

MARKER_PREFIX = "# Patched by convlstm-patch"
# What each layer set's files gain (patcher.spec.LayerSet values).
WHAT = {
    "convlstm": "ConvLSTM takes five activations",
    "lstm": "LSTM takes five activations",
    "gru": "GRU takes separate update and reset gate activations",
}


def marker_text(version: str, layer_set: str = "convlstm") -> str:
    return f"{MARKER_PREFIX} {version}: {WHAT[str(layer_set)]}. Undo: convlstm-patch revert"
