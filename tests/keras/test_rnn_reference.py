"""Check the NumPy LSTM/GRU reference (patcher/probe/rnn_reference.py) against stock Keras 3.

Stock layers take one `activation` and one `recurrent_activation`; the
reference with the per-gate ones left as None must compute the same. The
per-gate wiring is checked against a single step written out by hand.
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
        pytest.param(dict(activation="relu", recurrent_activation="hard_sigmoid"), id="relu-hard-sigmoid"),
        pytest.param(dict(use_bias=False), id="no-bias"),
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
    [pytest.param({}, id="defaults"), pytest.param(dict(activation="softsign", recurrent_activation="relu"), id="softsign-relu")],
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
    options = dict(
        activation_i="relu", activation_o="linear", recurrent_activation_f="relu", recurrent_activation_i="linear",
        recurrent_activation_o="softsign",
    )
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
        x, kernel, recurrent, activation="linear", recurrent_activation_z="relu", recurrent_activation_r="linear",
        reset_after=reset_after,
    )
    z, hh = 0.0, 1.0  # relu(-0.5); the candidate does not see r when h_tm1 is 0
    assert np.allclose(h, z * 0.0 + (1 - z) * hh)
