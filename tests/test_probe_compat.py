"""The probe runs in the user's interpreter: old Python, old NumPy, other backends.

Keras 2.0-2.3 users run Python 3.5-3.7 with NumPy 1.13 or newer, so every
probe file must be valid Python 3.6 and use nothing newer from the standard
library or NumPy. The reference's Theano (flipped-kernel convolution) and
Keras 2 (hard_sigmoid) variants are checked here against NumPy written out
independently, index by index.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from patcher.probe import activations, reference, rnn_reference

PROBE_FILES = sorted((Path(__file__).resolve().parent.parent / "patcher" / "probe").glob("*.py"))

# Attributes and modules newer than Python 3.6 / NumPy 1.13 that an
# ast.parse(feature_version=(3, 6)) does not catch.
NEWER_ATTRIBUTES = {
    "default_rng": "NumPy 1.17",
    "Generator": "NumPy 1.17",
    "removeprefix": "Python 3.9",
    "removesuffix": "Python 3.9",
    "prod": "math.prod is Python 3.8",
    "isqrt": "Python 3.8",
    "cached_property": "Python 3.8",
    "missing_ok": "Python 3.8",
    "capture_output": "Python 3.7",
    "is_relative_to": "Python 3.9",
}
NEWER_MODULES = {
    "dataclasses": "3.7",
    "contextvars": "3.7",
    "importlib.metadata": "3.8",
    "importlib.resources": "3.7",
    "graphlib": "3.9",
    "zoneinfo": "3.9",
}


def test_probe_files_found():
    assert {path.name for path in PROBE_FILES} >= {"runner.py", "reference.py", "__init__.py"}


def newer_than_36(source: str, filename: str = "<probe>") -> list[str]:
    """What in ``source`` Python 3.6 or NumPy 1.13 lacks (a SyntaxError raises)."""
    tree = ast.parse(source, filename=filename, feature_version=(3, 6))
    problems = []
    for node in ast.walk(tree):
        # Python 3.9's parser ignores feature_version for these two (3.10's rejects them).
        if isinstance(node, ast.NamedExpr):
            problems.append(f"assignment expression := at line {node.lineno} (Python 3.8)")
        if isinstance(node, ast.arguments) and node.posonlyargs:
            problems.append(f"positional-only parameters at line {node.posonlyargs[0].lineno} (Python 3.8)")
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            # `annotations` is a SyntaxError before 3.7; the parser here does not know.
            problems += [f"from __future__ import {alias.name}" for alias in node.names if alias.name == "annotations"]
        if isinstance(node, ast.ImportFrom) and node.module in NEWER_MODULES:
            problems.append(f"import from {node.module} (Python {NEWER_MODULES[node.module]})")
        if isinstance(node, ast.Import):
            problems += [
                f"import {a.name} (Python {NEWER_MODULES[a.name]})" for a in node.names if a.name in NEWER_MODULES
            ]
        if isinstance(node, ast.Attribute) and node.attr in NEWER_ATTRIBUTES:
            problems.append(f".{node.attr} ({NEWER_ATTRIBUTES[node.attr]})")
        if isinstance(node, ast.keyword) and node.arg in NEWER_ATTRIBUTES:
            problems.append(f"{node.arg}= ({NEWER_ATTRIBUTES[node.arg]})")
        # np.pad's mode has a default only from NumPy 1.17.
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "pad"
            and not any(keyword.arg == "mode" for keyword in node.keywords)
            and len(node.args) < 3
        ):
            problems.append(f"np.pad without mode at line {node.lineno} (NumPy < 1.17 requires it)")
        if isinstance(node, (ast.AnnAssign,)) and node.value is None and not isinstance(node.target, ast.Name):
            problems.append(f"bare annotation at line {node.lineno}")
    return problems


@pytest.mark.parametrize("path", PROBE_FILES, ids=lambda path: path.name)
def test_valid_python_36(path):
    assert not newer_than_36(path.read_text(encoding="utf-8"), str(path)), path.name


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("if (n := 1):\n    pass\n", id="walrus"),
        pytest.param("def f(a, /):\n    pass\n", id="positional-only"),
        pytest.param("from __future__ import annotations\n", id="future-annotations"),
        pytest.param("import numpy as np\nrng = np.random.default_rng(0)\n", id="numpy-1.17"),
    ],
)
def test_newer_syntax_is_found(source):
    # The check above is only as good as this: on every Python the suite runs on.
    try:
        problems = newer_than_36(source)
    except SyntaxError:
        return
    assert problems, source


# -- independent NumPy: true convolution (Theano) and one ConvLSTM step ------------


def true_convolution_2d(x, w, padding):
    """out[b, i, j, o] = sum x[b, i + di, j + dj, c] * w[kh - 1 - di, kw - 1 - dj, c, o], stride 1.

    "same" is Theano's "half" border mode for odd kernels: (k - 1) / 2 zeros on each side.
    """
    kh, kw = w.shape[:2]
    if padding == "same":
        x = np.pad(x, ((0, 0), ((kh - 1) // 2,) * 2, ((kw - 1) // 2,) * 2, (0, 0)), mode="constant")
    batch, height, width, channels = x.shape
    out = np.zeros((batch, height - kh + 1, width - kw + 1, w.shape[3]))
    for b in range(batch):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                for o in range(w.shape[3]):
                    total = 0.0
                    for di in range(kh):
                        for dj in range(kw):
                            for c in range(channels):
                                total += x[b, i + di, j + dj, c] * w[kh - 1 - di, kw - 1 - dj, c, o]
                    out[b, i, j, o] = total
    return out


@pytest.fixture
def rng():
    return np.random.RandomState(3)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_flipped_kernels_are_a_true_convolution(rng, padding):
    x = rng.normal(size=(2, 6, 5, 2))
    w = rng.normal(size=(3, 3, 2, 4))
    got = reference.conv_nd(x, w, padding=padding, flip_kernels=True)
    np.testing.assert_allclose(got, true_convolution_2d(x, w, padding), atol=1e-10)
    # and not the cross-correlation (the kernel is not symmetric)
    assert np.max(np.abs(got - reference.conv_nd(x, w, padding=padding))) > 1e-3


def test_flipped_kernels_1d_and_3d(rng):
    for shape, kernel in (((2, 7, 2), (3, 2, 4)), ((1, 4, 4, 5, 2), (2, 3, 2, 2, 3))):
        x = rng.normal(size=shape)
        w = rng.normal(size=kernel)
        flipped = w[(slice(None, None, -1),) * (len(kernel) - 2)]
        np.testing.assert_allclose(
            reference.conv_nd(x, w, flip_kernels=True), reference.conv_nd(x, flipped), atol=1e-12
        )


def hard_sigmoid_keras2(x):
    out = np.empty_like(x)
    for index, value in np.ndenumerate(x):
        out[index] = 0.0 if value < -2.5 else 1.0 if value > 2.5 else 0.2 * value + 0.5
    return out


def test_hard_sigmoid_variants():
    x = np.array([-4.0, -3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0, 4.0])
    np.testing.assert_allclose(activations.HARD_SIGMOID["keras2"](x), hard_sigmoid_keras2(x))
    np.testing.assert_allclose(activations.HARD_SIGMOID["keras2"](x), [0, 0, 0, 0.3, 0.5, 0.7, 1, 1, 1])
    np.testing.assert_allclose(activations.HARD_SIGMOID["keras3"](x), [0, 0, 1 / 12, 1 / 3, 0.5, 2 / 3, 11 / 12, 1, 1])
    with pytest.raises(ValueError):
        reference.conv_lstm(
            np.zeros((1, 1, 3, 3, 1)), np.zeros((3, 3, 1, 4)), np.zeros((3, 3, 1, 4)), None, hard_sigmoid="keras4"
        )


def one_step_theano_keras2(x, kernel, bias, five):
    """A ConvLSTM's first step (h = c = 0, so the recurrent kernel drops out), Theano + Keras 2."""
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))
    named = {
        "tanh": np.tanh,
        "sigmoid": sigmoid,
        "hard_sigmoid": hard_sigmoid_keras2,
        "relu": lambda v: np.maximum(v, 0),
    }
    filters = kernel.shape[-1] // 4
    z = {
        gate: true_convolution_2d(x[:, 0], kernel[..., k * filters : (k + 1) * filters], "same")
        + bias[k * filters : (k + 1) * filters]
        for k, gate in enumerate("ifco")
    }
    i = named[five["recurrent_activation_i"]](z["i"])
    c = i * named[five["activation_i"]](z["c"])  # f * c_tm1 = 0
    o = named[five["recurrent_activation_o"]](z["o"])
    return o * named[five["activation_o"]](c), c


def test_conv_lstm_theano_keras2_first_step(rng):
    x = rng.normal(size=(2, 1, 5, 4, 2))
    kernel = rng.normal(scale=0.7, size=(3, 3, 2, 12))
    recurrent = rng.normal(size=(3, 3, 3, 12))
    bias = rng.normal(size=12)
    five = {
        "activation_i": "relu",
        "activation_o": "tanh",
        "recurrent_activation_f": "sigmoid",
        "recurrent_activation_i": "hard_sigmoid",
        "recurrent_activation_o": "hard_sigmoid",
    }
    outputs, h, c = reference.conv_lstm(
        x, kernel, recurrent, bias, padding="same", flip_kernels=True, hard_sigmoid="keras2", **five
    )
    want_h, want_c = one_step_theano_keras2(x, kernel, bias, five)
    np.testing.assert_allclose(h, want_h, atol=1e-10)
    np.testing.assert_allclose(c, want_c, atol=1e-10)
    np.testing.assert_allclose(outputs[:, 0], want_h, atol=1e-10)


def test_conv_lstm_flip_is_the_same_as_flipping_both_kernels(rng):
    x = rng.normal(size=(2, 3, 6, 5, 2))
    kernel = rng.normal(scale=0.5, size=(3, 3, 2, 12))
    recurrent = rng.normal(scale=0.5, size=(3, 3, 3, 12))
    bias = rng.normal(size=12)
    flipped = [got for got in reference.conv_lstm(x, kernel, recurrent, bias, padding="same", flip_kernels=True)]
    manual = reference.conv_lstm(x, kernel[::-1, ::-1], recurrent[::-1, ::-1], bias, padding="same")
    for a, b in zip(flipped, manual):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_defaults_unchanged_for_keras3_and_tensorflow(rng):
    # The new parameters default to what the reference always computed.
    x = rng.normal(size=(1, 2, 5, 5, 1))
    kernel = rng.normal(size=(3, 3, 1, 8))
    recurrent = rng.normal(size=(3, 3, 2, 8))
    a = reference.conv_lstm(x, kernel, recurrent, None, recurrent_activation="hard_sigmoid")
    b = reference.conv_lstm(
        x, kernel, recurrent, None, recurrent_activation="hard_sigmoid", flip_kernels=False, hard_sigmoid="keras3"
    )
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)


# -- one activation table for both NumPy references --------------------------------

REFERENCES = ("reference.py", "rnn_reference.py", "activations.py")


@pytest.mark.parametrize("name", REFERENCES)
def test_references_import_no_keras(name):
    """The references are the ground truth: NumPy, the standard library and their shared table only."""
    tree = ast.parse((PROBE_FILES[0].parent / name).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported <= {"numpy", "math", ".activations"}, imported


def conv_lstm_input(rng):
    return rng.normal(size=(2, 3, 5, 4, 2)), rng.normal(size=(3, 3, 2, 12)), rng.normal(size=(3, 3, 3, 12))


def lstm_input(rng):
    return rng.normal(size=(2, 4, 3)), rng.normal(size=(3, 8)), rng.normal(size=(2, 8))


def gru_input(rng):
    return rng.normal(size=(2, 4, 3)), rng.normal(size=(3, 6)), rng.normal(size=(2, 6))


RUNS = {
    "conv_lstm": lambda rng, **options: reference.conv_lstm(*conv_lstm_input(rng), None, padding="same", **options),
    "lstm": lambda rng, **options: rnn_reference.lstm(*lstm_input(rng), **options),
    "gru": lambda rng, **options: rnn_reference.gru(*gru_input(rng), reset_after=False, **options),
}
# A per-gate activation of each layer, and the layer's own activation.
PER_GATE = {"conv_lstm": "activation_i", "lstm": "activation_i", "gru": "recurrent_activation_z"}


@pytest.mark.parametrize("layer", sorted(RUNS))
def test_references_look_activations_up_in_the_shared_table(monkeypatch, layer):
    """Replacing a name in activations.ACTIVATIONS changes what every reference computes with it."""
    calls = []

    def spy(x):
        calls.append(x.shape)
        return x / (1.0 + np.abs(x))

    monkeypatch.setitem(activations.ACTIVATIONS, "softsign", spy)
    RUNS[layer](np.random.RandomState(5), **{PER_GATE[layer]: "softsign"})
    assert calls, f"{layer} does not take softsign from activations.ACTIVATIONS"


@pytest.mark.parametrize("layer", sorted(RUNS))
@pytest.mark.parametrize("generation", ["keras2", "keras3"])
def test_references_take_hard_sigmoid_by_generation_from_the_shared_table(monkeypatch, layer, generation):
    calls = []
    original = activations.HARD_SIGMOID[generation]
    monkeypatch.setitem(activations.HARD_SIGMOID, generation, lambda x: calls.append(1) or original(x))
    RUNS[layer](np.random.RandomState(5), hard_sigmoid=generation, **{PER_GATE[layer]: "hard_sigmoid"})
    assert calls, f"{layer} does not take the {generation} hard_sigmoid from activations.HARD_SIGMOID"
    with pytest.raises(ValueError, match="keras2"):
        RUNS[layer](np.random.RandomState(5), hard_sigmoid="keras4")


@pytest.mark.parametrize("layer", sorted(RUNS))
def test_none_means_the_same_in_both_references(layer):
    """A layer's activation=None is linear (Keras's activations.get(None)); a per-gate None inherits."""
    run = RUNS[layer]
    as_none = run(np.random.RandomState(5), activation=None)
    as_linear = run(np.random.RandomState(5), activation="linear")
    for a, b in zip(as_none, as_linear):
        np.testing.assert_array_equal(a, b)
    inherited = run(np.random.RandomState(5), recurrent_activation="hard_sigmoid", **{PER_GATE[layer]: None})
    named = run(np.random.RandomState(5), recurrent_activation="hard_sigmoid")
    for a, b in zip(inherited, named):
        np.testing.assert_array_equal(a, b)
    assert activations.resolve(None) is activations.linear
    assert activations.per_gate(None, "tanh") is np.tanh
