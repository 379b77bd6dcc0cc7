"""Check the NumPy LSTM/GRU reference (patcher/probe/rnn_reference.py) against stock Keras 3.

Stock layers take one `activation` and one `recurrent_activation`; the
reference with the per-gate ones left as None must compute the same. The
per-gate wiring is checked against a single step written out by hand. What the
probe builds around the layers (go_backwards, masks, return_state,
Bidirectional with each merge mode) is checked against stock Keras too.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest

from patcher.probe import rnn_reference

TOLERANCE = 1e-4


def stock_and_reference(layer_class, function, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 6, 4)).astype("float32")
    layer = layer_class(3, return_sequences=True, return_state=True, **kwargs)
    layer.build(x.shape)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()])
    got = [np.asarray(t) for t in layer(x)]
    weights = layer.get_weights()
    bias = weights[2] if len(weights) == 3 else None
    kwargs.pop("use_bias", None)
    return got, function(x, weights[0], weights[1], bias, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"activation": "relu", "recurrent_activation": "hard_sigmoid"}, id="relu-hard-sigmoid"),
        pytest.param({"use_bias": False}, id="no-bias"),
    ],
)
def test_lstm_matches_stock(kwargs):
    got, expected = stock_and_reference(keras.layers.LSTM, rnn_reference.lstm, **kwargs)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert np.max(np.abs(g - e)) < TOLERANCE


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"activation": "softsign", "recurrent_activation": "relu"}, id="softsign-relu"),
    ],
)
def test_gru_matches_stock(reset_after, kwargs):
    got, expected = stock_and_reference(keras.layers.GRU, rnn_reference.gru, reset_after=reset_after, **kwargs)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert np.max(np.abs(g - e)) < TOLERANCE


def test_lstm_per_gate_activations_by_hand():
    """One step, one unit, weights chosen so each gate's pre-activation is known."""
    x = np.array([[[1.0]]])
    kernel = np.array([[0.5, -1.0, 2.0, -0.25]])  # i, f, c, o
    recurrent = np.zeros((1, 4))
    options = {
        "activation_i": "relu",
        "activation_o": "linear",
        "recurrent_activation_f": "relu",
        "recurrent_activation_i": "linear",
        "recurrent_activation_o": "softsign",
    }
    _, h, c = rnn_reference.lstm(x, kernel, recurrent, **options)
    i, f, candidate, o = 0.5, 0.0, 2.0, -0.25 / 1.25  # linear, relu, relu, softsign
    assert np.allclose(c, f * 0.0 + i * candidate)
    assert np.allclose(h, o * (i * candidate))


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_per_gate_activations_by_hand(reset_after):
    x = np.array([[[1.0]]])
    kernel = np.array([[-0.5, 2.0, 1.0]])  # z, r, h
    recurrent = np.zeros((1, 3))
    _, h = rnn_reference.gru(
        x,
        kernel,
        recurrent,
        activation="linear",
        recurrent_activation_z="relu",
        recurrent_activation_r="linear",
        reset_after=reset_after,
    )
    z, hh = 0.0, 1.0  # relu(-0.5); the candidate does not see r when h_tm1 is 0
    assert np.allclose(h, z * 0.0 + (1 - z) * hh)


# -- around the equations: go_backwards, masks, Bidirectional ------------------------

# Sample 1 has a hole and padding; sample 0 none. Masked steps must carry state and output.
MASK = np.array([[True] * 6, [True, True, False, True, False, False]])
LAYERS = {"lstm": (keras.layers.LSTM, rnn_reference.lstm), "gru": (keras.layers.GRU, rnn_reference.gru)}


def random_layer(layer, x, seed):
    rng = np.random.default_rng(seed)
    layer.build(x.shape)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()])
    return layer


def reference_of(function, layer, x, **kwargs):
    """The reference run with a layer's weights and options."""
    weights = layer.get_weights()
    bias = weights[2] if len(weights) == 3 else None
    if function is rnn_reference.gru:
        kwargs["reset_after"] = layer.cell.reset_after
    return function(
        x,
        weights[0],
        weights[1],
        bias,
        go_backwards=layer.go_backwards,
        zero_output_for_mask=layer.zero_output_for_mask,
        activation="relu" if layer.cell.activation is keras.activations.relu else "tanh",
        **kwargs,
    )


def assert_close(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.shape(g) == np.shape(e)
        assert np.max(np.abs(np.asarray(g) - e)) < TOLERANCE


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "go_backwards"])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("zero_output_for_mask", [False, True], ids=["carry", "zero"])
def test_layer_paths_match_stock(kind, go_backwards, masked, zero_output_for_mask):
    layer_class, function = LAYERS[kind]
    x = np.random.default_rng(1).normal(size=(2, 6, 4)).astype("float32")
    layer = random_layer(
        layer_class(
            3,
            return_sequences=True,
            return_state=True,
            go_backwards=go_backwards,
            zero_output_for_mask=zero_output_for_mask,
            activation="relu",
        ),
        x,
        seed=2,
    )
    mask = MASK if masked else None
    got = [np.asarray(t) for t in layer(x, mask=mask)]
    result = reference_of(function, layer, x, mask=mask)
    assert_close(got, rnn_reference.layer_outputs(result, return_sequences=True, return_state=True))
    last_only = layer_class.from_config(dict(layer.get_config(), return_sequences=False))
    last_only.build(x.shape)
    last_only.set_weights(layer.get_weights())
    last = [np.asarray(t) for t in last_only(x, mask=mask)]
    assert_close(last[:1], rnn_reference.layer_outputs(result, return_sequences=False, return_state=False))


def test_mask_carries_state_and_output():
    """Independently of Keras: a masked step changes nothing, so dropping it gives the same state."""
    rng = np.random.RandomState(4)
    x = rng.normal(size=(1, 4, 2))
    kernel, recurrent, bias = rng.normal(size=(2, 12)), rng.normal(size=(3, 12)), rng.normal(size=12)
    outputs, h, c = rnn_reference.lstm(x, kernel, recurrent, bias, mask=np.array([[True, False, True, True]]))
    kept, kept_h, kept_c = rnn_reference.lstm(x[:, [0, 2, 3]], kernel, recurrent, bias)
    assert np.allclose(h, kept_h) and np.allclose(c, kept_c)
    assert np.allclose(outputs[:, 1], outputs[:, 0]) and np.allclose(outputs[:, [0, 2, 3]], kept)
    zeroed, _, _ = rnn_reference.lstm(
        x, kernel, recurrent, bias, mask=np.array([[True, False, True, True]]), zero_output_for_mask=True
    )
    assert np.all(zeroed[:, 1] == 0) and np.allclose(zeroed[:, [0, 2, 3]], kept)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None], ids=lambda mode: str(mode))
@pytest.mark.parametrize(
    "return_sequences, return_state, masked",
    [(True, True, False), (False, True, False), (True, False, True), (False, False, True)],
    ids=["sequences-state", "last-state", "sequences-masked", "last-masked"],
)
def test_bidirectional_matches_stock(kind, merge_mode, return_sequences, return_state, masked):
    layer_class, function = LAYERS[kind]
    x = np.random.default_rng(5).normal(size=(2, 6, 4)).astype("float32")
    wrapper = keras.layers.Bidirectional(
        layer_class(3, return_sequences=return_sequences, return_state=return_state), merge_mode=merge_mode
    )
    random_layer(wrapper, x, seed=6)
    mask = MASK if masked else None
    got = wrapper(x, mask=mask)
    got = [np.asarray(t) for t in (got if isinstance(got, (list, tuple)) else [got])]
    forward = reference_of(function, wrapper.forward_layer, x, mask=mask)
    backward = reference_of(function, wrapper.backward_layer, x, mask=mask)
    assert_close(got, rnn_reference.bidirectional(forward, backward, merge_mode, return_sequences, return_state))
