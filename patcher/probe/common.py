"""What the ConvLSTM probe and the LSTM/GRU probe share: Keras facts, errors, the main loop.

Each check a probe runs becomes one entry of its JSON document:
{"name", "layer_set", "passed", "detail", "value"}. ``layer_set`` ("convlstm",
"lstm" or "gru") says which layers it checked; the name is the check's
("api", "numerics", ...), prefixed by the layer set for LSTM and GRU ("lstm
api"), whose probe checks several sets in one process.

Runs in the user's interpreter: valid Python 3.6 with NumPy 1.13
(tests/test_probe_compat.py), nothing newer from the standard library.
"""

import importlib
import importlib.util
import os
import re
import sys
import traceback

import numpy as np

from . import answer, orphan

CONVLSTM = "convlstm"
# The per-gate activations ConvLSTM and LSTM gain.
FIVE = ("activation_i", "activation_o", "recurrent_activation_f", "recurrent_activation_i", "recurrent_activation_o")
# A distinct activation for each of the five, defined identically in every Keras version
# (hard_sigmoid is not).
DISTINCT = {
    "activation_i": "relu",
    "activation_o": "softsign",
    "recurrent_activation_f": "sigmoid",
    "recurrent_activation_i": "linear",
    "recurrent_activation_o": "tanh",
}
TOLERANCE = 1e-4  # the largest absolute difference from the NumPy reference that passes


def load_file(name, path, package):
    """The Python file at ``path`` imported as module ``name`` (a backed-up original of a Keras
    module: as one of ``package``, its relative imports resolve as the installed one's do)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load {} from {}".format(name, path))
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package  # Keras 2 modules import relatively (`from .. import backend`)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def keras_version(keras):
    return tuple(int(part) for part in re.findall(r"\d+", str(getattr(keras, "__version__", "3")))[:3])


def backend_of(keras):
    """The backend Keras computes with (multi-backend Keras 2 and Keras 3 say; else TensorFlow)."""
    backend = getattr(keras, "backend", None)
    return backend.backend() if backend is not None and hasattr(backend, "backend") else "tensorflow"


def numpy_converter(keras):
    """A function turning the layers' outputs into NumPy arrays (Keras 3 on torch hands back
    tensors that np.asarray refuses)."""
    return getattr(getattr(keras, "ops", None), "convert_to_numpy", np.asarray)


def default_gpu(backend):
    """The GPU Keras computes on by default under ``backend``, or None (the CPU). With one, TF32 is
    turned off: it rounds float32 matrix products to 10 bits, far beyond TOLERANCE. The backends
    are imported by name: whichever this interpreter has."""
    if backend == "torch":
        torch = importlib.import_module("torch")
        if not torch.cuda.is_available():
            return None
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        return "GPU " + torch.cuda.get_device_name(0)
    if backend == "jax":
        jax = importlib.import_module("jax")
        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        if not gpus:
            return None
        jax.config.update("jax_default_matmul_precision", "highest")
        return "GPU " + str(gpus[0])
    if backend == "tensorflow":
        tf = importlib.import_module("tensorflow")
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        tf.config.experimental.enable_tensor_float_32_execution(False)
        return "GPU " + gpus[0].name
    return None


def max_error(got, expected):
    """The largest absolute difference between a layer's outputs and the reference's."""
    if len(got) != len(expected):
        raise ValueError("the layer returned {} tensors, the reference {}".format(len(got), len(expected)))
    return max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))


def inheritance_verdict(worst, inherited):
    """The inheritance check's result: the per-gate activations left unset follow activation /
    recurrent_activation (``inherited``: they are the very same functions) and the layer matches the
    reference (``worst``: its largest error)."""
    passed = worst < TOLERANCE and inherited
    return passed, "unset activations follow activation/recurrent_activation, max abs error {:.2e}".format(worst), worst


def describe(error):
    """An exception in one line: its type, message and where it was raised."""
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = " at {}:{}".format(os.path.basename(last[0].filename), last[0].lineno) if last else ""
    return "{}: {}{}".format(type(error).__name__, error, where).splitlines()[0][:300]


def check_name(layer_set, check):
    """What the document calls a check: plain for ConvLSTM ("api"), else "<set> <check>"."""
    return check if layer_set == CONVLSTM else "{} {}".format(layer_set, check)


def entry(layer_set, check, passed, detail, value=None):
    """One check as the document gives it."""
    return {
        "name": check_name(layer_set, check),
        "layer_set": layer_set,
        "passed": bool(passed),
        "detail": detail,
        "value": value,
    }


def run_check(probe, check, result):
    """Run probe.check_<check> and add it to result; a check that raises has failed."""
    print("check {}".format(check_name(probe.layer_set, check)), file=sys.stderr, flush=True)
    try:
        passed, detail, value = getattr(probe, "check_{}".format(check))()
    except Exception as error:  # noqa: BLE001 - a check that raises has failed: reported, never a traceback
        passed, detail, value = False, describe(error), None
    result["checks"].append(entry(probe.layer_set, check, passed, detail, value))


def serve(package, site, checks, layer_sets, start):
    """A probe's main loop: import Keras and the layers (``start()``: the Keras package and the
    probes, one per layer set), run each check of each probe, print the document. Never raises:
    an import that fails is a failed check "import" of every layer set asked for."""
    orphan.exit_with_parent()
    if site:
        sys.path.insert(1, site)  # where PYTHONPATH would put it, after the script's folder
    result = {"checks": []}  # type: dict
    try:
        print("importing {}".format(package), file=sys.stderr, flush=True)
        keras, probes = start()
        result["backend"] = backend_of(keras)
    except Exception as error:  # noqa: BLE001 - reported as a failed check, never a traceback
        result["checks"] = [entry(layer_set, "import", False, describe(error)) for layer_set in layer_sets]
        answer.emit(result)
        return 0
    for probe in probes:
        for check in checks:
            run_check(probe, check, result)
    answer.emit(result)
    return 0
