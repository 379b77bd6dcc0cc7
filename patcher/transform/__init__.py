"""libcst transforms that give ConvLSTM five activations, and LSTM and GRU per-gate ones (--layers).

Each transformer makes one kind of edit and lives in its own module; they
match Keras's structure (class names, parameter names, the shape of the
cell's gate equations), not its exact text, so one set serves every Keras
generation. Each skips work already done, so patched output transforms to
itself. Only ``apply``/``diff``/``check`` import this package (libcst is slow
to import; ``status`` must stay fast).
"""

from patcher.transform.pipeline import TransformError, transform_source

__all__ = ["TransformError", "transform_source"]
