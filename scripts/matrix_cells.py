"""The compatibility matrix's catalogue: which cells exist, what each installs, which run.

A cell is a Keras version with its backend and interpreter (see scripts/matrix.py).
The versions and each version's layer sets come from the hash pins
(patches/pins/, read with patcher.pins); nothing here runs a cell.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the checkout's patcher, whichever one is installed
    sys.path.insert(1, str(REPO))

import venvs  # scripts/venvs.py: throwaway venvs that see the running interpreter's packages
import wheels  # scripts/wheels.py: version order

from patcher.layersets import LayerSet, ordered  # the layer-set registry; no Keras import
from patcher.pins import load_pins

SYSTEM_TF = "2.21"
ALL_SETS = tuple(LayerSet)
# The canary: the newest keras-nightly, a distribution of its own that installs
# the `keras` package (the tool knows it as keras_nightly, `--only keras`).
NIGHTLY_PROJECT = "keras-nightly"
# What a shared cell runs on. pip finds it among the running interpreter's
# packages when they hold it (README's `pip install ".[test]"` brings TensorFlow
# 2.21; .ci/run's backend pass installs these torch and JAX releases), else it
# installs it into the cell. Installed before the cell's Keras, in a resolve of
# its own: TensorFlow 2.21 requires keras>=3.12, and older Keras 3 cells then
# put their own Keras beside it.
BACKEND_PACKAGES = {
    "tensorflow": [f"tensorflow=={SYSTEM_TF}.*"],
    "torch": ["torch==2.13.0"],  # the CPU wheel (a plain `torch` is a multi-GB CUDA build)
    "jax": ["jax==0.10.2", "jaxlib==0.10.2"],  # shares TensorFlow 2.21's numpy and ml_dtypes
}

# TensorFlow 2.7 and 2.8 ask for numpy>=1.14.5 / >=1.20 with no upper bound, but
# are built against NumPy 1: under NumPy 2 (what pip picks) importing them fails
# ("TypeError: Unable to convert function return value to a Python type!").
NUMPY_1 = "numpy<2"

# Multi-backend Keras on Python 3.11 (harness only, in the venv's sitecustomize.py).
THEANO_SITECUSTOMIZE = """\
# Written by convlstm-patch's scripts/matrix.py into this throwaway venv only:
# lets Keras 2.0-2.3 and Theano 1.0.5 import on Python 3.11.
import collections
import collections.abc
import os
import sys

for _name in ("Iterable", "Mapping", "Sequence", "Callable", "MutableMapping"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))
# Theano's scan Cython extension does not build on 3.11: run scan in Python.
sys.modules.setdefault("theano.scan_module.scan_perform_ext", None)
os.environ.setdefault("KERAS_BACKEND", "theano")
os.environ.setdefault("THEANO_FLAGS", "blas.ldflags=-lopenblas,base_compiledir={venv}/.theano")
"""

# keras 2.9-2.11 on TensorFlow 2.12 (their own TensorFlow has no Python 3.11 wheels).
ARGSPEC_SITECUSTOMIZE = """\
# Written by convlstm-patch's scripts/matrix.py into this throwaway venv only:
# inspect.ArgSpec and getargspec were removed in Python 3.11; keras 2.9-2.11 use
# them. Their generated *_pb2 modules predate protobuf 4 (TensorFlow 2.12's):
# use protobuf's pure-Python implementation, which still loads them.
import collections
import inspect
import os

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

if not hasattr(inspect, "ArgSpec"):
    inspect.ArgSpec = collections.namedtuple("ArgSpec", "args varargs keywords defaults")
if not hasattr(inspect, "getargspec"):
    def getargspec(func):
        spec = inspect.getfullargspec(func)
        return inspect.ArgSpec(spec.args, spec.varargs, spec.varkw, spec.defaults)
    inspect.getargspec = getargspec
"""


class StepFailed(Exception):
    """A cell's step failed: the cell's result says which and why."""


@dataclass
class Cell:
    id: str
    distribution: str  # keras or tf_keras
    version: str
    backend: str  # tensorflow, torch, jax, theano, or "-" for transform-only
    kind: str  # "run" or "transform"
    generation: str
    packages: list[str] = field(default_factory=list)  # pip install into the venv
    shared: bool = False  # sees the running interpreter's packages (its TensorFlow, torch, JAX): scripts/venvs.py
    after: list[str] = field(default_factory=list)  # pip install --no-deps afterwards
    sitecustomize: str = ""
    reason: str = ""  # why a transform-only cell does not run
    note: str = ""  # how a run cell differs from a user's setup
    sample: bool = False
    # The Python ("3.9") whose interpreter makes the venv; "" for the running one.
    python: str = ""
    # The layer sets apply patches (--layers): those the version's pins list.
    layer_sets: tuple[LayerSet, ...] = ()
    # A moving target (keras-nightly): its version is whatever pip installs
    # today; run only when named, upgraded and rerun whenever selected.
    canary: bool = False

    @property
    def package(self) -> str:
        """The import package (`--only`): a nightly distribution installs the release's."""
        return self.distribution.removesuffix("_nightly")

    @property
    def shared_folders(self) -> list[str]:
        return venvs.running_site_packages() if self.shared else []

    @property
    def venv(self) -> Path:
        # Named for what it is built from (its Python, what pip installs): a venv
        # built for another recipe is never reused.
        recipe = json.dumps([self.python, self.packages, self.after])
        name = f"matrix-{self.id}-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}"
        return venvs.folder(name, self.shared_folders)

    def base_python(self) -> Path | None:
        """The interpreter that makes the venv (None: the running one)."""
        if not self.python:
            return None
        found = venvs.interpreter(self.python)
        if found is None:
            raise StepFailed(
                f"no Python {self.python} interpreter found (pyenv install {self.python}, or put "
                f"python{self.python} on PATH)"
            )
        return found


def pinned_layer_sets(distribution: str, version: str) -> tuple[LayerSet, ...]:
    """The layer sets the version's hash pins list (none for one they record as unsupported)."""
    pins = load_pins(distribution, version)
    if pins is None:
        raise FileNotFoundError(f"no hash pins for {distribution} {version} (python scripts/update_pins.py)")
    return ordered(LayerSet(name) for name in pins.layer_sets)


def newest_per_minor(versions: list[str], low: tuple[int, int], high: tuple[int, int]) -> list[str]:
    newest: dict[tuple[int, int], str] = {}
    for version in sorted(versions, key=wheels.version_key):
        minor = wheels.version_key(version)[:2]
        if low <= minor <= high:
            newest[minor] = version  # in version order: the last one wins
    return [newest[minor] for minor in sorted(newest)]


def minor_of(version: str) -> str:
    return ".".join(version.split(".")[:2])


def cells() -> list[Cell]:
    keras = wheels.known_versions("keras")
    found: list[Cell] = []
    # Keras 3 on TensorFlow 2.21 (the running interpreter's, see BACKEND_PACKAGES);
    # the newest also on torch and JAX.
    keras3 = newest_per_minor(keras, (3, 0), (3, 99))
    for version in keras3:
        sample = version in (keras3[0], keras3[-1])
        found.append(Cell(f"keras-{version}", "keras", version, "tensorflow", "run", "Keras 3", sample=sample))
    for backend in ("torch", "jax"):
        found.append(Cell(f"keras-{keras3[-1]}-{backend}", "keras", keras3[-1], backend, "run", "Keras 3"))
    for cell in found:
        cell.packages, cell.shared = [f"keras=={cell.version}"], True
    # tf_keras with its matching TensorFlow (2.21: the running interpreter's).
    for version in newest_per_minor(wheels.known_versions("tf_keras"), (2, 15), (2, 99)):
        cell = Cell(f"tf_keras-{version}", "tf_keras", version, "tensorflow", "run", "tf_keras")
        if minor_of(version) == SYSTEM_TF:
            cell.packages, cell.shared, cell.sample = [f"tf_keras=={version}"], True, True
        else:
            cell.packages = [f"tensorflow=={minor_of(version)}.*", f"tf_keras=={version}"]
        found.append(cell)
    # keras 2.12-2.15 with their TensorFlow (which pins them).
    for version in newest_per_minor(keras, (2, 12), (2, 15)):
        packages = [f"tensorflow-cpu=={minor_of(version)}.*", f"keras=={version}"]
        found.append(Cell(f"keras-{version}", "keras", version, "tensorflow", "run", "keras 2.12-2.15", packages))
    # keras 2.6-2.8 on their own TensorFlow under Python 3.9 (TensorFlow 2.6 and
    # 2.7 have wheels up to 3.9, 2.8 up to 3.10); the last patch of each
    # TensorFlow release pins its keras and protobuf itself, not NumPy (below).
    for version in newest_per_minor(keras, (2, 6), (2, 8)):
        packages = [f"tensorflow-cpu=={minor_of(version)}.*", f"keras=={version}", NUMPY_1]
        note = (
            f"on Python 3.9, the tool on its own Python with --python pointing there; {NUMPY_1}, as "
            "TensorFlow 2.7/2.8 need but do not say"
        )
        cell = Cell(f"keras-{version}", "keras", version, "tensorflow", "run", "keras 2.6-2.8", packages)
        cell.python, cell.note = "3.9", note
        found.append(cell)
    # keras 2.9-2.11: their TensorFlow has no Python 3.11 wheels; run them on
    # TensorFlow 2.12, the oldest with Python 3.11 wheels, and say so.
    for version in newest_per_minor(keras, (2, 9), (2, 11)):
        why = f"TensorFlow {minor_of(version)} has no Python 3.11 wheels, only up to 3.10"
        cell = Cell(f"keras-{version}", "keras", version, "tensorflow", "run", "keras 2.9-2.11")
        cell.packages, cell.after = ["tensorflow-cpu==2.12.*"], [f"keras=={version}"]
        cell.sitecustomize = ARGSPEC_SITECUSTOMIZE
        cell.note = (
            f"on TensorFlow 2.12, not its own ({why}); harness shims in the venv: inspect.ArgSpec/getargspec, "
            "pure-Python protobuf"
        )
        found.append(cell)
    # keras 2.4: only re-exports TensorFlow's copy, nothing to patch.
    reason = "keras 2.4 only re-exports tensorflow.keras: no ConvLSTM source of its own (apply exits 4)"
    found.append(Cell("keras-2.4.3", "keras", "2.4.3", "-", "transform", "keras 2.4", reason=reason))
    # Multi-backend Keras 2.0-2.3 on Theano 1.0.5.
    theano = ["Theano==1.0.5", "numpy<1.24", "scipy<1.11"]
    for version in ("2.0.9", "2.1.4", "2.1.6", "2.2.4", "2.2.5", "2.3.1"):
        cell = Cell(f"keras-{version}", "keras", version, "theano", "run", "keras 2.0-2.3 (multi-backend)")
        cell.packages, cell.sample = [f"keras=={version}", *theano], version == "2.2.4"
        cell.sitecustomize = THEANO_SITECUSTOMIZE
        cell.note = "Theano 1.0.5, OpenBLAS; harness shims in the venv: collections ABC aliases, scan in Python"
        found.append(cell)
    for cell in found:
        cell.layer_sets = pinned_layer_sets(cell.distribution, cell.version)
    # The canary: no pins (unreleased), so it runs every set there is; a set the
    # nightly lost is a failed cell, which is what a canary is for.
    canary = Cell("keras-nightly", "keras_nightly", "newest", "tensorflow", "run", "Keras nightly (canary)")
    canary.packages, canary.shared, canary.canary, canary.layer_sets = ["--pre", NIGHTLY_PROJECT], True, True, ALL_SETS
    canary.note = f"canary: the newest `pip install --pre {NIGHTLY_PROJECT}` when it ran; not in --all or --sample"
    found.append(canary)
    return found


def layers_option(layer_sets: tuple[LayerSet, ...]) -> list[str]:
    """apply's --layers for these sets (none: the version supports none, and apply says so)."""
    return ["--layers", ",".join(map(str, layer_sets))] if layer_sets else []


def priority(cell: Cell) -> int:
    """Run order: the CI sample (the blog's keras 2.2.4 first), keras 2.12-2.15, then the rest."""
    if cell.sample:
        return 0 if cell.backend == "theano" else 1
    if cell.generation == "keras 2.12-2.15":
        return 2
    return 3 if cell.kind == "run" else 4


def select(everything: list[Cell], every: bool, sample: bool, names: str | None) -> list[Cell] | str:
    """The cells --all, --sample or --cells name (a string: what is wrong with --cells).
    The canary only by name: neither the full run nor CI's sample may follow a moving target."""
    if every:
        return [cell for cell in everything if not cell.canary]
    if sample:
        return [cell for cell in everything if cell.sample]
    wanted = [name.strip() for name in (names or "").split(",") if name.strip()]
    by_id = {cell.id: cell for cell in everything}
    unknown = [name for name in wanted if name not in by_id]
    if unknown:
        return f"unknown cells {', '.join(unknown)} (see --list)"
    return [by_id[name] for name in wanted]


def to_run(chosen: list[Cell], results: dict, rerun: bool, rerun_failed: bool) -> list[Cell]:
    """The chosen cells without a kept result. A canary's result says nothing about
    today's nightly: it always runs."""

    def kept(cell: Cell) -> bool:
        previous = results.get(cell.id)
        failed = bool(previous) and previous.get("outcome") == "failed"
        return bool(previous) and not cell.canary and not rerun and not (rerun_failed and failed)

    return [cell for cell in chosen if not kept(cell)]
