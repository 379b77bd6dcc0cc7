"""Verify a patched Keras: run in a fresh process of the target interpreter.

    python runner.py --package keras --cell-module keras.src.layers.rnn.conv_lstm \
        [--pristine PATH_TO_BACKED_UP_CELL_MODULE]

Prints one progress line per check on stderr and a JSON document on stdout (behind
answer.py's marker):
{"package", "version", "backend", "checks": [{"name", "passed", "detail", "value"}]}.
Never raises: a failing check is reported, not a traceback.

This file runs in the *user's* interpreter with the user's Keras, from Keras 3
back to multi-backend Keras 2.0 (Python 3.5-3.7, NumPy 1.13 and newer, Theano,
TensorFlow 1.x or CNTK). Keep it valid Python 3.6 (tests/test_probe_compat.py
parses it with feature_version=(3, 6)) and use nothing newer from the standard
library or NumPy. What differs between generations:

* Keras 2.0-2.3 (multi-backend) have only ConvLSTM2D (a ConvLSTM2DCell from
  2.1.5, gates in ConvLSTM2D.step before), run in graph mode (layers are
  called through a Model), and save to HDF5;
* on Theano, convolutions flip the kernel (see reference.py);
* hard_sigmoid is clip(0.2 x + 0.5, 0, 1) in Keras 2 and relu6(x + 3) / 6 in
  Keras 3.
"""

import argparse
import importlib
import importlib.util
import inspect
import os
import re
import sys
import tempfile
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIVE = ("activation_i", "activation_o", "recurrent_activation_f", "recurrent_activation_i", "recurrent_activation_o")
# Activations defined identically in every Keras version (hard_sigmoid is not).
DISTINCT = dict(
    activation_i="relu",
    activation_o="softsign",
    recurrent_activation_f="sigmoid",
    recurrent_activation_i="linear",
    recurrent_activation_o="tanh",
)
TOLERANCE = 1e-4
SPATIAL = {1: (7,), 2: (6, 5), 3: (5, 4, 4)}
# Classes of the cell module that take the five, in every layout.
CELL_MODULE_CLASSES = ("ConvLSTMCell", "ConvLSTM", "ConvLSTM2DCell")


def _load_file(name, path, package=None):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if package:
        # Keras 2 modules import relatively (`from .. import backend`).
        module.__package__ = package
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


reference = _load_file("_convlstm_patch_reference", os.path.join(HERE, "reference.py"))
# Prints the result behind a marker, so a banner the interpreter prints too cannot hide it.
answer = _load_file("_convlstm_patch_answer", os.path.join(HERE, "answer.py"))


def _version_tuple(text):
    return tuple(int(part) for part in re.findall(r"\d+", str(text))[:3])


class Probe:
    def __init__(self, package, cell_module, pristine):
        self.keras = importlib.import_module(package)
        self.cell_module = importlib.import_module(cell_module)
        self.version = _version_tuple(getattr(self.keras, "__version__", "3"))
        # Multi-backend Keras (2.0-2.3): graph mode only, HDF5 saving.
        self.legacy = self.version < (2, 4)
        backend = getattr(self.keras, "backend", None)
        self.backend = backend.backend() if hasattr(backend, "backend") else "tensorflow"
        # The backed-up original of the cell module, loaded beside the patched
        # one (same package, so its relative imports resolve).
        parent = cell_module.rsplit(".", 1)[0]
        self.pristine = (
            _load_file(parent + "._convlstm_patch_pristine", pristine, parent) if pristine else None
        )
        # Keras 3 on torch hands back tensors that np.asarray refuses.
        self.to_numpy = getattr(getattr(self.keras, "ops", None), "convert_to_numpy", np.asarray)
        self.layers = {}
        for rank in (1, 2, 3):
            layer_class = getattr(self.keras.layers, "ConvLSTM%dD" % rank, None)
            if layer_class is not None:
                self.layers[rank] = layer_class
        self.reference_options = dict(
            flip_kernels=self.backend == "theano",
            hard_sigmoid="keras3" if self.version >= (3,) else "keras2",
        )
        self.models = {}
        self.rng = np.random.RandomState(0)

    # -- helpers ---------------------------------------------------------------
    def build(self, rank, layer_class=None, **kwargs):
        options = dict(filters=3, kernel_size=2 if rank == 3 else 3, return_sequences=True, return_state=True)
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

    @staticmethod
    def error(got, expected):
        if len(got) != len(expected):
            raise ValueError(f"the layer returned {len(got)} tensors, the reference {len(expected)}")
        return max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))

    # -- checks ------------------------------------------------------------------
    def check_api(self):
        classes = [getattr(self.cell_module, name) for name in CELL_MODULE_CLASSES if hasattr(self.cell_module, name)]
        classes += [cls for cls in self.layers.values() if cls not in classes]
        pristine = self.pristine
        for cls in classes:
            params = inspect.signature(cls.__init__).parameters
            for name in FIVE:
                if name not in params or params[name].default is not None:
                    return False, f"{cls.__name__}.__init__ lacks {name}=None", None
            missing_doc = [name for name in FIVE if f"{name}:" not in (cls.__doc__ or "")]
            if missing_doc:
                return False, "{} docstring does not describe {}".format(cls.__name__, ", ".join(missing_doc)), None
            stock_class = getattr(pristine, cls.__name__, None) if pristine else None
            if stock_class is not None:
                stock = [name for name in inspect.signature(stock_class.__init__).parameters if name != "kwargs"]
                ours = [name for name in params if name != "kwargs"]
                if ours != stock + list(FIVE):
                    return False, f"{cls.__name__}.__init__ parameter order changed", None
        names = ", ".join(cls.__name__ for cls in classes)
        return True, f"{names} take the five, default None, existing order kept", None

    def check_numerics(self):
        worst = 0.0
        cases = 0
        for rank in sorted(self.layers):
            for options in (dict(padding="same"), dict(padding="valid", strides=2)):
                options.update(DISTINCT)
                layer, x, weights = self.build(rank, activation="tanh", recurrent_activation="sigmoid", **options)
                got = self.run(layer, x)
                expected = self.expected(x, weights, activation="tanh", recurrent_activation="sigmoid", **options)
                worst = max(worst, self.error(got, expected))
                cases += 1
        # The version's own defaults (hard_sigmoid in Keras 2) for the gates not given.
        rank = 2
        defaults = inspect.signature(self.layers[rank].__init__).parameters
        given = dict(activation_i="relu", recurrent_activation_f="softsign")
        layer, x, weights = self.build(rank, padding="same", **given)
        expected = self.expected(
            x,
            weights,
            padding="same",
            activation=defaults["activation"].default,
            recurrent_activation=defaults["recurrent_activation"].default,
            **given
        )
        worst = max(worst, self.error(self.run(layer, x), expected))
        cases += 1
        ranks = "/".join("%dD" % rank for rank in sorted(self.layers))
        passed = worst < TOLERANCE
        detail = "{} layers ({}, same/valid+stride 2, default gates) vs NumPy reference{}, max abs error {:.2e}".format(
            cases, ranks, " (flipped kernels: Theano convolves)" if self.reference_options["flip_kernels"] else "", worst
        )
        return passed, detail, worst

    def check_inheritance(self):
        given = dict(activation_i="relu", recurrent_activation_f="softsign")
        layer, x, weights = self.build(2, activation="linear", recurrent_activation="sigmoid", **given)
        expected = self.expected(x, weights, activation="linear", recurrent_activation="sigmoid", **given)
        worst = self.error(self.run(layer, x), expected)
        inherited = layer.activation_o is layer.activation and layer.recurrent_activation_i is layer.recurrent_activation
        passed = worst < TOLERANCE and inherited
        return passed, f"unset activations follow activation/recurrent_activation, max abs error {worst:.2e}", worst

    def check_defaults(self):
        pristine = self.pristine
        if pristine is None:
            return False, "no pristine source to compare with", None
        identical = True
        for rank in sorted(self.layers):
            layer, x, weights = self.build(rank)
            options = dict(filters=3, kernel_size=2 if rank == 3 else 3, return_sequences=True, return_state=True)
            if hasattr(pristine, "ConvLSTM"):
                stock = pristine.ConvLSTM(rank=rank, **options)
            else:  # Keras 2.0-2.3: the rank classes live in the cell module
                stock = getattr(pristine, "ConvLSTM%dD" % rank)(**options)
            self.materialize(stock, x)
            stock.set_weights(weights)
            identical &= all(np.array_equal(a, b) for a, b in zip(self.run(layer, x), self.run(stock, x)))
        return identical, "outputs without the five are bit-identical to the pristine source" if identical else "outputs without the five differ from the pristine source", None

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
                _remove_tree(folder)
            how = suffix + " save/load"
        same = all(np.array_equal(a, b) for a, b in zip(self.run_model(model, x), self.run_model(loaded, x)))
        return same, f"config round trip and {how} keep all five" if same else f"{how} changes outputs", None


def _remove_tree(folder):
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


CHECKS = ("api", "numerics", "inheritance", "defaults", "serialization")


def main(argv=None):
    _load_file("_convlstm_patch_orphan", os.path.join(HERE, "orphan.py")).exit_with_parent()
    parser = argparse.ArgumentParser()
    parser.add_argument("--package", required=True)
    parser.add_argument("--cell-module", required=True)
    parser.add_argument("--pristine")
    parser.add_argument("--site", help="the folder holding the package: searched first")
    parser.add_argument("--checks", default=",".join(CHECKS))
    args = parser.parse_args(argv)
    if args.site:
        sys.path.insert(1, args.site)  # where PYTHONPATH would put it, after this script's folder
    result = {"package": args.package, "checks": []}
    try:
        print(f"importing {args.package}", file=sys.stderr, flush=True)
        probe = Probe(args.package, args.cell_module, args.pristine)
        result["version"] = getattr(probe.keras, "__version__", "?")
        result["backend"] = probe.backend
    except Exception as error:  # reported as a failed check, never a traceback
        result["checks"].append({"name": "import", "passed": False, "detail": _describe(error), "value": None})
        answer.emit(result)
        return 0
    for name in args.checks.split(","):
        run_check(probe, name, name, result)
    answer.emit(result)
    return 0


def run_check(probe, name, label, result):
    """Run probe.check_<name> and add it to result as label; a check that raises has failed."""
    print(f"check {label}", file=sys.stderr, flush=True)
    try:
        passed, detail, value = getattr(probe, f"check_{name}")()
    except Exception as error:
        passed, detail, value = False, _describe(error), None
    result["checks"].append({"name": label, "passed": bool(passed), "detail": detail, "value": value})


def _describe(error):
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" at {os.path.basename(last[0].filename)}:{last[0].lineno}" if last else ""
    return f"{type(error).__name__}: {error}{where}".splitlines()[0][:300]


if __name__ == "__main__":
    sys.exit(main())
