"""The LSTM/GRU checks of the probe (rnn_runner.py runs them): api, numerics, inheritance,
serialization, fused and defaults of one layer set, against the NumPy reference (rnn_reference.py).
The cases users build the layers in are listed in rnn_catalogue.py, built and run by rnn_cases.py;
fused_watch.py watches where they go.

LSTM and GRU are patched from Keras 2.9 on (Keras 3, Keras 2.9-2.15, tf_keras),
but this file runs in the user's interpreter like the ConvLSTM probe: keep it
valid Python 3.6 with NumPy 1.13 (tests/test_probe_compat.py), importing only
the standard library, NumPy and the Keras it checks.
"""

import importlib
import inspect
import os
import shutil
import sys
import tempfile

import numpy as np

from . import common
from . import rnn_reference as reference
from .common import TOLERANCE
from .fused_watch import FusedPaths
from .rnn_cases import Cases
from .rnn_catalogue import BATCH, CASES, CLASSES, DISTINCT, FEATURES, NEW, ONE, STEPS, UNITS

CHECKS = ("api", "numerics", "inheritance", "serialization", "fused", "defaults")


class RnnProbe:
    """The patched layers of one layer set (lstm or gru) of one Keras, checked."""

    def __init__(self, keras, layer_set, module, pristine, peers=None):
        self.keras = keras
        self.layer_set = layer_set
        self.module = importlib.import_module(module)
        self.module_name = module
        self.pristine_path = pristine
        self.version = common.keras_version(keras)
        self.keras3 = self.version >= (3,)
        self.backend = common.backend_of(keras)
        self.hard_sigmoid = "keras3" if self.keras3 else "keras2"
        self.to_numpy = common.numpy_converter(keras)
        self.cell_class = getattr(self.module, CLASSES[layer_set][0])
        self.layer_class = getattr(self.module, CLASSES[layer_set][1])
        self.names = NEW[layer_set]
        self.rng = np.random.RandomState(0)
        # The patched modules of every set (the stacked case mixes LSTM and GRU).
        self.modules = dict(peers or {})
        self.modules[layer_set] = self.module
        self.cases = Cases(self)  # built once, shared by numerics and fused
        self.fused = FusedPaths(self)  # the cases run with a GPU made to look present

    # -- helpers ---------------------------------------------------------------
    def build(self, layer_class=None, **kwargs):
        options = {"units": UNITS, "return_sequences": True, "return_state": True}
        options.update(kwargs)
        layer = (layer_class or self.layer_class)(**options)
        x = self.rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
        layer.build(x.shape)
        weights = [self.rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()]
        layer.set_weights(weights)
        return layer, x, weights

    def run(self, layer, x, **kwargs):
        value = layer(x, **kwargs)
        return [self.to_numpy(item) for item in (value if isinstance(value, (list, tuple)) else [value])]

    def expected(self, x, weights, **options):
        kernel, recurrent_kernel = weights[0], weights[1]
        bias = weights[2] if len(weights) == 3 else None
        options.setdefault("activation", "tanh")
        options.setdefault("recurrent_activation", "sigmoid")
        function = reference.lstm if self.layer_set == "lstm" else reference.gru
        return list(function(x, kernel, recurrent_kernel, bias, hard_sigmoid=self.hard_sigmoid, **options))

    error = staticmethod(common.max_error)

    def variants(self):
        """Keyword sets every check runs: GRU with and without reset_after."""
        return [{"reset_after": True}, {"reset_after": False}] if self.layer_set == "gru" else [{}]

    def pristine(self):
        if not self.pristine_path:
            return None
        parent = self.module_name.rsplit(".", 1)[0]
        # Loading it registers its classes under the patched ones' names (Keras 3's keras_export):
        # keep the registry as it was, or a later Bidirectional would deserialize stock layers.
        api = sys.modules.get(self.keras.__name__ + ".src.api_export")
        registries = (
            [value for name, value in vars(api).items() if name.isupper() and isinstance(value, dict)] if api else []
        )
        saved = [(registry, dict(registry)) for registry in registries]
        try:
            return common.load_file(parent + "._convlstm_patch_pristine_" + self.layer_set, self.pristine_path, parent)
        finally:
            for registry, before in saved:
                registry.clear()
                registry.update(before)

    def device(self):
        """The GPU Keras computes on by default here (TF32 then off), or None (the CPU)."""
        if not hasattr(self, "_device"):
            self._device = common.default_gpu(self.backend)
        return self._device

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
        return (
            True,
            "{} and {} take {}, default None".format(
                self.cell_class.__name__, self.layer_class.__name__, ", ".join(self.names)
            ),
            None,
        )

    def check_numerics(self):
        """The layer alone, then every case (wrapped, stacked, masked, backwards) with per-gate
        activations equal to and differing from what they inherit, on the default device. The
        differing ones are run once for this check and fused: with the fused functions recorded
        (a layer that takes none computes exactly as without)."""
        device = self.device()
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
        wrong, runs = [], 0
        for index, case in enumerate(CASES):
            different = self.cases.case(index, "different")
            if self.error(different.expected, self.cases.reference_outputs(different, stock=True)) < 1e-3:
                # a case that could not tell the per-gate activations from stock
                return False, "{}: the reference gives the stock output".format(self.cases.label(case)), None
            for variant in case.variants:
                if variant == "plain":  # stock Keras: the fused check looks at its path
                    continue
                built = self.cases.case(index, variant)
                try:
                    got = self.fused.watched(index, variant)[1] if variant == "different" else self.cases.call(built)
                except Exception:
                    if self.cases.stock_fails(index):
                        break
                    raise
                error = self.error(got, built.expected)
                worst, runs = max(worst, error), runs + 1
                if not error < TOLERANCE:
                    wrong.append(
                        "{} with {} ({:.1e})".format(self.cases.label(case), self.cases.given(index, variant), error)
                    )
        what = "reset_after True/False, " if self.layer_set == "gru" else ""
        detail = (
            "{} {} layers ({}distinct gates; only {}) and {} built around them in {} cases (Bidirectional in every "
            "merge mode, backward_layer=, one direction only, RNN({}), stacked, masked, go_backwards, return_state; "
            "per-gate activations differing from what they inherit, in {} also equal to it) vs NumPy reference, on {}: "
        ).format(
            cases,
            self.layer_class.__name__,
            what,
            self.cases.describe(ONE[self.layer_set]),
            runs,
            len(CASES),
            self.cell_class.__name__,
            sum(case.stock_path for case in CASES),
            device or "the CPU",
        )
        if wrong:
            return False, detail + "off by more than {:.0e}: {}".format(TOLERANCE, "; ".join(wrong)), worst
        return worst < TOLERANCE, detail + "max abs error {:.2e}{}".format(worst, self.cases.skipped()), worst

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
        return common.inheritance_verdict(worst, inherited)

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
            shutil.rmtree(folder, ignore_errors=True)
        got = [self.to_numpy(model(x)), self.to_numpy(loaded(x))]
        same = np.array_equal(got[0], got[1])
        return (
            same,
            "config round trip and .keras save/load keep them" if same else ".keras save/load changes outputs",
            None,
        )

    def check_fused(self):
        return self.fused.check()

    def check_defaults(self):
        pristine = self.pristine()
        if pristine is None:
            return False, "no pristine source to compare with", None
        identical = True
        stock_class = getattr(pristine, CLASSES[self.layer_set][1])
        for variant in self.variants():
            layer, x, weights = self.build(**variant)
            stock = stock_class(units=UNITS, return_sequences=True, return_state=True, **variant)
            stock.build(x.shape)
            stock.set_weights(weights)
            identical &= all(np.array_equal(a, b) for a, b in zip(self.run(layer, x), self.run(stock, x)))
        what = "outputs without {} are {} to the pristine source".format(
            ", ".join(self.names), "bit-identical" if identical else "NOT identical"
        )
        return identical, what, None


def start(package, modules, pristine):
    """What common.serve starts with: the Keras package and a probe per layer set (``modules``:
    set -> its cell module; ``pristine``: set -> the backed-up original's path)."""

    def imported():
        keras = importlib.import_module(package)
        peers = {name: importlib.import_module(module) for name, module in modules.items()}
        probes = [RnnProbe(keras, name, module, pristine.get(name), peers) for name, module in modules.items()]
        return keras, probes

    return imported
