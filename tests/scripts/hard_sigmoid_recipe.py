"""README's `hard_sigmoid` recipe, run as a user would: save, then load in another process.

    python hard_sigmoid_recipe.py README_PATH save|load MODEL_FILE

Executes README's Python block that registers `hard_sigmoid_keras2` (the block
also builds its two example layers) as the module `recipe`, the way a user's
own module defines it before `keras.models.load_model`. `save` builds Input ->
ConvLSTM2D(2, 3, padding="same", recurrent_activation_o=hard_sigmoid_keras2,
return_sequences=True) and saves it; both steps print one JSON document: the
layer's outputs for a fixed input, its weights (save) and the serialised
`recurrent_activation_o` of the layer they ran.
"""

import json
import re
import sys
import types
from pathlib import Path

import numpy as np

readme, step, path = sys.argv[1:]
blocks = re.findall(r"```python\n(.*?)```", Path(readme).read_text(encoding="utf-8"), re.DOTALL)
(code,) = [block for block in blocks if "register_keras_serializable" in block]
recipe = types.ModuleType("recipe")
sys.modules["recipe"] = recipe
exec(compile(code, "README.md", "exec"), recipe.__dict__)

import keras

# Inputs of a few units: the gates see values beyond +/-2.5, where the two hard_sigmoids differ.
x = (3.0 * np.random.default_rng(5).normal(size=(1, 4, 5, 5, 2))).astype("float32")
if step == "save":
    inputs = keras.Input(shape=x.shape[1:])
    layer = keras.layers.ConvLSTM2D(
        2, 3, padding="same", return_sequences=True, recurrent_activation_o=recipe.hard_sigmoid_keras2
    )
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(6)
    model.set_weights([rng.normal(scale=0.7, size=w.shape).astype("float32") for w in model.get_weights()])
    model.save(path)
else:
    model = keras.models.load_model(path)
    layer = model.layers[-1]
result = {
    "output": np.asarray(model(x)).tolist(),
    "input": x.tolist(),
    "weights": [w.tolist() for w in model.get_weights()],
    "recurrent_activation_o": keras.activations.serialize(layer.cell.recurrent_activation_o),
    "is_recipe_function": layer.cell.recurrent_activation_o is recipe.hard_sigmoid_keras2,
}
print(json.dumps(result))
