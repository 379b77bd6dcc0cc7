"""The comment convlstm-patch puts at the top of every file it patches."""

MARKER_PREFIX = "# Patched by convlstm-patch"


def marker_text(version: str) -> str:
    return f"{MARKER_PREFIX} {version}: ConvLSTM takes five activations. Undo: convlstm-patch revert"
