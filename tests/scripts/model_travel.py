"""Save or load a one-layer ConvLSTM2D model with the Keras found first on sys.path.

    python model_travel.py PACKAGE save FILE ACTIVATIONS_JSON   -> prints {"output": [...]}
    python model_travel.py PACKAGE load FILE                    -> prints {"output": [...]} or {"error": "..."}

The input is fixed, so a model saved by a patched Keras and loaded by a stock
one can be compared output for output. Keras 3 writes `.keras`; tf_keras `.h5`.
"""

import importlib
import json
import sys

import numpy as np

package, mode, path = sys.argv[1], sys.argv[2], sys.argv[3]
keras = importlib.import_module(package)
x = np.random.default_rng(3).normal(size=(1, 3, 5, 5, 2)).astype("float32")

if mode == "save":
    activations = json.loads(sys.argv[4])
    inputs = keras.Input(shape=x.shape[1:])
    outputs = keras.layers.ConvLSTM2D(2, 3, padding="same", **activations)(inputs)
    model = keras.Model(inputs, outputs)
    model.save(path)
else:
    try:
        model = keras.models.load_model(path)
    except Exception as error:  # the message is what a user sees: the test reads it
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        sys.exit(0)
print(json.dumps({"output": np.asarray(model(x)).ravel().tolist()}))
