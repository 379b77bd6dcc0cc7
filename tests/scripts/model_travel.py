"""Save or load one-layer ConvLSTM2D models with the Keras found first on sys.path.

    python model_travel.py PACKAGE STEPS_JSON

STEPS_JSON is a list of ["save", FILE, ACTIVATIONS] or ["load", FILE]; prints a
JSON list with, per step, {"output": [...]} or (a load that fails) {"error": "..."}.
The input is fixed, so a model saved by a patched Keras and loaded by a stock
one can be compared output for output. Keras 3 writes `.keras`; tf_keras `.h5`.
"""

import importlib
import json
import sys

import numpy as np

package, steps = sys.argv[1], json.loads(sys.argv[2])
keras = importlib.import_module(package)
x = np.random.default_rng(3).normal(size=(1, 3, 5, 5, 2)).astype("float32")
results = []
for step in steps:
    if step[0] == "save":
        _, path, activations = step
        inputs = keras.Input(shape=x.shape[1:])
        outputs = keras.layers.ConvLSTM2D(2, 3, padding="same", **activations)(inputs)
        model = keras.Model(inputs, outputs)
        model.save(path)
    else:
        try:
            model = keras.models.load_model(step[1])
        except Exception as error:  # noqa: BLE001  (the message is what a user sees: the test reads it)
            results.append({"error": f"{type(error).__name__}: {error}"})
            continue
    results.append({"output": np.asarray(model(x)).ravel().tolist()})
print(json.dumps(results))
