"""Verify patched LSTM / GRU layers: run in a fresh process of the target interpreter.

    python rnn_runner.py --package keras \
        --layer-set lstm=keras.src.layers.rnn.lstm [--pristine lstm=PATH] \
        --layer-set gru=keras.src.layers.rnn.gru [--pristine gru=PATH]

Prints progress lines on stderr and one JSON document on stdout (behind answer.py's marker), as runner.py
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
# Per-gate activations that differ from what they inherit, taken in turn by the
# cases below so that every gate is exercised somewhere.
DIFFERENT = {
    "lstm": (
        dict(recurrent_activation_f="relu"),
        dict(activation_o="linear"),
        dict(activation_i="relu", recurrent_activation_i="softsign"),
        dict(recurrent_activation_o="hard_sigmoid"),
    ),
    "gru": (
        dict(recurrent_activation_z="hard_sigmoid"),
        dict(recurrent_activation_r="relu"),
        dict(recurrent_activation_z="softsign", recurrent_activation_r="linear"),
    ),
}
# Per-gate activations equal to what they inherit (the layer's default
# recurrent_activation / activation): they compute what stock computes, so the
# layer must stay on the stock (fused) path.
SAME_AS = {
    "lstm": dict(recurrent_activation_f="recurrent_activation", activation_o="activation"),
    "gru": dict(recurrent_activation_z="recurrent_activation"),
}
VARIANTS = ("plain", "same", "different")  # no per-gate activation; equal to inherited; differing
# The functions a Keras 3 layer enters for cuDNN (backend.<name>; backend.rnn.<name>
# in keras-nightly 3.16), and what its backends ask to know whether a GPU is there.
KERAS3_FUSED = ("lstm", "gru", "bidirectional_lstm", "bidirectional_gru")
GPU_TESTS = ("_is_gpu_available", "_is_cuda_cudnn_available")  # tensorflow and jax; torch
# The method a Keras 3 layer with per-gate activations calls where stock calls backend.lstm
# / backend.gru (convlstm-patch adds it): under PyTorch the backend's plain loop with the
# cell's functions (GRU: reset_after=True only, as PyTorch's own), elsewhere it declines.
PER_GATE_LOOP = "_per_gate_{}"
# tf_keras and Keras 2: module functions of lstm.py / gru.py. gpu_* is cuDNN;
# standard_* and *_with_backend_selection compute the same with sigmoid/tanh
# hard-coded, on any device (tf_keras runs standard_* on a CPU).
FUSED = {
    "lstm": ("gpu_lstm", "standard_lstm", "lstm_with_backend_selection"),
    "gru": ("gpu_gru", "standard_gru", "gru_with_backend_selection"),
}
CHECKS = ("api", "numerics", "inheritance", "serialization", "fused", "defaults")
BATCH, STEPS, FEATURES, UNITS = 2, 5, 4, 3


class Case:
    """One way users build the layer: alone, as a cell in RNN, in Bidirectional, stacked, masked.

    wrapper: None (the layer), "cell" (RNN(cell)), "bidirectional" or "stack" (the layer
    returning sequences, then Bidirectional around the other patched layer). different: which
    DIFFERENT set its per-gate layers take. gated: the Bidirectional directions given per-gate
    activations. mask: "explicit" (called with mask=, the last steps of one sample padded) or
    "masking" (a Masking layer first, masking those padded steps). stock_path: also
    built without per-gate activations and with ones equal to what they inherit, which must
    take the path stock takes (a few cases: each build and run costs time in every apply).
    """

    def __init__(self, name, wrapper=None, different=0, merge_mode="concat", gated=("forward", "backward"),
                 backward_layer=False, mask=False, stock_path=False, **options):
        self.name = name
        self.wrapper = wrapper
        self.different = different
        self.merge_mode = merge_mode
        self.gated = gated
        self.backward_layer = backward_layer
        self.mask = mask
        self.stock_path = stock_path
        self.variants = VARIANTS if stock_path else ("different",)
        self.options = dict(return_sequences=True, return_state=True)
        self.options.update(options)


BIDIRECTIONAL = "Bidirectional({layer}"
# Few cases, each covering several things users do: the probe runs inside every
# `apply --layers`. Masks pad the last steps (cuDNN takes them). Keras 3.0's
# Bidirectional fails with return_state, so two Bidirectional cases on the stock
# path go without it.
CASES = (
    Case("{layer}", stock_path=True),
    Case("{layer}(go_backwards=True) with a mask", different=1, go_backwards=True, mask="explicit", return_sequences=False),
    Case("RNN({cell})", "cell", different=2, return_sequences=False),
    Case(BIDIRECTIONAL + ")", "bidirectional", stock_path=True),
    Case(BIDIRECTIONAL + ", merge_mode='sum')", "bidirectional", 1, "sum", return_sequences=False, return_state=False),
    Case("Masking, " + BIDIRECTIONAL + ", merge_mode='ave')", "bidirectional", 2, "ave", mask="masking", return_state=False),
    Case(BIDIRECTIONAL + ", merge_mode='mul')", "bidirectional", 3, "mul", return_sequences=False),
    Case(BIDIRECTIONAL + ", merge_mode=None, backward_layer=...)", "bidirectional", 1, None, backward_layer=True),
    Case(BIDIRECTIONAL + "), backward layer only", "bidirectional", 0, gated=("backward",), backward_layer=True,
         return_state=False, stock_path=True),
    Case(BIDIRECTIONAL + "), forward layer only", "bidirectional", 1, gated=("forward",), backward_layer=True,
         return_sequences=False, return_state=False, stock_path=True),
    Case("{layer}, Bidirectional({other})", "stack"),
)


reference = _load_file("_convlstm_patch_rnn_reference", os.path.join(HERE, "rnn_reference.py"))


class Built:
    """A case built with one variant's per-gate activations: the object called, its LSTM/GRU
    layers as Parts in the order data flows, and the outputs the reference computes for it."""

    def __init__(self, case, top, parts):
        self.case = case
        self.top = top
        self.parts = parts
        self.expected = None


class Part:
    """One LSTM/GRU layer of a built case: its set, its per-gate activations, its role."""

    def __init__(self, layer, kind, gates, role):
        self.layer = layer
        self.kind = kind
        self.gates = gates
        self.role = role


class Chain:
    """Layers called one after the other on eager tensors, the mask of Masking travelling with
    them, as a Sequential or functional model called eagerly runs them (without the graph a
    tf_keras model builds first, which costs seconds)."""

    def __init__(self, *layers):
        self.layers = layers

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def get_weights(self):
        return [weight for layer in self.layers for weight in layer.get_weights()]

    def set_weights(self, weights):
        for layer in self.layers:
            count = len(layer.get_weights())
            layer.set_weights(weights[:count])
            weights = weights[count:]


class FusedWatch:
    """While entered: a GPU made to look present, and every fused function the layers can reach
    replaced by a recorder. run() calls a function and lists the fused functions it entered,
    each with the kernels it was given (to tell which layer went there).

    Keras 3 with the patch's per-gate loops: each loop is recorded too (whether it ran or
    declined), then called through.

    What a recorder does next decides what the layers do. Keras 3: it raises
    NotImplementedError, what the backends raise where cuDNN cannot run, and every Keras 3
    layer falls back to its cell loop (Bidirectional: to its two layers), so a plain layer
    before a per-gate one does not hide it. Calling through instead would run cuDNN code on a
    CPU: the TensorFlow backend fails, jax and torch fall back inside the fused function (torch
    computing with activation/recurrent_activation only), each differently. tf_keras has no
    fallback: gpu_* (cuDNN) is stood in for by standard_*, the same sigmoid/tanh equations that
    tf_keras runs on a CPU, and the others call through.
    """

    def __init__(self, probe):
        self.entered = []
        self.looped = []  # (loop, kernels, whether it ran rather than declined)
        self.replaced = []  # (owner, name, original)
        self.faked = []  # what now says a GPU is present
        self.spied = []  # the recorders' names, as the details show them
        self.to_numpy = probe.to_numpy
        self.replacements = probe.keras3_watch(self) if probe.keras3 else probe.tf_watch(self)

    def recorder(self, label, then, kernels=("kernel",)):
        def fused(*args, **kwargs):
            self.entered.append((label, [self.value(kwargs.get(name)) for name in kernels]))
            return then(*args, **kwargs)

        self.spied.append(label)
        return fused

    def loop_recorder(self, label, loop):
        def per_gate_loop(layer, *args, **kwargs):
            kernels = [self.value(kwargs.get("kernel"))]
            try:
                result = loop(layer, *args, **kwargs)
            except NotImplementedError:
                self.looped.append((label, kernels, False))
                raise
            self.looped.append((label, kernels, True))
            return result

        return per_gate_loop

    def value(self, kernel):
        """A kernel's values, or None (a symbolic tensor has none: the entry is then put on every layer)."""
        try:
            return None if kernel is None else self.to_numpy(kernel)
        except Exception:
            return None

    def __enter__(self):
        for owner, name, replacement in self.replacements:
            self.replaced.append((owner, name, getattr(owner, name)))
            setattr(owner, name, replacement)
        return self

    def __exit__(self, *exc_info):
        for owner, name, original in reversed(self.replaced):
            setattr(owner, name, original)
        del self.replaced[:]
        return False

    def run(self, function):
        """(the fused functions entered, as (name, kernels), and the outputs); ``looped``
        then holds the per-gate loops called."""
        del self.entered[:]
        del self.looped[:]
        outputs = function()
        return list(self.entered), outputs


def _refuse(*args, **kwargs):
    raise NotImplementedError


def _gpu_present(*args, **kwargs):
    return True


def _stand_in(standard):
    """tf_keras's CPU equivalent of gpu_lstm/gpu_gru, which take no zero_output_for_mask."""

    def gpu(*args, **kwargs):
        kwargs.setdefault("zero_output_for_mask", False)
        return standard(*args, **kwargs)

    return gpu


class RnnProbe:
    def __init__(self, keras, layer_set, module, pristine, peers=None):
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
        # The patched modules of every set (the stacked case mixes LSTM and GRU).
        self.modules = dict(peers or {})
        self.modules[layer_set] = self.module
        self.built = {}  # (case index, variant) -> Built, shared by numerics and fused
        self.case_weights = {}
        self.stock_failures = {}  # case index -> what stock raises (None: it runs)
        self.watches = {}  # (case index, variant) -> what watched() saw
        self.loops = {}  # (case index, variant) -> the per-gate loops called: (name, owners, ran)
        self.case_rng = np.random.RandomState(2)  # apart from self.rng: the other checks draw as before
        x = np.random.RandomState(1).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
        x[1, STEPS - 2 :] = 0.0  # padded steps: what Masking(0.0) masks, and the explicit mask (unmasked elsewhere)
        self.x, self.mask = x, np.any(x != 0.0, axis=-1)

    # -- helpers ---------------------------------------------------------------
    def build(self, layer_class=None, **kwargs):
        options = dict(units=UNITS, return_sequences=True, return_state=True)
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

    error = staticmethod(convlstm_runner.Probe.error)  # the largest difference, as for ConvLSTM

    def variants(self):
        """Keyword sets every check runs: GRU with and without reset_after."""
        return [dict(reset_after=True), dict(reset_after=False)] if self.layer_set == "gru" else [dict()]

    def pristine(self):
        if not self.pristine_path:
            return None
        parent = self.module_name.rsplit(".", 1)[0]
        # Loading it registers its classes under the patched ones' names (Keras 3's keras_export):
        # keep the registry as it was, or a later Bidirectional would deserialize stock layers.
        api = sys.modules.get(self.keras.__name__ + ".src.api_export")
        registries = [value for name, value in vars(api).items() if name.isupper() and isinstance(value, dict)] if api else []
        saved = [(registry, dict(registry)) for registry in registries]
        try:
            return _load_file(parent + "._convlstm_patch_pristine_" + self.layer_set, self.pristine_path, parent)
        finally:
            for registry, before in saved:
                registry.clear()
                registry.update(before)

    # -- the cases -------------------------------------------------------------
    def defaults(self, kind):
        """The layer's own activation and recurrent_activation defaults."""
        params = inspect.signature(getattr(self.modules[kind], CLASSES[kind][1]).__init__).parameters
        return dict(activation=params["activation"].default, recurrent_activation=params["recurrent_activation"].default)

    def gates(self, kind, case, variant):
        if variant == "plain":
            return {}
        if variant == "same":
            inherited = self.defaults(kind)
            return dict((name, inherited[stock]) for name, stock in SAME_AS[kind].items())
        sets = DIFFERENT[kind]
        return dict(sets[case.different % len(sets)])

    def kinds(self, case):
        """The layer sets a case uses: the probe's own, and for the stack the other if patched."""
        other = [kind for kind in sorted(self.modules) if kind != self.layer_set]
        return self.layer_set, (other[0] if other and case.wrapper == "stack" else self.layer_set)

    def label(self, case):
        first, second = self.kinds(case)
        return case.name.format(layer=CLASSES[first][1], cell=CLASSES[first][0], other=CLASSES[second][1])

    def case(self, index, variant):
        """CASES[index] built with the variant's per-gate activations, its weights set (the same
        for every variant) and its expected outputs computed; built once."""
        key = (index, variant)
        if key not in self.built:
            case = CASES[index]
            built = self.construct(case, variant)
            if index not in self.case_weights:
                self.case_weights[index] = [
                    self.case_rng.normal(scale=0.5, size=w.shape).astype("float32") for w in built.top.get_weights()
                ]
            built.top.set_weights(self.case_weights[index])
            built.expected = self.reference_outputs(built)
            self.built[key] = built
        return self.built[key]

    def construct(self, case, variant):
        layers = self.keras.layers
        first, second = self.kinds(case)
        layer_class, cell_class = (getattr(self.modules[first], name) for name in CLASSES[first][::-1])
        gates = self.gates(first, case, variant)
        options = dict(case.options, units=UNITS)
        if case.wrapper is None:
            top = layer_class(**dict(options, **gates))
            parts = [Part(top, first, gates, "the layer")]
        elif case.wrapper == "cell":
            top = layers.RNN(cell_class(UNITS, **gates), **case.options)
            parts = [Part(top, first, gates, "the layer")]
        elif case.wrapper == "bidirectional":
            forward_gates = gates if "forward" in case.gated else {}
            backward_gates = gates if "backward" in case.gated else {}
            forward = layer_class(**dict(options, **forward_gates))
            backward = layer_class(go_backwards=True, **dict(options, **backward_gates)) if case.backward_layer else None
            top = layers.Bidirectional(forward, merge_mode=case.merge_mode, backward_layer=backward)
            parts = [Part(top.forward_layer, first, forward_gates, "forward"), Part(top.backward_layer, first, backward_gates, "backward")]
            if case.mask == "masking":
                top.build(self.x.shape)
                top = Chain(layers.Masking(0.0), top)
        else:  # the stack: the layer, Bidirectional(the other layer)
            other_gates = self.gates(second, case, variant)
            layer = layer_class(UNITS, return_sequences=True, **gates)
            wrapper = layers.Bidirectional(getattr(self.modules[second], CLASSES[second][1])(UNITS, **other_gates))
            layer.build(self.x.shape)
            wrapper.build(self.x.shape[:2] + (UNITS,))
            top = Chain(layer, wrapper)
            parts = [
                Part(layer, first, gates, CLASSES[first][1]),
                Part(wrapper.forward_layer, second, other_gates, "forward " + CLASSES[second][1]),
                Part(wrapper.backward_layer, second, other_gates, "backward " + CLASSES[second][1]),
            ]
        if not isinstance(top, Chain):
            top.build(self.x.shape)
        return Built(case, top, parts)

    def reference_outputs(self, built, stock=False):
        """What the reference computes for a built case (stock: without its per-gate activations)."""
        case, options = built.case, built.case.options
        if case.wrapper in (None, "cell"):
            result = self.reference_run(built.parts[0], self.x, self.mask if case.mask else None, stock)
            return reference.layer_outputs(result, options["return_sequences"], options["return_state"])
        if case.wrapper == "bidirectional":
            mask = self.mask if case.mask else None
            forward, backward = (self.reference_run(part, self.x, mask, stock) for part in built.parts)
            return reference.bidirectional(forward, backward, case.merge_mode, options["return_sequences"], options["return_state"])
        sequence = self.reference_run(built.parts[0], self.x, None, stock)[0]
        forward, backward = (self.reference_run(part, sequence, None, stock) for part in built.parts[1:])
        return reference.bidirectional(forward, backward, "concat", False, False)

    def reference_run(self, part, x, mask, stock=False):
        """lstm()/gru() of the reference with a layer's weights, the activations asked for, and the
        layer's go_backwards and zero_output_for_mask (Bidirectional sets them)."""
        layer, weights = part.layer, part.layer.get_weights()
        options = dict(self.defaults(part.kind), **({} if stock else part.gates))
        if part.kind == "gru":
            options["reset_after"] = layer.cell.reset_after
        function = reference.lstm if part.kind == "lstm" else reference.gru
        return function(
            x, weights[0], weights[1], weights[2] if len(weights) == 3 else None, hard_sigmoid=self.hard_sigmoid,
            mask=mask, go_backwards=layer.go_backwards, zero_output_for_mask=getattr(layer, "zero_output_for_mask", False),
            **options
        )

    def call(self, built):
        if built.case.mask == "explicit":
            return self.run(built.top, self.x, mask=self.to_tensor(self.mask))
        return self.run(built.top, self.x)

    def to_tensor(self, value):
        if self.keras3:
            return self.keras.ops.convert_to_tensor(value)
        import tensorflow as tf

        return tf.convert_to_tensor(value)

    def describe(self, gates):
        return ", ".join(f"{name}={value}" for name, value in sorted(gates.items())) or "no per-gate activation"

    def device(self):
        """The GPU Keras computes on by default here, or None (the CPU). With one, TF32 is turned
        off: it rounds float32 matrix products to 10 bits, far beyond TOLERANCE."""
        if not hasattr(self, "_device"):
            self._device = self.find_gpu()
        return self._device

    def find_gpu(self):
        if self.backend == "torch":
            import torch

            if not torch.cuda.is_available():
                return None
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            return "GPU " + torch.cuda.get_device_name(0)
        if self.backend == "jax":
            import jax

            gpus = [device for device in jax.devices() if device.platform == "gpu"]
            if not gpus:
                return None
            jax.config.update("jax_default_matmul_precision", "highest")
            return "GPU " + str(gpus[0])
        if self.backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return None
            tf.config.experimental.enable_tensor_float_32_execution(False)
            return "GPU " + gpus[0].name
        return None

    # -- checks ------------------------------------------------------------------
    def check_api(self):
        for cls in (self.cell_class, self.layer_class):
            params = inspect.signature(cls.__init__).parameters
            for name in self.names:
                if name not in params or params[name].default is not None:
                    return False, f"{cls.__name__}.__init__ lacks {name}=None", None
            missing_doc = [name for name in self.names if f"{name}:" not in (cls.__doc__ or "")]
            if missing_doc:
                return False, "{} docstring does not describe {}".format(cls.__name__, ", ".join(missing_doc)), None
            ours = [name for name in params if name != "kwargs"]
            if ours[-len(self.names) :] != list(self.names):
                return False, "{}.__init__ does not end with {}".format(cls.__name__, ", ".join(self.names)), None
        return True, "{} and {} take {}, default None".format(
            self.cell_class.__name__, self.layer_class.__name__, ", ".join(self.names)
        ), None

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
                        return False, f"{given} gives the stock output: the activation is ignored", None
        wrong, runs = [], 0
        for index, case in enumerate(CASES):
            different = self.case(index, "different")
            if self.error(different.expected, self.reference_outputs(different, stock=True)) < 1e-3:
                # a case that could not tell the per-gate activations from stock
                return False, f"{self.label(case)}: the reference gives the stock output", None
            for variant in case.variants:
                if variant == "plain":  # stock Keras: the fused check looks at its path
                    continue
                built = self.case(index, variant)
                try:
                    got = self.watched(index, variant)[1] if variant == "different" else self.call(built)
                except Exception:
                    if self.stock_fails(index):
                        break
                    raise
                error = self.error(got, built.expected)
                worst, runs = max(worst, error), runs + 1
                if not error < TOLERANCE:
                    wrong.append(f"{self.label(case)} with {self.given(index, variant)} ({error:.1e})")
        what = "reset_after True/False, " if self.layer_set == "gru" else ""
        detail = (
            "{} {} layers ({}distinct gates; only {}) and {} built around them in {} cases (Bidirectional in every "
            "merge mode, backward_layer=, one direction only, RNN({}), stacked, masked, go_backwards, return_state; "
            "per-gate activations differing from what they inherit, in {} also equal to it) vs NumPy reference, on {}: "
        ).format(
            cases, self.layer_class.__name__, what, self.describe(ONE[self.layer_set]), runs, len(CASES),
            self.cell_class.__name__, sum(case.stock_path for case in CASES), device or "the CPU",
        )
        if wrong:
            return False, detail + "off by more than {:.0e}: {}".format(TOLERANCE, "; ".join(wrong)), worst
        return worst < TOLERANCE, detail + f"max abs error {worst:.2e}{self.skipped()}", worst

    def stock_fails(self, index):
        """Whether the case fails without per-gate activations too (outside any FusedWatch): a
        case this Keras cannot run (Keras 3.0's Bidirectional with return_state) is skipped."""
        if index not in self.stock_failures:
            try:
                self.call(self.case(index, "plain"))
                self.stock_failures[index] = None
            except Exception as error:
                self.stock_failures[index] = _describe(error)
        return self.stock_failures[index] is not None

    def skipped(self):
        failing = [(index, error) for index, error in sorted(self.stock_failures.items()) if error]
        if not failing:
            return ""
        return "; skipped, as this Keras fails them without per-gate activations too: " + "; ".join(
            f"{self.label(CASES[index])} ({error[:120]})" for index, error in failing
        )

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
        return passed, f"unset activations follow activation/recurrent_activation, max abs error {worst:.2e}", worst

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
        """With a GPU made to look present and the fused functions replaced by recorders, every case:
        a layer with per-gate activations differing from what they inherit never enters a fused
        function (Bidirectional's covers both its layers) and the case matches the reference;
        without any, or with ones equal to what they inherit, the case enters what stock enters
        (RNN(cell) none)."""
        reached, slower, worst, entries, raised = [], [], 0.0, {}, {}
        self.device()  # on a real GPU: TF32 off
        for index, case in enumerate(CASES):
            for variant in case.variants:
                try:
                    entries[index, variant], got = self.watched(index, variant)
                except Exception as error:
                    raised[index] = error
                    break
                if not entries[index, variant]:  # else tf_keras's stand-in computed part of it
                    worst = max(worst, self.error(got, self.case(index, variant).expected))
        looped, loop_cases, off_loop = 0, 0, []
        for index, case in enumerate(CASES):
            if index in raised:
                if self.stock_fails(index):
                    continue
                raise raised[index]
            label, different = self.label(case), self.case(index, "different").parts
            wrong = [(name, owners) for name, owners in entries[index, "different"] if any(different[i].gates for i in owners)]
            if wrong:
                reached.append("{} with {}: {}".format(label, self.given(index, "different"), self.say_entered(wrong, different)))
            ran = {i for _, owners, did in self.loops[index, "different"] if did for i in owners}
            expected = {i for i, part in enumerate(different) if self.loop_runs(case, part)}
            if ran != expected:
                off_loop.append("{} with {}: the per-gate loop computed {} where it should compute {}".format(
                    label, self.given(index, "different"), self.say_parts(ran, different), self.say_parts(expected, different)
                ))
            looped, loop_cases = looped + len(ran), loop_cases + bool(ran)
            if not case.stock_path:
                continue
            plain, same = entries[index, "plain"], entries[index, "same"]
            if not plain:
                slower.append(f"{label} without per-gate activations entered no fused function")
            elif same != plain:
                parts = self.case(index, "same").parts
                slower.append("{} with {} (as inherited): {}; stock: {}".format(
                    label, self.given(index, "same"), self.say_entered(same, parts), self.say_entered(plain, parts)
                ))
        watch = FusedWatch(self)
        where = "GPU made to look present ({}), fused functions recorded ({})".format(
            ", ".join(watch.faked) or "nothing consulted", ", ".join(watch.spied)
        )
        if reached or slower or off_loop:
            found = ["per-gate activations reach a fused function: " + "; ".join(reached)] if reached else []
            found += ["off the stock path: " + "; ".join(slower)] if slower else []
            found += ["off the per-gate loop: " + "; ".join(off_loop)] if off_loop else []
            return False, "{}: {}".format(where, " | ".join(found)), None
        if worst >= TOLERANCE:
            return False, f"{where}: off the fused path, max abs error {worst:.2e}", worst
        refused = ""
        if "use_cudnn" in inspect.signature(self.layer_class.__init__).parameters:  # Keras 3.1+
            given = ONE[self.layer_set]
            try:
                self.run(self.build(use_cudnn=True, **given)[0], self.x)
                return False, f"use_cudnn=True with {given} did not raise", None
            except ValueError as error:
                if "use_cudnn=True" not in str(error):
                    raise
            refused = "; use_cudnn=True with one set raises as stock does"
        first = next(
            index for index, case in enumerate(CASES)
            if case.wrapper == "bidirectional" and case.stock_path and not self.stock_failures.get(index)
        )
        return True, (
            "{}: in {} cases layers with per-gate activations differing from what they inherit never enter "
            "them, max abs error {:.2e}{}; in {} of them, without any or with ones equal to what they inherit, "
            "the layers enter them as stock does (Bidirectional({}): {}){}{}"
        ).format(
            where, len(CASES), worst, self.say_loop(looped, loop_cases), sum(case.stock_path for case in CASES),
            self.layer_class.__name__, self.say_entered(entries[first, "plain"], self.case(first, "plain").parts),
            refused, self.skipped(),
        ), worst

    def has_loop(self, kind):
        """Does this Keras's patched layer of ``kind`` have the per-gate loop (Keras 3)?"""
        return PER_GATE_LOOP.format(kind) in vars(getattr(self.modules[kind], CLASSES[kind][1]))

    def loop_runs(self, case, part):
        """Must this part of a case, with per-gate activations, run the per-gate loop? Under
        PyTorch, where stock runs backend.lstm/gru: a layer (not RNN(cell)) without a mask (GRU:
        reset_after=True, as PyTorch's own loop)."""
        return bool(
            part.gates
            and self.backend == "torch"
            and self.has_loop(part.kind)
            and case.wrapper != "cell"
            and not case.mask
            and getattr(part.layer.cell, "reset_after", True)
        )

    def say_loop(self, looped, cases):
        if not any(self.has_loop(kind) for kind in self.modules):
            return ""
        if self.backend != "torch":
            return f"; their per-gate loop (PyTorch only) declines under {self.backend}: the cell loop computes them"
        return (
            f"; the per-gate loop (PyTorch's plain loop with the cell's functions) computed {looped} of them in {cases} cases, "
            "every one without a mask outside RNN(cell)"
        )

    @staticmethod
    def say_parts(indices, parts):
        return " and ".join(parts[i].role for i in sorted(indices)) or "none"

    def watched(self, index, variant):
        """The case run once with a GPU made to look present and the fused functions recorded:
        (the fused functions it entered, each with the parts whose kernels it got; its outputs).
        What the run raised is raised again."""
        key = (index, variant)
        if key not in self.watches:
            built = self.case(index, variant)  # built first: building is no call, and must not count as one
            with FusedWatch(self) as watch:
                try:
                    entered, got, error = watch.run(lambda: self.call(built)) + (None,)
                except Exception as raised:
                    entered, got, error = list(watch.entered), None, raised
            self.watches[key] = ([(name, self.owners(built, kernels)) for name, kernels in entered], got, error)
            self.loops[key] = [(name, self.owners(built, kernels), ran) for name, kernels, ran in watch.looped]
        entries, got, error = self.watches[key]
        if error is not None:
            raise error
        return entries, got

    def owners(self, built, kernels):
        """The parts whose kernel a fused function was given (all of them when it cannot tell)."""
        found = [
            index for index, part in enumerate(built.parts)
            if any(kernel is not None and np.array_equal(kernel, part.layer.get_weights()[0]) for kernel in kernels)
        ]
        return tuple(found or range(len(built.parts)))

    @staticmethod
    def say_entered(entries, parts):
        if not entries:
            return "entered nothing"
        return ", ".join("{} entered {}".format(" and ".join(parts[i].role for i in owners), name) for name, owners in entries)

    def given(self, index, variant):
        """The per-gate activations of a built case, as the details name them."""
        parts = self.case(index, variant).parts
        return self.describe(parts[0].gates or parts[-1].gates)

    def keras3_watch(self, watch):
        """Keras 3: the recorders go where the layers look them up at call time."""
        backend = getattr(self.module, "backend", None)
        if not inspect.ismodule(backend):
            backend = importlib.import_module(self.keras.__name__ + ".src.backend")
        owners = [(backend, "backend.")]
        if inspect.ismodule(getattr(backend, "rnn", None)):  # keras-nightly 3.16: backend.rnn.lstm(...)
            owners.append((backend.rnn, "backend.rnn."))
        replacements = []
        for owner, prefix in owners:
            for name in KERAS3_FUSED:
                if hasattr(owner, name):
                    kernels = ("fwd_kernel", "bwd_kernel") if name.startswith("bidirectional") else ("kernel",)
                    replacements.append((owner, name, watch.recorder(prefix + name, _refuse, kernels)))
        for kind, module in sorted(self.modules.items()):
            layer_class = getattr(module, CLASSES[kind][1])
            name = PER_GATE_LOOP.format(kind)
            if name in vars(layer_class):
                label = f"{layer_class.__name__}.{name}"
                replacements.append((layer_class, name, watch.loop_recorder(label, vars(layer_class)[name])))
        try:
            backend_rnn = importlib.import_module(f"{backend.__name__}.{self.backend}.rnn")
        except ImportError:
            backend_rnn = None
        for name in GPU_TESTS:
            if backend_rnn is not None and hasattr(backend_rnn, name):
                replacements.append((backend_rnn, name, _gpu_present))
                watch.faked.append(f"{backend_rnn.__name__}.{name}")
        return replacements

    def tf_watch(self, watch):
        """tf_keras and Keras 2: a logical GPU device, and the fused functions of lstm.py and gru.py."""
        import tensorflow as tf

        real_list = tf.config.list_logical_devices

        def devices(device_type=None):
            if device_type == "GPU":
                return [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
            return real_list(device_type)

        # The layers' own `tf` (tensorflow.compat.v2) has a config module of its own: each is patched.
        configs = [tf.config] + [module.tf.config for module in self.modules.values() if inspect.ismodule(getattr(module, "tf", None))]
        replacements = []
        for config in configs:
            if not any(config is owner for owner, _, _ in replacements):
                replacements.append((config, "list_logical_devices", devices))
                watch.faked.append(f"{config.__name__}.list_logical_devices")
        for kind, module in sorted(self.modules.items()):
            gpu, standard = FUSED[kind][:2]
            for name in FUSED[kind]:
                if hasattr(module, name):
                    then = _stand_in(getattr(module, standard)) if name == gpu else getattr(module, name)
                    replacements.append((module, name, watch.recorder(name, then)))
        return replacements

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


def _pairs(values):
    pairs = {}
    for value in values or []:
        name, _, rest = value.partition("=")
        pairs[name] = rest
    return pairs


def main(argv=None):
    _load_file("_convlstm_patch_orphan", os.path.join(HERE, "orphan.py")).exit_with_parent()
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
        print(f"importing {args.package}", file=sys.stderr, flush=True)
        keras = importlib.import_module(args.package)
        peers = dict((name, importlib.import_module(module)) for name, module in modules.items())
        probes = [RnnProbe(keras, name, module, pristine.get(name), peers) for name, module in modules.items()]
        result["version"] = getattr(keras, "__version__", "?")
        result["backend"] = probes[0].backend if probes else None
    except Exception as error:  # reported as a failed check, never a traceback
        result["checks"].append({"name": "import", "passed": False, "detail": _describe(error), "value": None})
        convlstm_runner.answer.emit(result)
        return 0
    for probe in probes:
        for name in args.checks.split(","):
            convlstm_runner.run_check(probe, name, f"{probe.layer_set} {name}", result)
    convlstm_runner.answer.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
