"""Pure-NumPy reference of the LSTM and GRU forward passes, one activation per gate.

The ground truth the patched ``LSTM`` / ``GRU`` layers are checked against:
independent of Keras (NumPy, the standard library and activations.py, the
activation table it shares with reference.py), valid Python 3.6 with NumPy
1.13, like reference.py (tests/test_probe_compat.py).

Conventions follow Keras (3 and 2.x/tf_keras alike): inputs ``(batch, time,
features)``; LSTM kernels ``(features, 4 * units)`` and ``(units, 4 * units)``
with the gates ordered i, f, c, o; GRU kernels ``(..., 3 * units)`` ordered z,
r, h, and a bias of shape ``(3 * units,)`` or, with ``reset_after``, ``(2, 3 *
units)`` (input bias, recurrent bias)::

    LSTM  i = recurrent_activation_i(x W_i + h U_i + b_i)
          f = recurrent_activation_f(x W_f + h U_f + b_f)
          c = f * c + i * activation_i(x W_c + h U_c + b_c)
          o = recurrent_activation_o(x W_o + h U_o + b_o)
          h = o * activation_o(c)
    GRU   z = recurrent_activation_z(x W_z + h U_z + b_z)
          r = recurrent_activation_r(x W_r + h U_r + b_r)
          hh = activation(x W_h + r * (h U_h + b'_h))     reset_after
          hh = activation(x W_h + (r * h) U_h + b_h)      otherwise
          h = z * h + (1 - z) * hh

Every per-gate activation left as None follows ``activation`` /
``recurrent_activation``, as in the patched layers.

What the layers do around those equations, as Keras documents it:

* ``go_backwards``: the steps are taken last to first, and the outputs are
  given in that order (the last output is the one of the first step);
* a ``mask`` (batch, time) of booleans: at a masked step of a sample, its
  state (h, and c) stays what it was and its output is the previous output
  (zeros before the first step), or zeros with ``zero_output_for_mask``;
* ``Bidirectional``: a forward and a backward (``go_backwards``) layer; with
  ``return_sequences`` the backward outputs are put back in time order, then
  the two are merged (concat on the last axis, sum, ave, mul, or None: both
  given); the states follow, forward first.
"""

import numpy as np

from .activations import lstm_functions, lstm_step, per_gate, resolve


def _steps(x, mask, go_backwards):
    """The inputs and the (batch, 1) masks in the order the steps are taken."""
    x = np.asarray(x, dtype="float64")
    keep = np.ones(x.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if go_backwards:
        x, keep = x[:, ::-1], keep[:, ::-1]
    return [(x[:, t, :], keep[:, t][:, None]) for t in range(x.shape[1])]


def _emit(new, old, keep, previous_output, zero_output_for_mask):
    """A step's state and output for each sample: the new ones where kept, else the old state and
    the previous (or a zero) output."""
    state = np.where(keep, new, old)
    output = np.where(keep, new, 0.0 if zero_output_for_mask else previous_output)
    return state, output


def _start(x, kernel, recurrent_kernel, mask, go_backwards):
    """The weights as float64, the units, a zero state and the steps (_steps)."""
    kernel = np.asarray(kernel, dtype="float64")
    recurrent_kernel = np.asarray(recurrent_kernel, dtype="float64")
    units = recurrent_kernel.shape[0]
    zeros = np.zeros((np.shape(x)[0], units))
    return kernel, recurrent_kernel, units, zeros, _steps(x, mask, go_backwards)


def lstm(
    x, kernel, recurrent_kernel, bias=None, mask=None, go_backwards=False, zero_output_for_mask=False, **activations
):
    """(outputs in the order the steps are taken, last h, last c), all float64; activations:
    activation, recurrent_activation, the five per-gate ones and hard_sigmoid, as
    activations.lstm_functions takes them."""
    kernel, recurrent_kernel, units, h, steps = _start(x, kernel, recurrent_kernel, mask, go_backwards)
    bias = np.zeros(4 * units) if bias is None else np.asarray(bias, dtype="float64")
    functions = lstm_functions(**activations)
    c = output = h
    outputs = []
    for xt, keep in steps:
        z = xt.dot(kernel) + h.dot(recurrent_kernel) + bias
        z_i, z_f, z_c, z_o = (z[:, k * units : (k + 1) * units] for k in range(4))
        new_h, new_c = lstm_step(functions, z_i, z_f, z_c, z_o, c)
        c = np.where(keep, new_c, c)
        h, output = _emit(new_h, h, keep, output, zero_output_for_mask)
        outputs.append(output)
    return np.stack(outputs, axis=1), h, c


def gru(
    x,
    kernel,
    recurrent_kernel,
    bias=None,
    activation="tanh",
    recurrent_activation="sigmoid",
    recurrent_activation_z=None,
    recurrent_activation_r=None,
    reset_after=True,
    hard_sigmoid="keras3",
    mask=None,
    go_backwards=False,
    zero_output_for_mask=False,
):
    """(outputs in the order the steps are taken, last h), all float64."""
    kernel, recurrent_kernel, units, h, steps = _start(x, kernel, recurrent_kernel, mask, go_backwards)
    if bias is None:
        input_bias, recurrent_bias = np.zeros(3 * units), np.zeros(3 * units)
    elif reset_after:
        input_bias, recurrent_bias = np.asarray(bias, dtype="float64")
    else:
        input_bias, recurrent_bias = np.asarray(bias, dtype="float64"), np.zeros(3 * units)
    candidate = resolve(activation, hard_sigmoid)
    gate_z = per_gate(recurrent_activation_z, recurrent_activation, hard_sigmoid)
    gate_r = per_gate(recurrent_activation_r, recurrent_activation, hard_sigmoid)
    w_z, w_r, w_h = (kernel[:, k * units : (k + 1) * units] for k in range(3))
    u_z, u_r, u_h = (recurrent_kernel[:, k * units : (k + 1) * units] for k in range(3))
    b_z, b_r, b_h = (input_bias[k * units : (k + 1) * units] for k in range(3))
    rb_z, rb_r, rb_h = (recurrent_bias[k * units : (k + 1) * units] for k in range(3))
    output = h
    outputs = []
    for xt, keep in steps:
        z = gate_z(xt.dot(w_z) + b_z + h.dot(u_z) + rb_z)
        r = gate_r(xt.dot(w_r) + b_r + h.dot(u_r) + rb_r)
        if reset_after:
            hh = candidate(xt.dot(w_h) + b_h + r * (h.dot(u_h) + rb_h))
        else:
            hh = candidate(xt.dot(w_h) + b_h + (r * h).dot(u_h))
        h, output = _emit(z * h + (1.0 - z) * hh, h, keep, output, zero_output_for_mask)
        outputs.append(output)
    return np.stack(outputs, axis=1), h


def layer_outputs(result, return_sequences=True, return_state=True):
    """What a layer returns from lstm()/gru()'s result: all outputs or the last one, then the states."""
    outputs, states = result[0], list(result[1:])
    return [outputs if return_sequences else outputs[:, -1]] + (states if return_state else [])


MERGES = {
    "concat": lambda y, y_rev: [np.concatenate([y, y_rev], axis=-1)],
    "sum": lambda y, y_rev: [y + y_rev],
    "ave": lambda y, y_rev: [(y + y_rev) / 2.0],
    "mul": lambda y, y_rev: [y * y_rev],
    None: lambda y, y_rev: [y, y_rev],
}


def bidirectional(forward, backward, merge_mode="concat", return_sequences=True, return_state=False):
    """What Bidirectional returns from lstm()/gru()'s results for the forward layer and the
    backward one (run with go_backwards=True): the merged output (two with merge_mode None),
    then, with return_state, the forward states and the backward states."""
    if return_sequences:
        y, y_rev = forward[0], backward[0][:, ::-1]
    else:
        y, y_rev = forward[0][:, -1], backward[0][:, -1]
    states = list(forward[1:]) + list(backward[1:]) if return_state else []
    return MERGES[merge_mode](y, y_rev) + states
