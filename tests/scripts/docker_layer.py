"""Inside the image, as its runtime user: a patched ConvLSTM2D computes; print one JSON line.

    podman run --rm -v .../docker_layer.py:/docker_layer.py:ro IMAGE python3 /docker_layer.py

The layer with ``activation_i="relu"`` is compared with the NumPy reference
that the installed convlstm-patch carries (patcher/probe/reference.py), and
the reference with relu with the one without (stock tanh), so a layer that
ignored activation_i could not match both.
"""

import json
import os
import sys

import keras
import numpy as np

from patcher.probe.reference import conv_lstm

rng = np.random.default_rng(3)
x = rng.normal(size=(2, 3, 5, 5, 2)).astype("float32")
layer = keras.layers.ConvLSTM2D(3, 3, padding="same", return_sequences=True, activation_i="relu")
outputs = np.asarray(layer(x))
kernel, recurrent_kernel, bias = layer.get_weights()
expected, _, _ = conv_lstm(x, kernel, recurrent_kernel, bias, padding="same", activation_i="relu")
stock, _, _ = conv_lstm(x, kernel, recurrent_kernel, bias, padding="same")
site_packages = os.path.dirname(os.path.dirname(keras.__file__))
print(json.dumps({
    "uid": os.getuid(),
    "can_write_keras": os.access(site_packages, os.W_OK) or os.access(os.path.dirname(keras.__file__), os.W_OK),
    "keras": keras.__version__,
    "python": sys.version.split()[0],
    "site": site_packages,
    "activation_i": layer.get_config().get("activation_i"),
    "error": float(np.abs(outputs - expected).max()),
    "relu_vs_tanh": float(np.abs(expected - stock).max()),
}))  # fmt: skip
