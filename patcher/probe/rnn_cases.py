"""Running the LSTM/GRU probe's cases: each case of the catalogue (rnn_catalogue.py) built with a
variant's per-gate activations, its weights set, run, and the outputs the NumPy reference
(rnn_reference.py) computes for it.

Runs in the user's interpreter: valid Python 3.6 (tests/test_probe_compat.py).
"""

import importlib
import inspect

import numpy as np

from . import common
from . import rnn_reference as reference
from .rnn_catalogue import BATCH, CASES, CLASSES, DIFFERENT, FEATURES, SAME_AS, STEPS, UNITS, Built, Chain, Part


class Cases:
    """The cases of one probe (one layer set, its peers for the stacked case), built once each and
    shared by its checks (numerics, fused)."""

    def __init__(self, probe):
        self.keras = probe.keras
        self.keras3 = probe.keras3
        self.layer_set = probe.layer_set
        self.modules = probe.modules  # the patched modules of every set (the stacked case mixes them)
        self.hard_sigmoid = probe.hard_sigmoid
        self.run = probe.run
        self.built = {}  # (case index, variant) -> Built
        self.case_weights = {}
        self.stock_failures = {}  # case index -> what stock raises (None: it runs)
        self.case_rng = np.random.RandomState(2)  # apart from the probe's rng: its other checks draw as before
        x = np.random.RandomState(1).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
        x[1, STEPS - 2 :] = 0.0  # padded steps: what Masking(0.0) masks, and the explicit mask (unmasked elsewhere)
        self.x, self.mask = x, np.any(x != 0.0, axis=-1)

    def defaults(self, kind):
        """The layer's own activation and recurrent_activation defaults."""
        params = inspect.signature(getattr(self.modules[kind], CLASSES[kind][1]).__init__).parameters
        return {
            "activation": params["activation"].default,
            "recurrent_activation": params["recurrent_activation"].default,
        }

    def gates(self, kind, case, variant):
        if variant == "plain":
            return {}
        if variant == "same":
            inherited = self.defaults(kind)
            return {name: inherited[stock] for name, stock in SAME_AS[kind].items()}
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
            backward = (
                layer_class(go_backwards=True, **dict(options, **backward_gates)) if case.backward_layer else None
            )
            top = layers.Bidirectional(forward, merge_mode=case.merge_mode, backward_layer=backward)
            parts = [
                Part(top.forward_layer, first, forward_gates, "forward"),
                Part(top.backward_layer, first, backward_gates, "backward"),
            ]
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
            return reference.bidirectional(
                forward, backward, case.merge_mode, options["return_sequences"], options["return_state"]
            )
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
            x,
            weights[0],
            weights[1],
            weights[2] if len(weights) == 3 else None,
            hard_sigmoid=self.hard_sigmoid,
            mask=mask,
            go_backwards=layer.go_backwards,
            zero_output_for_mask=getattr(layer, "zero_output_for_mask", False),
            **options,
        )

    def call(self, built):
        if built.case.mask == "explicit":
            return self.run(built.top, self.x, mask=self.to_tensor(self.mask))
        return self.run(built.top, self.x)

    def to_tensor(self, value):
        if self.keras3:
            return self.keras.ops.convert_to_tensor(value)
        return importlib.import_module("tensorflow").convert_to_tensor(value)

    def describe(self, gates):
        return (
            ", ".join("{}={}".format(name, value) for name, value in sorted(gates.items())) or "no per-gate activation"
        )

    def stock_fails(self, index):
        """Whether the case fails without per-gate activations too (outside any FusedWatch): a
        case this Keras cannot run (Keras 3.0's Bidirectional with return_state) is skipped."""
        if index not in self.stock_failures:
            try:
                self.call(self.case(index, "plain"))
                self.stock_failures[index] = None
            except Exception as error:  # noqa: BLE001 - whatever stock raises, the case is skipped and says why
                self.stock_failures[index] = common.describe(error)
        return self.stock_failures[index] is not None

    def skipped(self):
        failing = [(index, error) for index, error in sorted(self.stock_failures.items()) if error]
        if not failing:
            return ""
        return "; skipped, as this Keras fails them without per-gate activations too: " + "; ".join(
            "{} ({})".format(self.label(CASES[index]), error[:120]) for index, error in failing
        )

    def given(self, index, variant):
        """The per-gate activations of a built case, as the details name them."""
        parts = self.case(index, variant).parts
        return self.describe(parts[0].gates or parts[-1].gates)
