"""Watching fused entry points: the LSTM/GRU probe's "fused" check.

Fused kernels (cuDNN; tf_keras's standard_lstm) hard-code sigmoid and tanh, so
a layer with per-gate activations must never reach one, on any device. The
probe checks that on a CPU by making a GPU look present and replacing every
fused function the layers can reach by a recorder (FusedWatch), then running
each case of the catalogue (rnn_cases.py) under it (FusedPaths).

Runs in the user's interpreter: valid Python 3.6 (tests/test_probe_compat.py).
"""

import importlib
import inspect

import numpy as np

from .common import TOLERANCE
from .rnn_catalogue import CASES, CLASSES, ONE

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

    def __init__(self, paths):
        probe = paths.probe
        self.entered = []
        self.looped = []  # (loop, kernels, whether it ran rather than declined)
        self.replaced = []  # (owner, name, original)
        self.faked = []  # what now says a GPU is present
        self.spied = []  # the recorders' names, as the details show them
        self.to_numpy = probe.to_numpy
        self.replacements = paths.keras3_replacements(self) if probe.keras3 else paths.tf_replacements(self)

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
        except Exception:  # noqa: BLE001 - whatever a backend raises for a tensor without values
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


class FusedPaths:
    """Where a probe's cases go with a GPU made to look present: each case and variant run once
    under a FusedWatch (numerics reuses the outputs), and the fused check made of what they
    entered."""

    def __init__(self, probe):
        self.probe = probe
        self.watches = {}  # (case index, variant) -> what watched() saw
        self.loops = {}  # (case index, variant) -> the per-gate loops called: (name, owners, ran)

    def check(self):
        """With a GPU made to look present and the fused functions replaced by recorders, every case:
        a layer with per-gate activations differing from what they inherit never enters a fused
        function (Bidirectional's covers both its layers) and the case matches the reference;
        without any, or with ones equal to what they inherit, the case enters what stock enters
        (RNN(cell) none)."""
        probe = self.probe
        reached, slower, worst, entries, raised = [], [], 0.0, {}, {}
        probe.device()  # on a real GPU: TF32 off
        for index, case in enumerate(CASES):
            for variant in case.variants:
                try:
                    entries[index, variant], got = self.watched(index, variant)
                except Exception as error:  # noqa: BLE001 - raised again below unless stock fails too
                    raised[index] = error
                    break
                if not entries[index, variant]:  # else tf_keras's stand-in computed part of it
                    worst = max(worst, probe.error(got, probe.cases.case(index, variant).expected))
        looped, loop_cases, off_loop = 0, 0, []
        for index, case in enumerate(CASES):
            if index in raised:
                if probe.cases.stock_fails(index):
                    continue
                raise raised[index]
            label, different = probe.cases.label(case), probe.cases.case(index, "different").parts
            wrong = [
                (name, owners)
                for name, owners in entries[index, "different"]
                if any(different[i].gates for i in owners)
            ]
            if wrong:
                reached.append(self.said(index, "different", self.say_entered(wrong, different)))
            ran = {i for _, owners, did in self.loops[index, "different"] if did for i in owners}
            expected = {i for i, part in enumerate(different) if self.loop_runs(case, part)}
            if ran != expected:
                computed = "the per-gate loop computed {} where it should compute {}".format(
                    self.say_parts(ran, different), self.say_parts(expected, different)
                )
                off_loop.append(self.said(index, "different", computed))
            looped, loop_cases = looped + len(ran), loop_cases + bool(ran)
            if not case.stock_path:
                continue
            plain, same = entries[index, "plain"], entries[index, "same"]
            if not plain:
                slower.append("{} without per-gate activations entered no fused function".format(label))
            elif same != plain:
                parts = probe.cases.case(index, "same").parts
                entered = "{}; stock: {}".format(self.say_entered(same, parts), self.say_entered(plain, parts))
                slower.append(self.said(index, "same", entered, " (as inherited)"))
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
            return False, "{}: off the fused path, max abs error {:.2e}".format(where, worst), worst
        refused = ""
        if "use_cudnn" in inspect.signature(probe.layer_class.__init__).parameters:  # Keras 3.1+
            given = ONE[probe.layer_set]
            try:
                probe.run(probe.build(use_cudnn=True, **given)[0], probe.cases.x)
                return False, "use_cudnn=True with {} did not raise".format(given), None
            except ValueError as error:
                if "use_cudnn=True" not in str(error):
                    raise
            refused = "; use_cudnn=True with one set raises as stock does"
        first = next(
            index
            for index, case in enumerate(CASES)
            if case.wrapper == "bidirectional" and case.stock_path and not probe.cases.stock_failures.get(index)
        )
        return (
            True,
            (
                "{}: in {} cases layers with per-gate activations differing from what they inherit never enter "
                "them, max abs error {:.2e}{}; in {} of them, without any or with ones equal to what they inherit, "
                "the layers enter them as stock does (Bidirectional({}): {}){}{}"
            ).format(
                where,
                len(CASES),
                worst,
                self.say_loop(looped, loop_cases),
                sum(case.stock_path for case in CASES),
                probe.layer_class.__name__,
                self.say_entered(entries[first, "plain"], probe.cases.case(first, "plain").parts),
                refused,
                probe.cases.skipped(),
            ),
            worst,
        )

    def has_loop(self, kind):
        """Does this Keras's patched layer of ``kind`` have the per-gate loop (Keras 3)?"""
        probe = self.probe
        return PER_GATE_LOOP.format(kind) in vars(getattr(probe.modules[kind], CLASSES[kind][1]))

    def loop_runs(self, case, part):
        """Must this part of a case, with per-gate activations, run the per-gate loop? Under
        PyTorch, where stock runs backend.lstm/gru: a layer (not RNN(cell)) without a mask (GRU:
        reset_after=True, as PyTorch's own loop)."""
        probe = self.probe
        return bool(
            part.gates
            and probe.backend == "torch"
            and self.has_loop(part.kind)
            and case.wrapper != "cell"
            and not case.mask
            and getattr(part.layer.cell, "reset_after", True)
        )

    def say_loop(self, looped, cases):
        probe = self.probe
        if not any(self.has_loop(kind) for kind in probe.modules):
            return ""
        if probe.backend != "torch":
            return "; their per-gate loop (PyTorch only) declines under {}: the cell loop computes them".format(
                probe.backend
            )
        return (
            "; the per-gate loop (PyTorch's plain loop with the cell's functions) computed {} of them in {} cases, "
            "every one without a mask outside RNN(cell)"
        ).format(looped, cases)

    @staticmethod
    def say_parts(indices, parts):
        return " and ".join(parts[i].role for i in sorted(indices)) or "none"

    def watched(self, index, variant):
        """The case run once with a GPU made to look present and the fused functions recorded:
        (the fused functions it entered, each with the parts whose kernels it got; its outputs).
        What the run raised is raised again."""
        probe = self.probe
        key = (index, variant)
        if key not in self.watches:
            built = probe.cases.case(index, variant)  # built first: building is no call, and must not count as one
            with FusedWatch(self) as watch:
                try:
                    entered, got, error = watch.run(lambda: probe.cases.call(built)) + (None,)
                except Exception as raised:  # noqa: BLE001 - kept, and raised again below, outside the watch
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
            index
            for index, part in enumerate(built.parts)
            if any(kernel is not None and np.array_equal(kernel, part.layer.get_weights()[0]) for kernel in kernels)
        ]
        return tuple(found or range(len(built.parts)))

    def said(self, index, variant, what, how=""):
        """'<case> with <the variant's activations><how>: <what>', a finding's words."""
        cases = self.probe.cases
        return "{} with {}{}: {}".format(cases.label(CASES[index]), cases.given(index, variant), how, what)

    @staticmethod
    def say_entered(entries, parts):
        if not entries:
            return "entered nothing"
        return ", ".join(
            "{} entered {}".format(" and ".join(parts[i].role for i in owners), name) for name, owners in entries
        )

    def keras3_replacements(self, watch):
        """Keras 3: the recorders go where the layers look them up at call time."""
        probe = self.probe
        backend = getattr(probe.module, "backend", None)
        if not inspect.ismodule(backend):
            backend = importlib.import_module(probe.keras.__name__ + ".src.backend")
        owners = [(backend, "backend.")]
        if inspect.ismodule(getattr(backend, "rnn", None)):  # keras-nightly 3.16: backend.rnn.lstm(...)
            owners.append((backend.rnn, "backend.rnn."))
        replacements = []
        for owner, prefix in owners:
            for name in KERAS3_FUSED:
                if hasattr(owner, name):
                    kernels = ("fwd_kernel", "bwd_kernel") if name.startswith("bidirectional") else ("kernel",)
                    replacements.append((owner, name, watch.recorder(prefix + name, _refuse, kernels)))
        for kind, module in sorted(probe.modules.items()):
            layer_class = getattr(module, CLASSES[kind][1])
            name = PER_GATE_LOOP.format(kind)
            if name in vars(layer_class):
                label = "{}.{}".format(layer_class.__name__, name)
                replacements.append((layer_class, name, watch.loop_recorder(label, vars(layer_class)[name])))
        try:
            backend_rnn = importlib.import_module("{}.{}.rnn".format(backend.__name__, probe.backend))
        except ImportError:
            backend_rnn = None
        for name in GPU_TESTS:
            if backend_rnn is not None and hasattr(backend_rnn, name):
                replacements.append((backend_rnn, name, _gpu_present))
                watch.faked.append("{}.{}".format(backend_rnn.__name__, name))
        return replacements

    def tf_replacements(self, watch):
        """tf_keras and Keras 2: a logical GPU device, and the fused functions of lstm.py and gru.py."""
        probe = self.probe
        tf = importlib.import_module("tensorflow")
        real_list = tf.config.list_logical_devices

        def devices(device_type=None):
            if device_type == "GPU":
                return [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
            return real_list(device_type)

        # The layers' own `tf` (tensorflow.compat.v2) has a config module of its own: each is patched.
        configs = [tf.config] + [
            module.tf.config for module in probe.modules.values() if inspect.ismodule(getattr(module, "tf", None))
        ]
        replacements = []  # type: list
        for config in configs:
            if not any(config is owner for owner, _, _ in replacements):
                replacements.append((config, "list_logical_devices", devices))
                watch.faked.append("{}.list_logical_devices".format(config.__name__))
        for kind, module in sorted(probe.modules.items()):
            gpu, standard = FUSED[kind][:2]
            for name in FUSED[kind]:
                if hasattr(module, name):
                    then = _stand_in(getattr(module, standard)) if name == gpu else getattr(module, name)
                    replacements.append((module, name, watch.recorder(name, then)))
        return replacements
