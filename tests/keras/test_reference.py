"""Check the NumPy ConvLSTM reference against the stock Keras 3 layers."""

import math
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pytest

from patcher.probe import activations, reference

TOLERANCE = 1e-4
LAYERS = {1: keras.layers.ConvLSTM1D, 2: keras.layers.ConvLSTM2D, 3: keras.layers.ConvLSTM3D}


def _keras_and_reference(rank, seed=0, **layer_kwargs):
    """Run one stock Keras layer and the reference on the same random input."""
    rng = np.random.default_rng(seed)
    spatial = {1: (7,), 2: (6, 5), 3: (5, 4, 5)}[rank]
    x = rng.normal(size=(2, 3, *spatial, 2)).astype("float32")
    kwargs = {
        "filters": 3,
        "kernel_size": 2 if rank == 3 else 3,
        "return_sequences": True,
        "return_state": True,
        # Larger-than-default random weights (and a non-zero bias) so every
        # gate, the bias and the recurrent path visibly affect the outputs.
        "kernel_initializer": keras.initializers.RandomNormal(stddev=0.5, seed=seed),
        "recurrent_initializer": keras.initializers.RandomNormal(stddev=0.5, seed=seed + 1),
        "bias_initializer": keras.initializers.RandomNormal(stddev=0.5, seed=seed + 2),
    }
    kwargs.update(layer_kwargs)
    if not kwargs.get("use_bias", True):
        del kwargs["bias_initializer"]
    layer = LAYERS[rank](**kwargs)
    got = [np.asarray(t) for t in layer(x)]
    weights = layer.get_weights()
    bias = weights[2] if len(weights) == 3 else None
    reference_kwargs = {
        name: layer_kwargs[name]
        for name in (
            "strides",
            "padding",
            "dilation_rate",
            "activation",
            "recurrent_activation",
        )
        if name in layer_kwargs
    }
    expected = reference.conv_lstm(x, weights[0], weights[1], bias, **reference_kwargs)
    return got, expected


def _assert_close(got, expected):
    for name, g, e in zip(("outputs", "h", "c"), got, expected):
        assert g.shape == e.shape, name
        assert np.max(np.abs(g - e)) < TOLERANCE, name


def _layer_cases():
    activations = [("tanh", "sigmoid"), ("relu", "softsign")]
    for rank in (1, 2, 3):
        for padding in ("valid", "same"):
            for activation, recurrent in activations:
                yield pytest.param(
                    rank,
                    {"padding": padding, "activation": activation, "recurrent_activation": recurrent},
                    id=f"{rank}d-{padding}-{activation}-{recurrent}",
                )
        yield pytest.param(rank, {"padding": "same", "strides": 2}, id=f"{rank}d-same-stride2")
        yield pytest.param(rank, {"padding": "valid", "strides": 2}, id=f"{rank}d-valid-stride2")
        yield pytest.param(rank, {"padding": "same", "dilation_rate": 2}, id=f"{rank}d-same-dilation2")
        yield pytest.param(
            rank,
            {"padding": "valid", "dilation_rate": 2, "activation": "relu"},
            id=f"{rank}d-valid-dilation2-relu",
        )
        yield pytest.param(
            rank,
            {"padding": "same", "use_bias": False, "recurrent_activation": "softsign"},
            id=f"{rank}d-same-nobias",
        )


@pytest.mark.parametrize("rank, layer_kwargs", list(_layer_cases()))
def test_matches_stock_keras(rank, layer_kwargs):
    _assert_close(*_keras_and_reference(rank, **layer_kwargs))


def test_separate_activations_default_to_shared_ones():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 6, 2))
    kernel, recurrent = rng.normal(size=(3, 2, 12)), rng.normal(size=(3, 3, 12))
    bias = rng.normal(size=12)
    shared = reference.conv_lstm(x, kernel, recurrent, bias, activation="relu", recurrent_activation="softsign")
    explicit = reference.conv_lstm(
        x,
        kernel,
        recurrent,
        bias,
        activation_i="relu",
        activation_o="relu",
        recurrent_activation_i="softsign",
        recurrent_activation_f="softsign",
        recurrent_activation_o="softsign",
    )
    for s, e in zip(shared, explicit):
        np.testing.assert_array_equal(s, e)


def test_each_activation_drives_its_own_gate():
    # 1x1 kernel, one pixel, zero recurrent kernel: a scalar LSTM whose gate
    # pre-activations are the kernel weights themselves, computable by hand.
    z_i, z_f, z_c, z_o = 0.3, 0.4, 1.2, -0.5
    kernel = np.array([z_i, z_f, z_c, z_o]).reshape(1, 1, 4)
    sequence, h, c = reference.conv_lstm(
        np.ones((1, 2, 1, 1)),
        kernel,
        np.zeros((1, 1, 4)),
        None,
        activation_i="tanh",
        activation_o="softsign",
        recurrent_activation_i="sigmoid",
        recurrent_activation_f="softsign",
        recurrent_activation_o="hard_sigmoid",
    )
    candidate = math.tanh(z_c) / (1.0 + math.exp(-z_i))
    forget = z_f / (1.0 + abs(z_f))
    output_gate = z_o / 6.0 + 0.5
    c_by_step = [candidate, forget * candidate + candidate]
    h_by_step = [output_gate * v / (1.0 + v) for v in c_by_step]
    np.testing.assert_allclose(sequence[0, :, 0, 0], h_by_step)
    assert c[0, 0, 0] == pytest.approx(c_by_step[1])
    assert h[0, 0, 0] == pytest.approx(h_by_step[1])


def test_conv_nd_valid_1d():
    x = np.arange(5.0).reshape(1, 5, 1)
    w = np.array([1.0, 10.0, 100.0]).reshape(3, 1, 1)
    out = reference.conv_nd(x, w, 1, "valid", 1)
    np.testing.assert_array_equal(out[0, :, 0], [210.0, 321.0, 432.0])


def test_conv_nd_same_even_kernel_stride2():
    # in=5, stride 2 -> out=3; total pad = (3-1)*2 + 2 - 5 = 1 -> 0 before, 1 after.
    x = np.arange(1.0, 6.0).reshape(1, 5, 1)
    w = np.array([1.0, 10.0]).reshape(2, 1, 1)
    out = reference.conv_nd(x, w, 2, "same", 1)
    np.testing.assert_array_equal(out[0, :, 0], [21.0, 43.0, 5.0])


def test_conv_nd_same_odd_pad_goes_after():
    # in=4, k=4 -> total pad 3: 1 before, 2 after (TensorFlow puts the extra after).
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    w = np.array([1.0, 10.0, 100.0, 1000.0]).reshape(4, 1, 1)
    out = reference.conv_nd(x, w, 1, "same", 1)
    np.testing.assert_array_equal(out[0, :, 0], [3210.0, 4321.0, 432.0, 43.0])


def test_conv_nd_dilation_1d():
    x = np.arange(6.0).reshape(1, 6, 1)
    w = np.array([1.0, 10.0]).reshape(2, 1, 1)
    out = reference.conv_nd(x, w, 1, "valid", 2)
    np.testing.assert_array_equal(out[0, :, 0], [20.0, 31.0, 42.0, 53.0])


def test_conv_nd_2d_channels():
    x = np.arange(18.0).reshape(1, 3, 3, 2)
    w = np.zeros((2, 2, 2, 2))
    w[0, 0, 0, 0] = 1.0  # output 0: top-left, channel 0
    w[1, 1, 1, 1] = 1.0  # output 1: bottom-right, channel 1
    out = reference.conv_nd(x, w, 1, "valid", 1)
    np.testing.assert_array_equal(out[0, :, :, 0], [[0.0, 2.0], [6.0, 8.0]])
    np.testing.assert_array_equal(out[0, :, :, 1], [[9.0, 11.0], [15.0, 17.0]])


def test_conv_nd_3d_shape_and_sum():
    x = np.ones((2, 4, 5, 6, 3))
    w = np.ones((2, 3, 2, 3, 4))
    out = reference.conv_nd(x, w, (1, 2, 1), "same", 1)
    assert out.shape == (2, 4, 3, 6, 4)
    # An interior position sees the full kernel: 2*3*2 taps times 3 channels.
    assert out[0, 1, 1, 2, 0] == 36.0


@pytest.mark.parametrize(
    "name, x, expected",
    [
        pytest.param("softsign", 1.0, 0.5, id="softsign"),
        pytest.param("hard_sigmoid", 0.0, 0.5, id="hard_sigmoid-0"),
        pytest.param("hard_sigmoid", 1.5, 0.75, id="hard_sigmoid-keras3-slope"),
        pytest.param("hard_sigmoid", 4.0, 1.0, id="hard_sigmoid-clip"),
        pytest.param("sigmoid", 0.0, 0.5, id="sigmoid"),
        pytest.param("tanh", 0.0, 0.0, id="tanh"),
        pytest.param("relu", -2.0, 0.0, id="relu"),
        pytest.param("linear", -2.0, -2.0, id="linear"),
    ],
)
def test_activation_values(name, x, expected):
    assert activations.ACTIVATIONS[name](np.float64(x)) == pytest.approx(expected)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activations_match_keras(name):
    x = np.linspace(-4.0, 4.0, 33)
    got = np.asarray(keras.activations.get(name)(x.astype("float32")))
    np.testing.assert_allclose(activations.ACTIVATIONS[name](x), got, atol=1e-5, rtol=1e-5)
