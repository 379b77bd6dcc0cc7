"""The activations the NumPy references know, by their Keras names: one table for both.

reference.py (ConvLSTM) and rnn_reference.py (LSTM, GRU) look every activation
up here, so the two cannot disagree on what a name, or None, means; an LSTM's
five functions (lstm_functions) and its step (lstm_step) are here too, so the
ConvLSTM and the LSTM reference compute the one set of equations:

* a name is the function of that name in ACTIVATIONS, except hard_sigmoid,
  whose definition depends on the Keras generation (HARD_SIGMOID): Keras 2
  (multi-backend Keras, tf.keras, tf_keras) computes ``clip(0.2 x + 0.5, 0,
  1)``, Keras 3 ``relu6(x + 3) / 6``;
* None as a layer's ``activation`` is no activation (linear), as Keras's
  ``activations.get(None)``;
* None as a per-gate activation (``activation_i``, ``recurrent_activation_z``,
  ...) is "inherit": the layer's ``activation`` / ``recurrent_activation``
  (:func:`per_gate`).

Independent of Keras (NumPy and the standard library only) and run in the
user's interpreter: valid Python 3.6 with NumPy 1.13 (tests/test_probe_compat.py).
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def hard_sigmoid_keras2(x):
    """Keras 2 and tf_keras: clip(0.2 x + 0.5, 0, 1)."""
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def hard_sigmoid_keras3(x):
    """Keras 3: relu6(x + 3) / 6, that is clip(x / 6 + 0.5, 0, 1)."""
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


def linear(x):
    return x


def relu(x):
    return np.maximum(x, 0.0)


def softsign(x):
    return x / (1.0 + np.abs(x))


# hard_sigmoid by Keras generation (the ``hard_sigmoid`` argument of the references).
HARD_SIGMOID = {"keras2": hard_sigmoid_keras2, "keras3": hard_sigmoid_keras3}
# By Keras name; hard_sigmoid as Keras 3 defines it (resolve() picks the generation's).
ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid_keras3,
    "relu": relu,
    "linear": linear,
    "softsign": softsign,
}


def resolve(activation, hard_sigmoid="keras3"):
    """The function for a layer's activation: None is linear, a name is looked up (hard_sigmoid:
    "keras2" or "keras3", the generation whose definition counts)."""
    if hard_sigmoid not in HARD_SIGMOID:
        raise ValueError("hard_sigmoid must be 'keras2' or 'keras3', not {!r}".format(hard_sigmoid))
    if activation is None:
        return linear
    if activation == "hard_sigmoid":
        return HARD_SIGMOID[hard_sigmoid]
    return ACTIVATIONS[activation]


def per_gate(given, inherited, hard_sigmoid="keras3"):
    """The function for a per-gate activation: ``given``, or when it is None the one it inherits."""
    return resolve(inherited if given is None else given, hard_sigmoid)


def lstm_functions(
    activation="tanh",
    recurrent_activation="sigmoid",
    activation_i=None,
    activation_o=None,
    recurrent_activation_f=None,
    recurrent_activation_i=None,
    recurrent_activation_o=None,
    hard_sigmoid="keras3",
):
    """An LSTM's five functions by what they compute: the gates i, f and o, the candidate c
    and the cell state's output h; a per-gate activation left None inherits."""
    return {
        "i": per_gate(recurrent_activation_i, recurrent_activation, hard_sigmoid),
        "f": per_gate(recurrent_activation_f, recurrent_activation, hard_sigmoid),
        "o": per_gate(recurrent_activation_o, recurrent_activation, hard_sigmoid),
        "c": per_gate(activation_i, activation, hard_sigmoid),
        "h": per_gate(activation_o, activation, hard_sigmoid),
    }


def lstm_step(functions, z_i, z_f, z_c, z_o, c):
    """(h, c) after one step, from the gates' pre-activations and the cell state before it::

    c = f(z_f) * c + i(z_i) * c~(z_c);  h = o(z_o) * h~(c)
    """
    c = functions["f"](z_f) * c + functions["i"](z_i) * functions["c"](z_c)
    return functions["o"](z_o) * functions["h"](c), c
