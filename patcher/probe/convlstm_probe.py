"""The ConvLSTM checks of the probe (runner.py runs them): api, numerics, inheritance, defaults,
serialization, each against the NumPy reference (reference.py) or the pristine source.

Runs in the user's interpreter with the user's Keras, from Keras 3 back to
multi-backend Keras 2.0 (Python 3.5-3.7, NumPy 1.13 and newer, Theano,
TensorFlow 1.x or CNTK). Keep it valid Python 3.6 (tests/test_probe_compat.py
parses it with feature_version=(3, 6)) and use nothing newer from the standard
library or NumPy. What differs between generations:

* Keras 2.0-2.3 (multi-backend) have only ConvLSTM2D (a ConvLSTM2DCell from
  2.1.5, gates in ConvLSTM2D.step before), run in graph mode (layers are
  called through a Model), and save to HDF5;
* on Theano, convolutions flip the kernel (see reference.py);
* hard_sigmoid is clip(0.2 x + 0.5, 0, 1) in Keras 2 and relu6(x + 3) / 6 in
  Keras 3 (activations.py).
"""

import importlib
import inspect
import os
import shutil
import tempfile

import numpy as np

from . import common, reference
from .common import DISTINCT, FIVE, TOLERANCE

SPATIAL = {1: (7,), 2: (6, 5), 3: (5, 4, 4)}
# Classes of the cell module that take the five, in every layout.
CELL_MODULE_CLASSES = ("ConvLSTMCell", "ConvLSTM", "ConvLSTM2DCell")
CHECKS = ("api", "numerics", "inheritance", "defaults", "serialization")


class Probe:
    """The ConvLSTM layers of one Keras, checked."""

    layer_set = common.CONVLSTM

    def __init__(self, package, cell_module, pristine):
        self.keras = importlib.import_module(package)
        self.cell_module = importlib.import_module(cell_module)
        self.version = common.keras_version(self.keras)
        # Multi-backend Keras (2.0-2.3): graph mode only, HDF5 saving.
        self.legacy = self.version < (2, 4)
        self.backend = common.backend_of(self.keras)
        # The backed-up original of the cell module, loaded beside the patched
        # one (same package, so its relative imports resolve).
        parent = cell_module.rsplit(".", 1)[0]
        self.pristine = common.load_file(parent + "._convlstm_patch_pristine", pristine, parent) if pristine else None
        self.to_numpy = common.numpy_converter(self.keras)
        self.layers = {}
        for rank in (1, 2, 3):
            layer_class = getattr(self.keras.layers, "ConvLSTM{}D".format(rank), None)
            if layer_class is not None:
                self.layers[rank] = layer_class
        self.reference_options = {
            "flip_kernels": self.backend == "theano",
            "hard_sigmoid": "keras3" if self.version >= (3,) else "keras2",
        }
        self.models = {}
        self.rng = np.random.RandomState(0)

    # -- helpers ---------------------------------------------------------------
    def build(self, rank, layer_class=None, **kwargs):
        options = layer_options(rank)
        options.update(kwargs)
        layer = (layer_class or self.layers[rank])(**options)
        x = self.rng.normal(size=(2, 3) + SPATIAL[rank] + (2,)).astype("float32")
        self.materialize(layer, x)
        weights = [self.rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()]
        layer.set_weights(weights)
        return layer, x, weights

    def materialize(self, layer, x):
        """Create the layer's weights: a Model around it in graph-mode Keras, else build()."""
        if self.legacy:
            inputs = self.keras.layers.Input(shape=x.shape[1:])
            self.models[id(layer)] = (layer, self.keras.models.Model(inputs, layer(inputs)))
        else:
            layer.build(x.shape)  # weights without a first (slow, eager) call

    def run(self, layer, x):
        if self.legacy:
            return self.as_list(self.models[id(layer)][1].predict(x, batch_size=len(x)))
        return self.as_list(layer(x))

    def run_model(self, model, x):
        if self.legacy:
            return self.as_list(model.predict(x, batch_size=len(x)))
        return self.as_list(model(x))

    def as_list(self, value):
        return [self.to_numpy(item) for item in (value if isinstance(value, (list, tuple)) else [value])]

    def expected(self, x, weights, **options):
        bias = weights[2] if len(weights) == 3 else None
        options.update(self.reference_options)
        return reference.conv_lstm(x, weights[0], weights[1], bias, **options)

    error = staticmethod(common.max_error)

    # -- checks ------------------------------------------------------------------
    def check_api(self):
        classes = [getattr(self.cell_module, name) for name in CELL_MODULE_CLASSES if hasattr(self.cell_module, name)]
        classes += [cls for cls in self.layers.values() if cls not in classes]
        pristine = self.pristine
        for cls in classes:
            params = inspect.signature(cls.__init__).parameters
            for name in FIVE:
                if name not in params or params[name].default is not None:
                    return False, "{}.__init__ lacks {}=None".format(cls.__name__, name), None
            missing_doc = [name for name in FIVE if "{}:".format(name) not in (cls.__doc__ or "")]
            if missing_doc:
                return False, "{} docstring does not describe {}".format(cls.__name__, ", ".join(missing_doc)), None
            stock_class = getattr(pristine, cls.__name__, None) if pristine else None
            if stock_class is not None:
                stock = [name for name in inspect.signature(stock_class.__init__).parameters if name != "kwargs"]
                ours = [name for name in params if name != "kwargs"]
                if ours != stock + list(FIVE):
                    return False, "{}.__init__ parameter order changed".format(cls.__name__), None
        names = ", ".join(cls.__name__ for cls in classes)
        return True, "{} take the five, default None, existing order kept".format(names), None

    def check_numerics(self):
        worst = 0.0
        cases = 0
        for rank in sorted(self.layers):
            for options in ({"padding": "same"}, {"padding": "valid", "strides": 2}):
                options.update(DISTINCT)
                layer, x, weights = self.build(rank, activation="tanh", recurrent_activation="sigmoid", **options)
                got = self.run(layer, x)
                expected = self.expected(x, weights, activation="tanh", recurrent_activation="sigmoid", **options)
                worst = max(worst, self.error(got, expected))
                cases += 1
        # The version's own defaults (hard_sigmoid in Keras 2) for the gates not given.
        rank = 2
        defaults = inspect.signature(self.layers[rank].__init__).parameters
        given = {"activation_i": "relu", "recurrent_activation_f": "softsign"}
        layer, x, weights = self.build(rank, padding="same", **given)
        expected = self.expected(
            x,
            weights,
            padding="same",
            activation=defaults["activation"].default,
            recurrent_activation=defaults["recurrent_activation"].default,
            **given,
        )
        worst = max(worst, self.error(self.run(layer, x), expected))
        cases += 1
        ranks = "/".join("{}D".format(rank) for rank in sorted(self.layers))
        passed = worst < TOLERANCE
        detail = "{} layers ({}, same/valid+stride 2, default gates) vs NumPy reference{}, max abs error {:.2e}".format(
            cases,
            ranks,
            " (flipped kernels: Theano convolves)" if self.reference_options["flip_kernels"] else "",
            worst,
        )
        return passed, detail, worst

    def check_inheritance(self):
        given = {"activation_i": "relu", "recurrent_activation_f": "softsign"}
        layer, x, weights = self.build(2, activation="linear", recurrent_activation="sigmoid", **given)
        expected = self.expected(x, weights, activation="linear", recurrent_activation="sigmoid", **given)
        worst = self.error(self.run(layer, x), expected)
        inherited = (
            layer.activation_o is layer.activation and layer.recurrent_activation_i is layer.recurrent_activation
        )
        return common.inheritance_verdict(worst, inherited)

    def check_defaults(self):
        pristine = self.pristine
        if pristine is None:
            return False, "no pristine source to compare with", None
        identical = True
        for rank in sorted(self.layers):
            layer, x, weights = self.build(rank)
            options = layer_options(rank)
            if hasattr(pristine, "ConvLSTM"):
                stock = pristine.ConvLSTM(rank=rank, **options)
            else:  # Keras 2.0-2.3: the rank classes live in the cell module
                stock = getattr(pristine, "ConvLSTM{}D".format(rank))(**options)
            self.materialize(stock, x)
            stock.set_weights(weights)
            identical &= all(np.array_equal(a, b) for a, b in zip(self.run(layer, x), self.run(stock, x)))
        return (
            identical,
            "outputs without the five are bit-identical to the pristine source"
            if identical
            else "outputs without the five differ from the pristine source",
            None,
        )

    def check_serialization(self):
        layer, x, _ = self.build(2, **DISTINCT)
        config = layer.get_config()
        if any(config.get(name) is None for name in FIVE):
            return False, "get_config() drops one of the five", None
        clone = type(layer).from_config(config)
        self.materialize(clone, x)
        clone.set_weights(layer.get_weights())
        if not all(np.array_equal(a, b) for a, b in zip(self.run(layer, x), self.run(clone, x))):
            return False, "from_config(get_config()) computes different outputs", None
        plain, _, _ = self.build(2)
        plain_config = plain.get_config()
        if any(name in plain_config for name in FIVE):
            return False, "a layer without the five has them in its config", None
        type(plain).from_config(plain_config)
        inputs = self.keras.layers.Input(shape=x.shape[1:])
        restored = type(layer).from_config(config)
        model = self.keras.models.Model(inputs, restored(inputs))
        restored.set_weights(layer.get_weights())
        if self.legacy:
            # Multi-backend Keras saves HDF5, and its loader predates h5py 3
            # (str attributes), so the model's JSON config is what is checked.
            loaded = self.keras.models.model_from_json(model.to_json())
            loaded.set_weights(model.get_weights())
            how = "model JSON"
        else:
            # The .keras format exists from Keras 2.12; older Keras saves HDF5.
            suffix = ".keras" if self.version >= (2, 12) else ".h5"
            folder = tempfile.mkdtemp()
            try:
                path = os.path.join(folder, "model" + suffix)
                model.save(path)
                # keras 3.0 built from its source tree (Anaconda's defaults) has no
                # generated public API: its keras.models lacks load_model, keras.saving has it.
                load_model = getattr(self.keras.models, "load_model", None) or self.keras.saving.load_model
                loaded = load_model(path)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            how = suffix + " save/load"
        same = all(np.array_equal(a, b) for a, b in zip(self.run_model(model, x), self.run_model(loaded, x)))
        return (
            same,
            "config round trip and {} keep all five".format(how) if same else "{} changes outputs".format(how),
            None,
        )


def layer_options(rank):
    return {"filters": 3, "kernel_size": 2 if rank == 3 else 3, "return_sequences": True, "return_state": True}


def start(package, cell_module, pristine):
    """What common.serve starts with: the Keras package and the ConvLSTM probe."""

    def imported():
        probe = Probe(package, cell_module, pristine)
        return probe.keras, [probe]

    return imported
