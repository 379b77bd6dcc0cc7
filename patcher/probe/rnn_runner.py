"""Verify patched LSTM / GRU layers: run in a fresh process of the target interpreter.

    python rnn_runner.py --package keras \
        --layer-set lstm=keras.src.layers.rnn.lstm [--pristine lstm=PATH] \
        --layer-set gru=keras.src.layers.rnn.gru [--pristine gru=PATH]

Prints progress lines on stderr and one JSON document on stdout, as runner.py
does: {"package", "version", "backend", "checks": [{"name", "passed", "detail",
"value"}]}, each check named "<set> <check>" (e.g. "lstm numerics"). Never
raises: a failing check is reported, not a traceback.

LSTM and GRU are patched from Keras 2.9 on (Keras 3, Keras 2.9-2.15, tf_keras),
but this file runs in the user's interpreter like runner.py: keep it valid
Python 3.6 with NumPy 1.13 (tests/test_probe_compat.py), importing only the
standard library, NumPy and the Keras it checks.
"""

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_convlstm_runner():
    """runner.py, for what both probes share (file loading, versions, errors, the five activations)."""
    spec = importlib.util.spec_from_file_location("_convlstm_patch_runner", os.path.join(HERE, "runner.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convlstm_runner = _load_convlstm_runner()
_load_file = convlstm_runner._load_file
_version_tuple = convlstm_runner._version_tuple
_describe = convlstm_runner._describe
TOLERANCE = convlstm_runner.TOLERANCE
NEW = {
    "lstm": convlstm_runner.FIVE,
    "gru": ("recurrent_activation_z", "recurrent_activation_r"),
}
CLASSES = {"lstm": ("LSTMCell", "LSTM"), "gru": ("GRUCell", "GRU")}
# Distinct activations for every new gate: LSTM's five as runner.py's for
# ConvLSTM. GRU keeps its update gate bounded: an unbounded z makes h grow
# without limit and float32 drift from the reference (hard_sigmoid differs
# between Keras 2 and 3; the reference knows both).
DISTINCT = {
    "lstm": convlstm_runner.DISTINCT,
    "gru": dict(recurrent_activation_z="hard_sigmoid", recurrent_activation_r="softsign"),
}
# One activation set, the others at the stock defaults (tanh / sigmoid): the
# case stock Keras would run on its fused kernel.
ONE = {"lstm": dict(recurrent_activation_f="relu"), "gru": dict(recurrent_activation_r="relu")}
FUSED = {"lstm": ("gpu_lstm", "standard_lstm"), "gru": ("gpu_gru", "standard_gru")}
CHECKS = ("api", "numerics", "inheritance", "serialization", "fused", "defaults")


reference = _load_file("_convlstm_patch_rnn_reference", os.path.join(HERE, "rnn_reference.py"))


class Entered(Exception):
    """Raised by a stand-in for a fused kernel: the layer went there."""


class RnnProbe(object):
    def __init__(self, keras, layer_set, module, pristine):
        self.keras = keras
        self.layer_set = layer_set
        self.module = importlib.import_module(module)
        self.module_name = module
        self.pristine_path = pristine
        self.version = _version_tuple(getattr(keras, "__version__", "3"))
        self.keras3 = self.version >= (3,)
        backend = getattr(keras, "backend", None)
        self.backend = backend.backend() if hasattr(backend, "backend") else "tensorflow"
        self.hard_sigmoid = "keras3" if self.keras3 else "keras2"
        self.to_numpy = getattr(getattr(keras, "ops", None), "convert_to_numpy", np.asarray)
        self.cell_class = getattr(self.module, CLASSES[layer_set][0])
        self.layer_class = getattr(self.module, CLASSES[layer_set][1])
        self.names = NEW[layer_set]
        self.rng = np.random.RandomState(0)

    # -- helpers ---------------------------------------------------------------
    def build(self, layer_class=None, **kwargs):
        options = dict(units=3, return_sequences=True, return_state=True)
        options.update(kwargs)
        layer = (layer_class or self.layer_class)(**options)
        x = self.rng.normal(size=(2, 5, 4)).astype("float32")
        layer.build(x.shape)
        weights = [self.rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()]
        layer.set_weights(weights)
        return layer, x, weights

    def run(self, layer, x):
        value = layer(x)
        return [self.to_numpy(item) for item in (value if isinstance(value, (list, tuple)) else [value])]

    def expected(self, x, weights, **options):
        kernel, recurrent_kernel = weights[0], weights[1]
        bias = weights[2] if len(weights) == 3 else None
        options.setdefault("activation", "tanh")
        options.setdefault("recurrent_activation", "sigmoid")
        function = reference.lstm if self.layer_set == "lstm" else reference.gru
        return list(function(x, kernel, recurrent_kernel, bias, hard_sigmoid=self.hard_sigmoid, **options))

    error = staticmethod(convlstm_runner.Probe.error)  # the largest difference, as for ConvLSTM

    def variants(self):
        """Keyword sets every check runs: GRU with and without reset_after."""
        return [dict(reset_after=True), dict(reset_after=False)] if self.layer_set == "gru" else [dict()]

    def pristine(self):
        if not self.pristine_path:
            return None
        parent = self.module_name.rsplit(".", 1)[0]
        return _load_file(parent + "._convlstm_patch_pristine_" + self.layer_set, self.pristine_path, parent)

    # -- checks ------------------------------------------------------------------
    def check_api(self):
        for cls in (self.cell_class, self.layer_class):
            params = inspect.signature(cls.__init__).parameters
            for name in self.names:
                if name not in params or params[name].default is not None:
                    return False, "{}.__init__ lacks {}=None".format(cls.__name__, name), None
            missing_doc = [name for name in self.names if "{}:".format(name) not in (cls.__doc__ or "")]
            if missing_doc:
                return False, "{} docstring does not describe {}".format(cls.__name__, ", ".join(missing_doc)), None
            ours = [name for name in params if name != "kwargs"]
            if ours[-len(self.names) :] != list(self.names):
                return False, "{}.__init__ does not end with {}".format(cls.__name__, ", ".join(self.names)), None
        return True, "{} and {} take {}, default None".format(
            self.cell_class.__name__, self.layer_class.__name__, ", ".join(self.names)
        ), None

    def check_numerics(self):
        worst, cases = 0.0, 0
        for variant in self.variants():
            for given in (DISTINCT[self.layer_set], ONE[self.layer_set]):
                options = dict(variant)
                options.update(given)
                layer, x, weights = self.build(**options)
                got = self.run(layer, x)
                worst = max(worst, self.error(got, self.expected(x, weights, **options)))
                cases += 1
                if given is ONE[self.layer_set]:
                    # Not what stock Keras (all gates sigmoid) computes: the new activation is used.
                    stock = self.expected(x, weights, **variant)
                    if self.error(got, stock) < 1e-3:
                        return False, "{} gives the stock output: the activation is ignored".format(given), None
        passed = worst < TOLERANCE
        what = "reset_after True/False, " if self.layer_set == "gru" else ""
        detail = "{} {} layers ({}distinct gates; only {}) vs NumPy reference, max abs error {:.2e}".format(
            cases, self.layer_class.__name__, what, ", ".join("{}={}".format(k, v) for k, v in ONE[self.layer_set].items()), worst
        )
        return passed, detail, worst

    def check_inheritance(self):
        worst, inherited = 0.0, True
        first, rest = self.names[0], self.names[1:]
        for variant in self.variants():
            options = dict(variant, activation="linear", recurrent_activation="softsign")
            options[first] = "relu"
            layer, x, weights = self.build(**options)
            worst = max(worst, self.error(self.run(layer, x), self.expected(x, weights, **options)))
            for name in rest:
                stock = "activation" if name.startswith("activation") else "recurrent_activation"
                inherited &= getattr(layer.cell, name) is getattr(layer.cell, stock)
        passed = worst < TOLERANCE and inherited
        return passed, "unset activations follow activation/recurrent_activation, max abs error {:.2e}".format(worst), worst

    def check_serialization(self):
        layer, x, _ = self.build(**DISTINCT[self.layer_set])
        config = layer.get_config()
        if any(config.get(name) is None for name in self.names):
            return False, "get_config() drops one of {}".format(", ".join(self.names)), None
        clone = type(layer).from_config(config)
        clone.build(x.shape)
        clone.set_weights(layer.get_weights())
        if not all(np.array_equal(a, b) for a, b in zip(self.run(layer, x), self.run(clone, x))):
            return False, "from_config(get_config()) computes different outputs", None
        plain, _, _ = self.build()
        if any(name in plain.get_config() for name in self.names):
            return False, "a layer without them has them in its config", None
        inputs = self.keras.layers.Input(shape=x.shape[1:])
        restored = type(layer).from_config(dict(config, return_state=False))
        model = self.keras.models.Model(inputs, restored(inputs))
        restored.set_weights(layer.get_weights())
        folder = tempfile.mkdtemp()
        try:
            path = os.path.join(folder, "model.keras")
            model.save(path)
            loaded = self.keras.models.load_model(path)
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        got = [self.to_numpy(model(x)), self.to_numpy(loaded(x))]
        same = np.array_equal(got[0], got[1])
        return same, "config round trip and .keras save/load keep them" if same else ".keras save/load changes outputs", None

    def check_fused(self):
        """With a GPU made to look present, only a layer without the new activations enters the fused kernel."""
        given = ONE[self.layer_set]
        with_new, x, weights = self.build(**given)
        plain, _, _ = self.build()
        entered, got = self._fused_runs([with_new, plain], x)
        worst = self.error(got[0], self.expected(x, weights, **given))
        if entered[0]:
            return False, "a layer with {} entered the fused kernel".format(given), None
        if not entered[1]:
            return False, "a layer without per-gate activations no longer enters the fused kernel", None
        if worst >= TOLERANCE:
            return False, "off the fused path, max abs error {:.2e}".format(worst), worst
        refused = ""
        if "use_cudnn" in inspect.signature(self.layer_class.__init__).parameters:  # Keras 3.1+
            try:
                self.run(self.build(use_cudnn=True, **given)[0], x)
                return False, "use_cudnn=True with {} did not raise".format(given), None
            except ValueError as error:
                if "use_cudnn=True" not in str(error):
                    raise
            refused = "; use_cudnn=True with one set raises as stock does"
        where = "backend.{}".format(self.layer_set) if self.keras3 else FUSED[self.layer_set][0]
        return True, "GPU made to look present: a plain {} enters {}, one with {} runs its cell{}".format(
            self.layer_class.__name__, where, ", ".join(given), refused
        ), worst

    def _fused_runs(self, layers, x):
        """Run each layer with the fused kernels replaced by recorders; whether each entered, and outputs."""
        entered, outputs, calls = [], [], []
        if self.keras3:
            backend_module = importlib.import_module(self.keras.__name__ + ".src.backend")
            name = self.layer_set
            real = getattr(backend_module, name)

            def recorder(*args, **kwargs):
                calls.append(name)
                # What the backend says where cuDNN cannot run: the layer falls back to its cell.
                raise NotImplementedError

            setattr(backend_module, name, recorder)
            try:
                for layer in layers:
                    del calls[:]
                    outputs.append(self.run(layer, x))
                    entered.append(bool(calls))
            finally:
                setattr(backend_module, name, real)
            return entered, outputs
        import tensorflow as tf

        real_list = tf.config.list_logical_devices
        saved = {name: getattr(self.module, name) for name in FUSED[self.layer_set]}

        def gpu(*args, **kwargs):
            calls.append("gpu")
            raise Entered()

        def standard(*args, **kwargs):
            calls.append("standard")
            return saved[FUSED[self.layer_set][1]](*args, **kwargs)

        def devices(device_type=None):
            if device_type == "GPU":
                return [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
            return real_list(device_type)

        tf.config.list_logical_devices = devices
        setattr(self.module, FUSED[self.layer_set][0], gpu)
        setattr(self.module, FUSED[self.layer_set][1], standard)
        try:
            for layer in layers:
                del calls[:]
                try:
                    outputs.append(self.run(layer, x))
                except Entered:
                    outputs.append(None)
                entered.append(bool(calls))
        finally:
            tf.config.list_logical_devices = real_list
            for name, function in saved.items():
                setattr(self.module, name, function)
        return entered, outputs

    def check_defaults(self):
        pristine = self.pristine()
        if pristine is None:
            return False, "no pristine source to compare with", None
        identical = True
        stock_class = getattr(pristine, CLASSES[self.layer_set][1])
        for variant in self.variants():
            layer, x, weights = self.build(**variant)
            stock = stock_class(units=3, return_sequences=True, return_state=True, **variant)
            stock.build(x.shape)
            stock.set_weights(weights)
            identical &= all(np.array_equal(a, b) for a, b in zip(self.run(layer, x), self.run(stock, x)))
        what = "outputs without {} are {} to the pristine source".format(
            ", ".join(self.names), "bit-identical" if identical else "NOT identical"
        )
        return identical, what, None


def _pairs(values):
    pairs = {}
    for value in values or []:
        name, _, rest = value.partition("=")
        pairs[name] = rest
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--package", required=True)
    parser.add_argument("--layer-set", action="append", required=True, help="SET=MODULE")
    parser.add_argument("--pristine", action="append", help="SET=PATH of the backed-up module")
    parser.add_argument("--site", help="the folder holding the package: searched first")
    parser.add_argument("--checks", default=",".join(CHECKS))
    args = parser.parse_args(argv)
    if args.site:
        sys.path.insert(1, args.site)  # where PYTHONPATH would put it, after this script's folder
    result = {"package": args.package, "checks": []}
    modules, pristine = _pairs(args.layer_set), _pairs(args.pristine)
    try:
        print("importing {}".format(args.package), file=sys.stderr, flush=True)
        keras = importlib.import_module(args.package)
        probes = [RnnProbe(keras, name, module, pristine.get(name)) for name, module in modules.items()]
        result["version"] = getattr(keras, "__version__", "?")
        result["backend"] = probes[0].backend if probes else None
    except Exception as error:  # reported as a failed check, never a traceback
        result["checks"].append({"name": "import", "passed": False, "detail": _describe(error), "value": None})
        print(json.dumps(result))
        return 0
    for probe in probes:
        for name in args.checks.split(","):
            convlstm_runner.run_check(probe, name, "{} {}".format(probe.layer_set, name), result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
