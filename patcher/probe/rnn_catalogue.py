"""The LSTM/GRU probe's case catalogue: the per-gate activations each layer set gains and the ways
users build the layers (alone, RNN(cell), Bidirectional, stacked, masked), with the shapes a case
takes once built. rnn_cases.py builds and runs them; fused_watch.py watches where they go.

Runs in the user's interpreter: valid Python 3.6 (tests/test_probe_compat.py).
"""

from .common import DISTINCT as FIVE_DISTINCT
from .common import FIVE

NEW = {
    "lstm": FIVE,
    "gru": ("recurrent_activation_z", "recurrent_activation_r"),
}
CLASSES = {"lstm": ("LSTMCell", "LSTM"), "gru": ("GRUCell", "GRU")}
# Distinct activations for every new gate: LSTM's five as ConvLSTM's (common.py). GRU keeps
# its update gate bounded: an unbounded z makes h grow without limit and float32 drift from
# the reference (hard_sigmoid differs between Keras 2 and 3; the reference knows both).
DISTINCT = {
    "lstm": FIVE_DISTINCT,
    "gru": {"recurrent_activation_z": "hard_sigmoid", "recurrent_activation_r": "softsign"},
}
# One activation set, the others at the stock defaults (tanh / sigmoid): the
# case stock Keras would run on its fused kernel.
ONE = {"lstm": {"recurrent_activation_f": "relu"}, "gru": {"recurrent_activation_r": "relu"}}
# Per-gate activations that differ from what they inherit, taken in turn by the
# cases below so that every gate is exercised somewhere.
DIFFERENT = {
    "lstm": (
        {"recurrent_activation_f": "relu"},
        {"activation_o": "linear"},
        {"activation_i": "relu", "recurrent_activation_i": "softsign"},
        {"recurrent_activation_o": "hard_sigmoid"},
    ),
    "gru": (
        {"recurrent_activation_z": "hard_sigmoid"},
        {"recurrent_activation_r": "relu"},
        {"recurrent_activation_z": "softsign", "recurrent_activation_r": "linear"},
    ),
}
# Per-gate activations equal to what they inherit (the layer's default
# recurrent_activation / activation): they compute what stock computes, so the
# layer must stay on the stock (fused) path.
SAME_AS = {
    "lstm": {"recurrent_activation_f": "recurrent_activation", "activation_o": "activation"},
    "gru": {"recurrent_activation_z": "recurrent_activation"},
}
VARIANTS = ("plain", "same", "different")  # no per-gate activation; equal to inherited; differing
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

    def __init__(
        self,
        name,
        wrapper=None,
        different=0,
        merge_mode="concat",
        gated=("forward", "backward"),
        backward_layer=False,
        mask=False,
        stock_path=False,
        **options,
    ):
        self.name = name
        self.wrapper = wrapper
        self.different = different
        self.merge_mode = merge_mode
        self.gated = gated
        self.backward_layer = backward_layer
        self.mask = mask
        self.stock_path = stock_path
        self.variants = VARIANTS if stock_path else ("different",)
        self.options = {"return_sequences": True, "return_state": True}
        self.options.update(options)


BIDIRECTIONAL = "Bidirectional({layer}"
# Few cases, each covering several things users do: the probe runs inside every
# `apply --layers`. Masks pad the last steps (cuDNN takes them). Keras 3.0's
# Bidirectional fails with return_state, so two Bidirectional cases on the stock
# path go without it.
CASES = (
    Case("{layer}", stock_path=True),
    Case(
        "{layer}(go_backwards=True) with a mask",
        different=1,
        go_backwards=True,
        mask="explicit",
        return_sequences=False,
    ),
    Case("RNN({cell})", "cell", different=2, return_sequences=False),
    Case(BIDIRECTIONAL + ")", "bidirectional", stock_path=True),
    Case(BIDIRECTIONAL + ", merge_mode='sum')", "bidirectional", 1, "sum", return_sequences=False, return_state=False),
    Case(
        "Masking, " + BIDIRECTIONAL + ", merge_mode='ave')",
        "bidirectional",
        2,
        "ave",
        mask="masking",
        return_state=False,
    ),
    Case(BIDIRECTIONAL + ", merge_mode='mul')", "bidirectional", 3, "mul", return_sequences=False),
    Case(BIDIRECTIONAL + ", merge_mode=None, backward_layer=...)", "bidirectional", 1, None, backward_layer=True),
    # Per-gate activations on one side only: the other must stay on the stock path.
    *(
        Case(
            BIDIRECTIONAL + "), {} layer only".format(side),
            "bidirectional",
            different,
            gated=(side,),
            backward_layer=True,
            return_sequences=return_sequences,
            return_state=False,
            stock_path=True,
        )
        for side, different, return_sequences in (("backward", 0, True), ("forward", 1, False))
    ),
    Case("{layer}, Bidirectional({other})", "stack"),
)


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
