"""Pure-NumPy reference implementation of the ConvLSTM forward pass.

This module is the ground truth that the patched Keras layers are checked
against. It is deliberately independent of Keras and TensorFlow (it imports
nothing but NumPy, the standard library and activations.py, the activation
table it shares with rnn_reference.py), so a bug in the patch or in Keras
cannot leak into the expected values, and it runs in any Python that has NumPy.

It runs in the *user's* interpreter, which for Keras 2.0-2.3 may be as old as
Python 3.5-3.7 with NumPy 1.13: keep it valid Python 3.6 (no walrus, no
positional-only parameters, no ``from __future__ import annotations``) and use
nothing newer from NumPy than 1.13 (no ``default_rng``, ``np.pad`` always with
its ``mode``). tests/test_probe_compat.py enforces the syntax part.

Conventions follow Keras: channels_last data, kernels shaped
``(*kernel_size, in_channels, 4 * filters)`` with the gates ordered i, f, c, o
along the last axis, and TensorFlow's "valid"/"same" padding rules. Unlike
Keras, each of the five activations (input, forget and output gates, the cell
candidate and the cell output) can be chosen separately.

Two things differ between Keras generations and backends, and are parameters
here rather than guesses:

* ``flip_kernels``: Theano's ``conv2d`` is a true convolution, so a Keras 2
  model on Theano computes the cross-correlation of the spatially flipped
  kernels. TensorFlow (1.x and 2.x), CNTK, JAX and PyTorch under Keras all
  cross-correlate.
* ``hard_sigmoid``: Keras 2 (multi-backend Keras, tf.keras, tf_keras) defines
  it as ``clip(0.2 x + 0.5, 0, 1)``; Keras 3 as ``relu6(x + 3) / 6``
  (activations.HARD_SIGMOID).
"""

import math

import numpy as np

from .activations import lstm_functions, lstm_step

_GATES = ("i", "f", "c", "o")


def _as_tuple(value, rank):
    if isinstance(value, int):
        return (value,) * rank
    value = tuple(value)
    if len(value) != rank:
        raise ValueError("Expected {} values, got {!r}".format(rank, value))
    return value


def _same_padding(size, kernel, stride, dilation):
    """(before, after, out_size) for TensorFlow's "same" padding on one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2, out


def conv_nd(x, w, strides=1, padding="valid", dilation_rate=1, flip_kernels=False):
    """Channels_last N-D cross-correlation, as tf.nn.convolution computes it.

    x has shape (batch, *spatial, in_ch) and w (*kernel_size, in_ch, out_ch);
    the result has shape (batch, *out_spatial, out_ch) and dtype float64.
    With flip_kernels, the kernel's spatial axes are reversed first: a true
    convolution, as Theano's conv2d computes it.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    rank = x.ndim - 2
    if flip_kernels:
        w = w[(slice(None, None, -1),) * rank]
    if w.ndim != rank + 2:
        raise ValueError("Kernel rank {} does not fit input rank {}".format(w.ndim, x.ndim))
    kernel_size = w.shape[:rank]
    strides = _as_tuple(strides, rank)
    dilation = _as_tuple(dilation_rate, rank)
    padding = padding.lower()

    pads, out_sizes = [(0, 0)], []
    for size, k, s, d in zip(x.shape[1:-1], kernel_size, strides, dilation):
        if padding == "same":
            before, after, out = _same_padding(size, k, s, d)
        elif padding == "valid":
            before, after = 0, 0
            out = max((size - (k - 1) * d - 1) // s + 1, 0)
        else:
            raise ValueError("Unknown padding {!r}".format(padding))
        pads.append((before, after))
        out_sizes.append(out)
    pads.append((0, 0))
    x = np.pad(x, pads, mode="constant")

    result = np.zeros((x.shape[0], *out_sizes, w.shape[-1]))
    for offset in np.ndindex(*kernel_size):
        window = tuple(
            slice(o * d, o * d + (n - 1) * s + 1, s) for o, d, n, s in zip(offset, dilation, out_sizes, strides)
        )
        patch = x[(slice(None),) + window + (slice(None),)]
        result += np.tensordot(patch, w[offset], axes=([-1], [0]))
    return result


def _split_gates(array, axis=-1):
    return dict(zip(_GATES, np.split(array, 4, axis=axis)))


def conv_lstm(
    x,
    kernel,
    recurrent_kernel,
    bias,
    strides=1,
    padding="valid",
    dilation_rate=1,
    flip_kernels=False,
    **activations,
):
    """Run a ConvLSTM over x of shape (batch, time, *spatial, channels).

    Returns (sequence_outputs, last_h, last_c) as float64 arrays, where
    sequence_outputs has shape (batch, time, *out_spatial, filters).
    flip_kernels: the backend convolves (Theano) instead of cross-correlating.
    activations: activation, recurrent_activation, the five per-gate ones and
    hard_sigmoid, "keras2" (clip(0.2 x + 0.5, 0, 1)) or "keras3" (relu6(x + 3) / 6),
    as activations.lstm_functions takes them.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] == 0:
        raise ValueError("conv_lstm needs at least one time step")
    kernels = _split_gates(np.asarray(kernel, dtype=np.float64))
    recurrent_kernels = _split_gates(np.asarray(recurrent_kernel, dtype=np.float64))
    if bias is None:
        biases = dict.fromkeys(_GATES, 0.0)
    else:
        biases = _split_gates(np.asarray(bias, dtype=np.float64))

    functions = lstm_functions(**activations)

    h = c = None
    outputs = []
    for t in range(x.shape[1]):
        z = {
            name: conv_nd(x[:, t], kernels[name], strides, padding, dilation_rate, flip_kernels) + biases[name]
            for name in _GATES
        }
        if h is None:
            h = np.zeros_like(z["i"])
            c = np.zeros_like(z["i"])
        for name in _GATES:
            z[name] = z[name] + conv_nd(h, recurrent_kernels[name], 1, "same", 1, flip_kernels)
        h, c = lstm_step(functions, z["i"], z["f"], z["c"], z["o"], c)
        outputs.append(h)
    return np.stack(outputs, axis=1), h, c
