"""Run ConvLSTM1D/2D/3D of the Keras found first on sys.path; save everything.

    python run_conv_lstm.py PACKAGE OUT.npz [ACTIVATIONS_JSON]

ACTIVATIONS_JSON is a list of keyword dicts (one run each, ``[{}]`` by
default). Weights and inputs are fixed by a seed, so two processes (pristine
and patched Keras) can be compared bit for bit. Used by the end-to-end tests;
one process for every rank and run because importing TensorFlow dominates the time.
"""

import importlib
import json
import sys

import numpy as np

package, out = sys.argv[1], sys.argv[2]
runs = json.loads(sys.argv[3]) if len(sys.argv) > 3 else [{}]

keras = importlib.import_module(package)
saved = {}
for index, activations in enumerate(runs):
    rng = np.random.default_rng(7)
    for rank in (1, 2, 3):
        layer_class = getattr(keras.layers, f"ConvLSTM{rank}D")
        x = rng.normal(size=(2, 4, *((6, 5, 4)[:rank]), 3)).astype("float32")
        layer = layer_class(
            filters=2,
            kernel_size=3 if rank < 3 else 2,
            padding="same",
            return_sequences=True,
            return_state=True,
            **activations,
        )
        layer(x)
        weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()]
        layer.set_weights(weights)
        outputs = [np.asarray(t) for t in layer(x)]
        arrays = dict(zip(("x", "kernel", "recurrent_kernel", "bias", "outputs", "h", "c"), [x, *weights, *outputs]))
        saved.update({f"{index}/{rank}/{key}": value for key, value in arrays.items()})
    saved["source"] = np.array(sys.modules[type(layer.cell).__module__].__file__)
np.savez(out, **saved)
