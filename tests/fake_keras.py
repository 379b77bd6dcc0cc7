"""A fake installed Keras for the core's unit tests: no Keras, TensorFlow or libcst needed.

The files define the classes the Keras 3 layout names (so discovery finds the
layout and every layer set), with a line of text per file to tell versions of
it apart, and a dist-info whose RECORD holds their sha256 as pip writes it.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

FILES = {
    "keras/src/layers/rnn/conv_lstm.py": ("ConvLSTMCell", "ConvLSTM"),
    "keras/src/layers/rnn/conv_lstm1d.py": ("ConvLSTM1D",),
    "keras/src/layers/rnn/conv_lstm2d.py": ("ConvLSTM2D",),
    "keras/src/layers/rnn/conv_lstm3d.py": ("ConvLSTM3D",),
    "keras/src/layers/rnn/lstm.py": ("LSTMCell", "LSTM"),
    "keras/src/layers/rnn/gru.py": ("GRUCell", "GRU"),
    # Mentions backend.bidirectional_lstm/gru: part of both RNN sets (as keras 3.15+).
    "keras/src/layers/rnn/bidirectional.py": ("Bidirectional",),
}
CONVLSTM = [relative for relative in FILES if "conv_lstm" in relative]
# tf_keras (the Keras 2 "src" layout): its ConvLSTM cell lives in base_conv_lstm.py, no Bidirectional set.
TF_KERAS_FILES = {
    "tf_keras/src/layers/rnn/base_conv_lstm.py": ("ConvLSTMCell", "ConvLSTM"),
    "tf_keras/src/layers/rnn/conv_lstm1d.py": ("ConvLSTM1D",),
    "tf_keras/src/layers/rnn/conv_lstm2d.py": ("ConvLSTM2D",),
    "tf_keras/src/layers/rnn/conv_lstm3d.py": ("ConvLSTM3D",),
    "tf_keras/src/layers/rnn/lstm.py": ("LSTMCell", "LSTM"),
    "tf_keras/src/layers/rnn/gru.py": ("GRUCell", "GRU"),
}


def source(relative: str, text: str = "stock") -> bytes:
    classes = "".join(f"class {name}(object):\n    pass\n\n" for name in {**FILES, **TF_KERAS_FILES}[relative])
    reaches = "# backend.bidirectional_lstm, backend.bidirectional_gru\n" if relative.endswith("bidirectional.py") else ""
    return f"# {text}\n{reaches}{classes}".encode()


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install(site: Path, version: str = "3.99.0", name: str = "keras") -> Path:
    """Write the fake keras ``version`` into ``site`` (a site-packages folder); ``site``.

    ``name="tf_keras"``: a fake tf_keras (Keras 2 layout) instead.
    """
    rows = []
    for relative in TF_KERAS_FILES if name == "tf_keras" else FILES:
        data = source(relative)
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(f"{relative},{record_hash(data)},{len(data)}")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    rows += [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    return site
