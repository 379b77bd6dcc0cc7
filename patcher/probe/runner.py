"""Verify a patched Keras: run in a fresh process of the target interpreter.

    python runner.py --package keras --cell-module keras.src.layers.rnn.conv_lstm \
        [--pristine PATH_TO_BACKED_UP_CELL_MODULE]

Prints one progress line per check on stderr and a JSON document on stdout:
{"package", "version", "backend", "checks": [{"name", "passed", "detail", "value"}]}.
Never raises: a failing check is reported, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIVE = ("activation_i", "activation_o", "recurrent_activation_f", "recurrent_activation_i", "recurrent_activation_o")
# Activations defined identically in every Keras version (hard_sigmoid is not).
DISTINCT = dict(
    activation_i="relu",
    activation_o="softsign",
    recurrent_activation_f="sigmoid",
    recurrent_activation_i="linear",
    recurrent_activation_o="tanh",
)
TOLERANCE = 1e-4
SPATIAL = {1: (7,), 2: (6, 5), 3: (5, 4, 4)}


def _load_file(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load_file("_convlstm_patch_reference", str(HERE / "reference.py"))


class Probe:
    def __init__(self, package: str, cell_module: str, pristine: str | None) -> None:
        self.keras = importlib.import_module(package)
        self.cell_module = importlib.import_module(cell_module)
        # The backed-up original of the cell module, loaded beside the patched one.
        self.pristine = _load_file("_convlstm_patch_pristine", pristine) if pristine else None
        # Keras 3 on torch hands back tensors that np.asarray refuses.
        self.to_numpy = getattr(getattr(self.keras, "ops", None), "convert_to_numpy", np.asarray)
        self.layers = {rank: getattr(self.keras.layers, f"ConvLSTM{rank}D") for rank in (1, 2, 3)}
        self.rng = np.random.default_rng(0)

    # -- helpers ---------------------------------------------------------------
    def build(self, rank, layer_class=None, **kwargs):
        options = dict(filters=3, kernel_size=2 if rank == 3 else 3, return_sequences=True, return_state=True)
        options.update(kwargs)
        layer = (layer_class or self.layers[rank])(**options)
        x = self.rng.normal(size=(2, 3, *SPATIAL[rank], 2)).astype("float32")
        layer.build(x.shape)  # weights without a first (slow, eager) call
        weights = [self.rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()]
        layer.set_weights(weights)
        return layer, x, weights

    def run(self, layer, x):
        return self.as_list(layer(x))

    def as_list(self, value):
        return [self.to_numpy(item) for item in (value if isinstance(value, (list, tuple)) else [value])]

    # -- checks ------------------------------------------------------------------
    def check_api(self):
        classes = [self.cell_module.ConvLSTMCell, self.cell_module.ConvLSTM, *self.layers.values()]
        pristine = self.pristine
        for cls in classes:
            params = inspect.signature(cls.__init__).parameters
            for name in FIVE:
                if name not in params or params[name].default is not None:
                    return False, f"{cls.__name__}.__init__ lacks {name}=None", None
            missing_doc = [name for name in FIVE if f"{name}:" not in (cls.__doc__ or "")]
            if missing_doc:
                return False, f"{cls.__name__} docstring does not describe {', '.join(missing_doc)}", None
            stock_class = getattr(pristine, cls.__name__, None) if pristine else None
            if stock_class is not None:
                stock = [name for name in inspect.signature(stock_class.__init__).parameters if name != "kwargs"]
                ours = [name for name in params if name != "kwargs"]
                if ours != stock + list(FIVE):
                    return False, f"{cls.__name__}.__init__ parameter order changed", None
        return True, f"{len(classes)} classes take the five, default None, existing order kept", None

    def check_numerics(self):
        worst = 0.0
        cases = 0
        for rank in (1, 2, 3):
            for options in (dict(padding="same"), dict(padding="valid", strides=2)):
                layer, x, weights = self.build(rank, activation="tanh", recurrent_activation="sigmoid", **options, **DISTINCT)
                got = self.run(layer, x)
                bias = weights[2] if len(weights) == 3 else None
                expected = reference.conv_lstm(x, weights[0], weights[1], bias, **options, **DISTINCT)
                worst = max(worst, *(float(np.max(np.abs(g - e))) for g, e in zip(got, expected)))
                cases += 1
        passed = worst < TOLERANCE
        return passed, f"{cases} layers (1D/2D/3D, same/valid+stride 2) vs NumPy reference, max abs error {worst:.2e}", worst

    def check_inheritance(self):
        given = dict(activation_i="relu", recurrent_activation_f="softsign")
        layer, x, weights = self.build(2, activation="linear", recurrent_activation="sigmoid", **given)
        expected = reference.conv_lstm(
            x, weights[0], weights[1], weights[2], activation="linear", recurrent_activation="sigmoid", **given
        )
        worst = max(float(np.max(np.abs(g - e))) for g, e in zip(self.run(layer, x), expected))
        inherited = layer.activation_o is layer.activation and layer.recurrent_activation_i is layer.recurrent_activation
        passed = worst < TOLERANCE and inherited
        return passed, f"unset activations follow activation/recurrent_activation, max abs error {worst:.2e}", worst

    def check_defaults(self):
        pristine = self.pristine
        if pristine is None:
            return False, "no pristine source to compare with", None
        identical = True
        for rank in (1, 2, 3):
            layer, x, weights = self.build(rank)
            stock = pristine.ConvLSTM(rank=rank, filters=3, kernel_size=2 if rank == 3 else 3, return_sequences=True, return_state=True)
            stock.build(x.shape)
            stock.set_weights(weights)
            identical &= all(np.array_equal(a, b) for a, b in zip(self.run(layer, x), self.run(stock, x)))
        return identical, "outputs without the five are bit-identical to the pristine source" if identical else "outputs without the five differ from the pristine source", None

    def check_serialization(self):
        layer, x, _ = self.build(2, **DISTINCT)
        config = layer.get_config()
        if any(config.get(name) is None for name in FIVE):
            return False, "get_config() drops one of the five", None
        clone = type(layer).from_config(config)
        clone.build(x.shape)
        clone.set_weights(layer.get_weights())
        if not all(np.array_equal(a, b) for a, b in zip(self.run(layer, x), self.run(clone, x))):
            return False, "from_config(get_config()) computes different outputs", None
        plain, _, _ = self.build(2)
        plain_config = plain.get_config()
        if any(name in plain_config for name in FIVE):
            return False, "a layer without the five has them in its config", None
        type(plain).from_config(plain_config)
        inputs = self.keras.Input(shape=x.shape[1:])
        restored = type(layer).from_config(config)
        model = self.keras.Model(inputs, restored(inputs))
        restored.set_weights(layer.get_weights())
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            model.save(path)
            loaded = self.keras.models.load_model(path)
        same = all(np.array_equal(a, b) for a, b in zip(self.as_list(model(x)), self.as_list(loaded(x))))
        return same, "config round trip and .keras save/load keep all five" if same else ".keras save/load changes outputs", None


CHECKS = ("api", "numerics", "inheritance", "defaults", "serialization")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--package", required=True)
    parser.add_argument("--cell-module", required=True)
    parser.add_argument("--pristine")
    parser.add_argument("--checks", default=",".join(CHECKS))
    args = parser.parse_args(argv)
    result = {"package": args.package, "checks": []}
    try:
        print(f"importing {args.package}", file=sys.stderr, flush=True)
        probe = Probe(args.package, args.cell_module, args.pristine)
        result["version"] = getattr(probe.keras, "__version__", "?")
        backend = getattr(probe.keras, "backend", None)
        result["backend"] = backend.backend() if hasattr(backend, "backend") else "tensorflow"
    except Exception as error:  # reported as a failed check, never a traceback
        result["checks"].append({"name": "import", "passed": False, "detail": _describe(error), "value": None})
        print(json.dumps(result))
        return 0
    for name in args.checks.split(","):
        print(f"check {name}", file=sys.stderr, flush=True)
        try:
            passed, detail, value = getattr(probe, f"check_{name}")()
        except Exception as error:
            passed, detail, value = False, _describe(error), None
        result["checks"].append({"name": name, "passed": bool(passed), "detail": detail, "value": value})
    print(json.dumps(result))
    return 0


def _describe(error: BaseException) -> str:
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
    return f"{type(error).__name__}: {error}{where}".splitlines()[0][:300]


if __name__ == "__main__":
    sys.exit(main())
