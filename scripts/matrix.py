"""Compatibility matrix: run the real product path on every Keras generation.

    python scripts/matrix.py --all              # every cell (resumes: finished cells are kept)
    python scripts/matrix.py --sample           # the CI sample
    python scripts/matrix.py --cells keras-2.2.4,tf_keras-2.21.0 [--rerun]
    python scripts/matrix.py --cells keras-nightly  # the canary: today's keras-nightly
    python scripts/matrix.py --list

A cell is a Keras version with its backend and interpreter: the running one
(Python 3.11 here), or for keras 2.6-2.8 Python 3.9 (pyenv's, else python3.9 on
PATH: scripts/venvs.py), the newest their own TensorFlow has wheels for. For
each *run* cell the script builds (or reuses) a throwaway venv under the
tool's env cache ($CONVLSTM_PATCH_ENV_CACHE, else ~/.cache/convlstm-patch/venvs)
and runs, with that venv's python (the tool itself runs on the running
interpreter, as a user's pipx or tools venv does):

    convlstm-patch apply --python VENV/bin/python --only PACKAGE --layers SETS   (with verification)
    convlstm-patch check ...                                      (the hash pins)
    the version's own tests of those layers, if its wheel ships them (patched)
    convlstm-patch revert ...
    every file the distribution's RECORD lists has its RECORD sha256 again

SETS are every layer set the version supports, as its hash pins lists them
(patches/pins/DIST/VERSION.json, `layer_sets`): convlstm,lstm,gru where LSTM
and GRU sit beside the ConvLSTM files, convlstm alone on keras 2.0-2.8. The
cell fails if `status` says the version supports other sets than its lock, or
if the verification has no passing checks for one of them; each result records
the sets run-verified (`verified_sets`).

The *canary* cell keras-nightly (the newest `pip install --pre keras-nightly`,
a distribution that installs the `keras` package, on the running TensorFlow)
runs only when named (`--cells keras-nightly`), never in --all or --sample:
neither may depend on a moving target. It is upgraded and rerun whenever
selected, records the version pip installed, and accepts `check`'s exit 10
(no hash pins for an unreleased version); apply's verification and the RECORD
comparison after revert must pass as everywhere.

The Keras 3 cells and tf_keras 2.21 *share* the running interpreter's packages
(scripts/venvs.py: a .pth file, never --system-site-packages, which would show
the base interpreter's): pip takes their backend (TensorFlow 2.21, torch, JAX)
from there when it is installed, else installs it into the cell; the cell's
own Keras comes first. Every other cell installs its whole stack itself.

A *transform-only* cell (a version that cannot run on this machine; today
only keras 2.4, which has nothing to patch) runs apply --no-verify, check and
revert on its unpacked wheel (--keras-root) and records why it could not run.
Cells run two at a time (--jobs); results go to
OUT/matrix.json after every cell and OUT/matrix.md at the end. Multi-backend
Keras (2.0-2.3) runs on Theano 1.0.5 with three import-time shims for Python
3.11 placed in the venv's own sitecustomize.py, never in the product.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(1, str(REPO))
import venvs  # noqa: E402  (scripts/venvs.py: throwaway venvs that see the running interpreter's packages)
import wheels  # noqa: E402  (scripts/wheels.py: the wheel cache of update_pins)
from patcher.layersets import BASE, LayerSet, ordered  # noqa: E402  (the layer-set registry; no Keras import)
from patcher.environment import record_entries  # noqa: E402  (RECORD's rows; no Keras import)

DEFAULT_OUT = REPO / "docs" / "matrix"
SYSTEM_TF = "2.21"
OWN_TEST_TIMEOUT = 900.0
ALL_SETS = tuple(LayerSet)
# The canary: the newest keras-nightly, a distribution of its own that installs
# the `keras` package (the tool knows it as keras_nightly, `--only keras`).
NIGHTLY_PROJECT = "keras-nightly"
# Besides each set's own layers, the wheel's tests of the wrapper its files
# include (Bidirectional, which reaches the fused LSTM/GRU kernels).
OWN_TEST_FILES = {
    LayerSet.LSTM: ("lstm_test.py", "bidirectional_test.py"),
    LayerSet.GRU: ("gru_test.py", "bidirectional_test.py"),
}
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
THEANO_SITECUSTOMIZE = '''\
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
'''

# keras 2.9-2.11 on TensorFlow 2.12 (their own TensorFlow has no Python 3.11 wheels).
ARGSPEC_SITECUSTOMIZE = '''\
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
'''


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
    # The layer sets apply patches (--layers): those the version's lock lists.
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
        return venvs.folder(f"matrix-{self.id}-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}", self.shared_folders)

    def base_python(self) -> Path | None:
        """The interpreter that makes the venv (None: the running one)."""
        if not self.python:
            return None
        found = venvs.interpreter(self.python)
        if found is None:
            raise StepFailed(f"no Python {self.python} interpreter found (pyenv install {self.python}, or put "
                             f"python{self.python} on PATH)")
        return found


def locked_versions(distribution: str) -> list[str]:
    folder = REPO / "patches" / "pins" / distribution
    return sorted((path.stem for path in folder.glob("*.json")), key=wheels.version_key)


def locked_layer_sets(distribution: str, version: str) -> tuple[LayerSet, ...]:
    """The layer sets the version's hash pins lists (none for one it records as unsupported)."""
    lock = json.loads((REPO / "patches" / "pins" / distribution / f"{version}.json").read_text())
    return ordered(LayerSet(name) for name in lock["layer_sets"])


def newest_per_minor(versions: list[str], low: tuple[int, int], high: tuple[int, int]) -> list[str]:
    newest: dict[tuple[int, int], str] = {}
    for version in versions:
        minor = wheels.version_key(version)[:2]
        if low <= minor <= high:
            newest[minor] = version  # versions are sorted: the last one wins
    return [newest[minor] for minor in sorted(newest)]


def cells() -> list[Cell]:
    keras = locked_versions("keras")
    tf_keras = locked_versions("tf_keras")
    found: list[Cell] = []
    # Keras 3 on TensorFlow 2.21 (the running interpreter's, see BACKEND_PACKAGES);
    # the newest also on torch and JAX.
    keras3 = newest_per_minor(keras, (3, 0), (3, 99))
    for version in keras3:
        found.append(
            Cell(f"keras-{version}", "keras", version, "tensorflow", "run", "Keras 3",
                 packages=[f"keras=={version}"], shared=True,
                 sample=version in (keras3[0], keras3[-1]))
        )
    for backend in ("torch", "jax"):
        version = keras3[-1]
        found.append(
            Cell(f"keras-{version}-{backend}", "keras", version, backend, "run", "Keras 3",
                 packages=[f"keras=={version}"], shared=True)
        )
    # tf_keras with its matching TensorFlow (2.21: the running interpreter's).
    tf_keras_versions = newest_per_minor(tf_keras, (2, 15), (2, 99))
    for version in tf_keras_versions:
        minor = ".".join(version.split(".")[:2])
        if minor == SYSTEM_TF:
            cell = Cell(f"tf_keras-{version}", "tf_keras", version, "tensorflow", "run", "tf_keras",
                        packages=[f"tf_keras=={version}"], shared=True, sample=True)
        else:
            cell = Cell(f"tf_keras-{version}", "tf_keras", version, "tensorflow", "run", "tf_keras",
                        packages=[f"tensorflow=={minor}.*", f"tf_keras=={version}"])
        found.append(cell)
    # keras 2.12-2.15 with their TensorFlow (which pins them).
    for version in newest_per_minor(keras, (2, 12), (2, 15)):
        minor = ".".join(version.split(".")[:2])
        found.append(
            Cell(f"keras-{version}", "keras", version, "tensorflow", "run", "keras 2.12-2.15",
                 packages=[f"tensorflow-cpu=={minor}.*", f"keras=={version}"])
        )
    # keras 2.6-2.8 on their own TensorFlow under Python 3.9 (TensorFlow 2.6 and
    # 2.7 have wheels up to 3.9, 2.8 up to 3.10); the last patch of each
    # TensorFlow release pins its keras and protobuf itself, not NumPy (below).
    for version in newest_per_minor(keras, (2, 6), (2, 8)):
        minor = ".".join(version.split(".")[:2])
        found.append(
            Cell(f"keras-{version}", "keras", version, "tensorflow", "run", "keras 2.6-2.8",
                 packages=[f"tensorflow-cpu=={minor}.*", f"keras=={version}", NUMPY_1], python="3.9",
                 note=f"on Python 3.9, the tool on its own Python with --python pointing there; {NUMPY_1}, as "
                 "TensorFlow 2.7/2.8 need but do not say")
        )
    # keras 2.9-2.11: their TensorFlow has no Python 3.11 wheels; run them on
    # TensorFlow 2.12, the oldest with Python 3.11 wheels, and say so.
    for version in newest_per_minor(keras, (2, 9), (2, 11)):
        minor = ".".join(version.split(".")[:2])
        why = f"TensorFlow {minor} has no Python 3.11 wheels, only up to 3.10"
        found.append(
            Cell(f"keras-{version}", "keras", version, "tensorflow", "run", "keras 2.9-2.11",
                 packages=["tensorflow-cpu==2.12.*"], after=[f"keras=={version}"],
                 sitecustomize=ARGSPEC_SITECUSTOMIZE,
                 note=f"on TensorFlow 2.12, not its own ({why}); harness shims in the "
                 "venv: inspect.ArgSpec/getargspec, pure-Python protobuf")
        )
    # keras 2.4: only re-exports TensorFlow's copy, nothing to patch.
    found.append(
        Cell("keras-2.4.3", "keras", "2.4.3", "-", "transform", "keras 2.4",
             reason="keras 2.4 only re-exports tensorflow.keras: no ConvLSTM source of its own (apply exits 4)")
    )
    # Multi-backend Keras 2.0-2.3 on Theano 1.0.5.
    theano = ["Theano==1.0.5", "numpy<1.24", "scipy<1.11"]
    for version in ("2.0.9", "2.1.4", "2.1.6", "2.2.4", "2.2.5", "2.3.1"):
        found.append(
            Cell(f"keras-{version}", "keras", version, "theano", "run", "keras 2.0-2.3 (multi-backend)",
                 packages=[f"keras=={version}", *theano], sitecustomize=THEANO_SITECUSTOMIZE,
                 note="Theano 1.0.5, OpenBLAS; harness shims in the venv: collections ABC aliases, scan in Python",
                 sample=version == "2.2.4")
        )
    for cell in found:
        cell.layer_sets = locked_layer_sets(cell.distribution, cell.version)
    # The canary: no lock (unreleased), so it runs every set there is; a set the
    # nightly lost is a failed cell, which is what a canary is for.
    found.append(
        Cell("keras-nightly", "keras_nightly", "newest", "tensorflow", "run", "Keras nightly (canary)",
             packages=["--pre", NIGHTLY_PROJECT], shared=True, canary=True, layer_sets=ALL_SETS,
             note=f"canary: the newest `pip install --pre {NIGHTLY_PROJECT}` when it ran; not in --all or --sample")
    )
    return found


def layers_option(layer_sets: tuple[LayerSet, ...]) -> list[str]:
    """apply's --layers for these sets (none: the version supports none, and apply says so)."""
    return ["--layers", ",".join(map(str, layer_sets))] if layer_sets else []


# -- running -------------------------------------------------------------------

class Runner:
    def __init__(self, out: Path, timeout: float, own_tests: bool) -> None:
        self.out = out
        self.timeout = timeout
        self.own_tests = own_tests
        self.lock = threading.Lock()
        self.results = load_results(out)
        self.tool = tool_revision()

    def log(self, cell: Cell, message: str) -> None:
        with self.lock:
            print(f"[{time.strftime('%H:%M:%S')}] {cell.id}: {message}", flush=True)

    def save(self, cell: Cell, result: dict) -> None:
        with self.lock:
            # Merge into what is on disk: another run may have finished cells meanwhile.
            self.results = {**load_results(self.out), cell.id: result}
            write_json(self.out, self.results)

    def run_cell(self, cell: Cell) -> dict:
        started = time.monotonic()
        result = {
            "id": cell.id, "distribution": cell.distribution, "version": cell.version, "backend": cell.backend,
            "generation": cell.generation, "kind": cell.kind, "steps": [], **({"note": cell.note} if cell.note else {}),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "tool": self.tool, "layer_sets": [str(layer_set) for layer_set in cell.layer_sets],
            **({"canary": True} if cell.canary else {}),
        }
        try:
            if cell.kind == "run":
                self._run(cell, result)
            else:
                self._transform_only(cell, result)
        except StepFailed as failure:
            result["outcome"] = "failed"
            result["failure"] = str(failure)
        except Exception as error:  # a harness bug must not stop the other cells
            result["outcome"] = "failed"
            result["failure"] = f"harness error: {type(error).__name__}: {error}"
        result["seconds"] = round(time.monotonic() - started, 1)
        outcome = result["outcome"]
        detail = f" ({result.get('failure') or result.get('reason') or ''})" if outcome != "run-verified" else ""
        self.log(cell, f"{outcome} in {result['seconds']:.0f} s{detail}")
        self.save(cell, result)
        return result

    # A run cell: the real product path on the venv itself.
    def _run(self, cell: Cell, result: dict) -> None:
        python = self.environment(cell, result)
        env = cell_env(cell)
        args = ["--python", str(python), "--only", cell.package]
        site, record = self.locate(cell, result, args, env)
        try:
            # Exit 9: a check failed and apply rolled back; its reports say which (recorded).
            applied = self.cli(cell, result, "apply", ["apply", *args, *layers_option(cell.layer_sets), "--json",
                                                       "--timeout", str(self.timeout)], env, expect=(0, 9))
            document = json.loads(applied.stdout)
            result["verification"] = verification_of(document.get("verification", []))
            result["runtime"] = runtime_versions(python, env)
            if applied.returncode != 0:
                raise StepFailed(f"apply exited {applied.returncode}: {error_of(applied)}")
            if not result["verification"] or not all(report["passed"] for report in result["verification"]):
                raise StepFailed("apply did not report a passed verification")
            result["verified_sets"] = [str(layer_set) for layer_set in verified_sets(result["verification"])]
            unverified = [str(layer_set) for layer_set in cell.layer_sets if str(layer_set) not in result["verified_sets"]]
            if unverified:
                raise StepFailed(f"apply {' '.join(layers_option(cell.layer_sets))} verified no {unverified[0]} checks")
            # The canary's version has no lock: check exits 10 saying so (what it
            # verified then is its output, recorded); a drift is exit 1 as anywhere.
            checked = self.cli(cell, result, "check", ["check", *args, "--json"], env,
                               expect=(0, 10) if cell.canary else (0,))
            result["check"] = check_of(checked)
            if self.own_tests:
                self.own_test_run(cell, result, python, site, record, env)
        finally:
            # Also after a rolled-back apply (nothing to revert, exit 0): its files must be RECORD's too.
            self.cli(cell, result, "revert", ["revert", *args], env, expect=(0,))
            mismatched = record_mismatches(site, record)
            result["record_identical"] = not mismatched
        if mismatched:
            raise StepFailed(f"after revert {len(mismatched)} files differ from RECORD, e.g. {mismatched[0]}")
        own = result.get("own_tests")
        if own and own.get("new_failures"):
            raise StepFailed(f"the version's own tests fail only when patched: {own['new_failures'][:3]}")
        result["outcome"] = "run-verified"

    def _transform_only(self, cell: Cell, result: dict) -> None:
        result["reason"] = cell.reason
        archive = wheel_of(cell.distribution, cell.version)
        with tempfile.TemporaryDirectory(prefix="matrix-") as folder:
            site = Path(folder)
            wheels.extract(archive, site, wanted=set(all_package_files(archive)))
            args = ["--keras-root", str(site), "--only", cell.package]
            record = record_of(site, cell.distribution, cell.version)
            applied = self.cli(cell, result, "apply --no-verify",
                               ["apply", *args, *layers_option(cell.layer_sets), "--no-verify"], {}, expect=(0, 4))
            if applied.returncode == 4:  # unsupported: the message is the reason users see
                result["apply_says"] = last_line(applied.stderr or applied.stdout)
                result["outcome"] = "unsupported"
                return
            self.cli(cell, result, "check", ["check", *args], {}, expect=(0,))
            self.cli(cell, result, "revert", ["revert", *args], {}, expect=(0,))
            mismatched = record_mismatches(site, record)
            result["record_identical"] = not mismatched
            if mismatched:
                raise StepFailed(f"after revert {len(mismatched)} files differ from RECORD")
        result["outcome"] = "transform-only"

    def locate(self, cell: Cell, result: dict, args: list[str], env: dict) -> tuple[Path, dict]:
        """The venv's distribution folder and RECORD; refuses anything outside the venv, another
        distribution or version than the cell's, and sets other than its lock lists; pristine first."""
        status = self.cli(cell, result, "status", ["status", *args, "--json"], env, expect=(0,))
        (flavour,) = json.loads(status.stdout)["flavours"]
        site = Path(flavour["site"])
        if cell.venv.resolve() not in site.resolve().parents:
            raise StepFailed(f"{flavour['distribution']} found in {site}, outside the cell's venv: refusing to patch it")
        if flavour["distribution"] != cell.distribution or (not cell.canary and flavour["version"] != cell.version):
            raise StepFailed(f"status found {flavour['distribution']} {flavour['version']}, not the cell's "
                             f"{cell.distribution} {cell.version}")
        result["version"] = flavour["version"]  # the canary's: what pip installed today
        supported = list(flavour["layer_sets"]["supported"])
        result["supported_sets"] = supported
        if supported != [str(layer_set) for layer_set in cell.layer_sets]:
            raise StepFailed(f"status says {flavour['distribution']} {flavour['version']} supports "
                             f"{', '.join(supported) or 'no layer set'}; the cell runs "
                             f"{', '.join(map(str, cell.layer_sets))}" + ("" if cell.canary else " (its lock)"))
        if flavour["state"] != "pristine":  # an interrupted earlier run
            self.cli(cell, result, "revert (leftover)", ["revert", *args], env, expect=(0,))
        record = record_of(site, cell.distribution, flavour["version"])
        result["record_files"] = len(record)
        mismatched = record_mismatches(site, record)
        if mismatched:
            raise StepFailed(f"venv not pristine before apply: {len(mismatched)} files differ from RECORD, e.g. {mismatched[0]}")
        return site, record

    def environment(self, cell: Cell, result: dict) -> Path:
        """The cell's venv python, built on first use (a marker guards half-built ones)."""
        venv = cell.venv
        python = venv / "bin" / "python"
        if venvs.is_built(venv):
            result["steps"].append({"step": "venv", "seconds": 0.0, "note": "reused"})
            self.write_sitecustomize(cell, python)
            if cell.canary:  # today's nightly, not the one the venv was built with
                self.upgrade(cell, result, python)
            return python
        self.log(cell, f"building venv {venv}")
        started = time.monotonic()
        try:
            venvs.create(venv, cell.shared_folders, base=cell.base_python())
        except venvs.VenvError as error:
            raise StepFailed(f"venv: {error}") from None
        self.write_sitecustomize(cell, python)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--progress-bar=off"]
        if cell.shared:
            run_or_fail([*pip, *BACKEND_PACKAGES[cell.backend]], "pip install (backend)", 1800)
        run_or_fail([*pip, *cell.packages, *(["pytest"] if self.own_tests else [])], "pip install", 1800)
        # pip may find the version already among the shared packages: install
        # the cell's own copy, so the product never touches the running environment.
        # (The nightly is a distribution of its own: the shared folders hold none.)
        if cell.shared and not cell.canary:
            run_or_fail([*pip, "--ignore-installed", "--no-deps", f"{cell.distribution}=={cell.version}"],
                        "pip install", 900)
        if cell.after:
            run_or_fail([*pip, "--no-deps", *cell.after], "pip install", 900)
        venvs.mark_built(venv)
        seconds = round(time.monotonic() - started, 1)
        result["steps"].append({"step": "venv", "seconds": seconds, "note": "built"})
        self.log(cell, f"venv built in {seconds:.0f} s")
        return python

    def upgrade(self, cell: Cell, result: dict, python: Path) -> None:
        """The canary's newest nightly (its dependencies only where the installed ones no longer fit)."""
        self.log(cell, f"pip install --upgrade {' '.join(cell.packages)}")
        started = time.monotonic()
        run_or_fail([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--progress-bar=off",
                     "--upgrade", *cell.packages], "pip install --upgrade", 1800)
        result["steps"].append({"step": "pip upgrade", "seconds": round(time.monotonic() - started, 1)})

    @staticmethod
    def write_sitecustomize(cell: Cell, python: Path) -> None:
        """The harness shims, in the venv only (rewritten every run, so a fix reaches built venvs)."""
        if not cell.sitecustomize:
            return
        try:
            site = venvs.purelib(python).resolve()
        except venvs.VenvError as error:
            raise StepFailed(f"venv: {error}") from None
        if cell.venv.resolve() not in site.parents:
            raise StepFailed(f"the venv's site-packages resolved to {site}, outside {cell.venv}: not writing shims there")
        (site / "sitecustomize.py").write_text(cell.sitecustomize.format(venv=cell.venv))

    def cli(self, cell: Cell, result: dict, step: str, argv: list[str], env: dict, expect) -> subprocess.CompletedProcess:
        self.log(cell, step)
        started = time.monotonic()
        completed = subprocess.run(
            [sys.executable, "-m", "patcher", *argv], cwd=REPO, capture_output=True, text=True,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)}, timeout=self.timeout + 600,
        )
        seconds = round(time.monotonic() - started, 1)
        result["steps"].append({"step": step, "seconds": seconds, "exit": completed.returncode})
        if completed.returncode not in expect:
            raise StepFailed(f"{step} exited {completed.returncode}: {error_of(completed)}")
        return completed

    def own_test_run(self, cell: Cell, result: dict, python: Path, site: Path, record: dict, env: dict) -> None:
        tests = own_test_files(record, cell.layer_sets)
        if not tests:
            result["own_tests"] = {"shipped": False}
            return
        self.log(cell, f"own tests: {' '.join(Path(t).name for t in tests)}")
        patched = run_pytest(python, site, tests, env, OWN_TEST_TIMEOUT)
        own = {"shipped": True, "files": tests, "patched": patched["summary"], "seconds": patched["seconds"]}
        result["steps"].append({"step": "own tests", "seconds": patched["seconds"]})
        if patched["failed"]:
            # Are these failures ours? Run the same tests on the stock files.
            self.cli(cell, result, "revert (own-test baseline)", ["revert", "--python", str(python), "--only",
                     cell.package], env, expect=(0,))
            stock = run_pytest(python, site, tests, env, OWN_TEST_TIMEOUT)
            own["stock"] = stock["summary"]
            own["new_failures"] = sorted(set(patched["failed"]) - set(stock["failed"]))
            own["failing_on_stock_too"] = sorted(set(patched["failed"]) & set(stock["failed"]))
            self.cli(cell, result, "apply (after baseline)", ["apply", "--python", str(python), "--only",
                     cell.package, *layers_option(cell.layer_sets), "--no-verify"], env, expect=(0,))
        result["own_tests"] = own


def verification_of(reports: list[dict]) -> list[dict]:
    return [
        {"backend": report["backend"], "passed": report["passed"],
         "checks": {check["name"]: check["detail"] for check in report["checks"]},
         "failed": [check["name"] for check in report["checks"] if not check["passed"]]}
        for report in reports
    ]


def set_of_check(name: str) -> LayerSet:
    """The layer set a verification check belongs to: the LSTM/GRU probe names its checks
    "lstm api", "gru fused", ...; the ConvLSTM probe's are plain ("api")."""
    first = name.split(" ", 1)[0]
    return LayerSet(first) if " " in name and first in {str(layer_set) for layer_set in LayerSet} else BASE


def verified_sets(reports: list[dict]) -> tuple[LayerSet, ...]:
    """The layer sets every report has checks of, all passed (a report's checks, by name: see verification_of)."""
    verified = None
    for report in reports:
        present = {set_of_check(name) for name in report["checks"]}
        failed = {set_of_check(name) for name in report.get("failed", [])}
        ok = present - failed
        verified = ok if verified is None else verified & ok
    return ordered(verified or ())


def check_of(completed: subprocess.CompletedProcess) -> dict:
    """What `check --json` said: its exit, each flavour's status, and the problems it named."""
    try:
        results = json.loads(completed.stdout).get("results", [])
    except ValueError:
        results = []
    return {
        "exit": completed.returncode,
        "status": ", ".join(str(result.get("status")) for result in results) or "?",
        "problems": [problem for result in results for problem in result.get("problems", [])],
    }


def tool_revision() -> dict:
    """convlstm-patch's version and the checkout's commit (with "-dirty" when patcher/ or patches/ differ from it)."""
    from patcher import __version__

    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short=10", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--", "patcher", "patches"))
    return {"version": __version__, "commit": commit + ("-dirty" if dirty else "")}


class StepFailed(Exception):
    pass


def run_or_fail(command: list[str], step: str, timeout: float) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise StepFailed(f"{step} failed: {last_line(completed.stderr or completed.stdout)}")
    return completed


def cell_env(cell: Cell) -> dict[str, str]:
    env = {"KERAS_HOME": str(cell.venv / ".keras"), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    if cell.backend in ("tensorflow", "torch", "jax", "theano"):
        env["KERAS_BACKEND"] = cell.backend
    if cell.backend == "theano":
        env["THEANO_FLAGS"] = f"blas.ldflags=-lopenblas,base_compiledir={cell.venv}/.theano"
    return env


RUNTIME_CODE = """\
import importlib, json, platform, sys
found = {"python": platform.python_version()}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.import_module(name).__version__
    except Exception:
        pass
print(json.dumps(found))
"""


def runtime_versions(python: Path, env: dict) -> dict:
    """Python's, the backend's and NumPy's versions, as the venv imports them."""
    backend = env.get("KERAS_BACKEND")
    names = [backend, "numpy"] if backend in ("tensorflow", "theano", "torch", "jax") else ["numpy"]
    try:
        completed = subprocess.run([str(python), "-c", RUNTIME_CODE, *names], capture_output=True, text=True,
                                   timeout=300, env={**os.environ, **env})
        return json.loads(completed.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def run_pytest(python: Path, site: Path, tests: list[str], env: dict, timeout: float) -> dict:
    started = time.monotonic()
    report = Path(tempfile.mkstemp(prefix="matrix-junit-", suffix=".xml")[1])
    try:
        completed = subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
             *[str(site / test) for test in tests]],
            capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir(), env={**os.environ, **env},
        )
        summary = last_line(completed.stdout)
        failed = junit_failures(report)
    except subprocess.TimeoutExpired:
        summary, failed = f"timed out after {timeout:.0f} s", ["(timeout)"]
    finally:
        report.unlink(missing_ok=True)
    return {"summary": summary, "failed": failed, "seconds": round(time.monotonic() - started, 1)}


def junit_failures(path: Path) -> list[str]:
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return ["(no report)"]
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname')}::{case.get('name')}")
    return failed


def is_convlstm_test(path: str) -> bool:
    name = Path(path).name
    return name.endswith("_test.py") and ("conv_lstm" in name or name == "convolutional_recurrent_test.py")


def own_test_files(record: dict | list, layer_sets: tuple[LayerSet, ...]) -> list[str]:
    """The wheel's own tests of the cell's layer sets (RECORD paths): ConvLSTM's, and for
    LSTM/GRU their layers' and Bidirectional's, among the layer tests (`layers/` folders)."""
    names = {name for layer_set in layer_sets for name in OWN_TEST_FILES.get(layer_set, ())}
    return sorted(
        path for path in record
        if (BASE in layer_sets and is_convlstm_test(path))
        or (Path(path).name in names and "layers" in Path(path).parts)
    )


def record_of(site: Path, distribution: str, version: str) -> dict[str, str]:
    """RECORD path -> hex sha256, for every entry with a hash."""
    from importlib import metadata

    for dist in metadata.distributions(path=[str(site)]):
        if wheels.canonical(dist.metadata["Name"] or "") == distribution and dist.version == version:
            found = {}
            for entry in record_entries(dist).values():  # deleted files too: Python 3.12+'s dist.files drops them
                if entry.hash is not None and entry.hash.mode == "sha256":
                    digest = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
                    found[str(entry)] = digest.hex()
            return found
    raise StepFailed(f"no {distribution} {version} dist-info in {site}")


def record_mismatches(site: Path, record: dict[str, str]) -> list[str]:
    bad = []
    for relative, expected in record.items():
        try:
            digest = hashlib.sha256((site / relative).read_bytes()).hexdigest()
        except OSError:
            digest = None
        if digest != expected:
            bad.append(relative)
    return sorted(bad)


def wheel_of(distribution: str, version: str) -> Path:
    cache = wheels.cache_dir()
    have = wheels.cached(cache)
    if (distribution, version) not in have:
        failures = wheels.download([(distribution, version)], cache, jobs=1)
        if failures:
            raise StepFailed(failures[(distribution, version)])
        have = wheels.cached(cache)
    return have[(distribution, version)]


def all_package_files(archive: Path) -> list[str]:
    import zipfile

    if not archive.name.endswith(".whl"):
        raise StepFailed(f"{archive.name}: not a wheel")
    with zipfile.ZipFile(archive) as wheel:
        return [name for name in wheel.namelist() if not name.endswith("/")]


def error_of(completed: subprocess.CompletedProcess) -> str:
    """The tool's one-line error: with --json it is in the document (stderr has none), else stderr's last line."""
    try:
        return json.loads(completed.stdout)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return last_line(completed.stderr or completed.stdout)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:400] if lines else "no output"


# -- output ----------------------------------------------------------------------

def load_results(out: Path) -> dict:
    try:
        document = json.loads((out / "matrix.json").read_text())
        return {cell["id"]: cell for cell in document["cells"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_json(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    order = {cell.id: index for index, cell in enumerate(cells())}
    document = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "cells": sorted(results.values(), key=lambda cell: order.get(cell["id"], len(order))),
    }
    meta = out / "run.json"
    if meta.exists():
        document["run"] = json.loads(meta.read_text())
    temporary = out / "matrix.json.tmp"
    temporary.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    temporary.replace(out / "matrix.json")


BACKEND_LABEL = {"tensorflow": "TensorFlow", "torch": "PyTorch", "jax": "JAX", "theano": "Theano", "-": "-"}


def markdown(out: Path) -> str:
    document = json.loads((out / "matrix.json").read_text())
    run = document.get("run", {})
    lines = [
        "# Compatibility matrix",
        "",
        f"Generated by `scripts/matrix.py` from `matrix.json`. Last full run: {run.get('date', '?')}, "
        f"`{run.get('command', '?')}`, wall time {run.get('wall', '?')}; Python {document['machine']['python']} "
        f"on {document['machine']['cpus']} CPUs. Cells run since then (`--cells`, `--sample`) replaced their own "
        "rows: the column *run* gives each row's date and the convlstm-patch version and commit it ran with.",
        "",
        "**run-verified**: `apply --python VENV --layers SETS` with verification passed for every set (ConvLSTM: 5 "
        "checks; LSTM, GRU: 6 each, `fused` included), `check` ok, the version's own tests of those layers (where "
        "its wheel ships them: ConvLSTM's; LSTM's, GRU's and Bidirectional's) pass patched, `revert` restored every "
        "RECORD file byte for byte. SETS are the layer sets the version's hash pins lists; *layer sets* names those "
        "run-verified (rows run before LSTM/GRU joined the matrix ran ConvLSTM only). "
        "**transform-only**: the unpacked wheel was patched without verification, checked against its lock and "
        "reverted to RECORD; the reason it could not run is given. The canary row (keras-nightly) runs only when "
        "named: its version is the nightly of that day, which has no lock (`check` exits 10).",
        "",
        "| cell | generation | backend (version) | outcome | layer sets | verification | own tests | "
        "revert = RECORD | wall time | run | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    generations = {cell.id: cell.generation for cell in cells()}
    for cell in document["cells"]:
        cell["generation"] = generations.get(cell["id"], cell["generation"])
        runtime = cell.get("runtime", {})
        backend = BACKEND_LABEL.get(cell["backend"], cell["backend"])
        engine = runtime.get({"tensorflow": "tensorflow", "torch": "torch", "jax": "jax", "theano": "theano"}.get(cell["backend"], ""), "")
        backend_text = f"{backend} {engine}".strip()
        if cell["kind"] == "transform":
            backend_text = "-"
        if runtime.get("python") and runtime["python"] != document["machine"]["python"]:
            backend_text += f", Python {runtime['python']}"
        verification = "; ".join(
            f"{BACKEND_LABEL.get(report['backend'], report['backend'])}: "
            + (f"{len(report['checks'])}/{len(report['checks'])} passed" if report["passed"]
               else f"FAILED ({', '.join(report.get('failed', []))})")
            for report in cell.get("verification", [])
        ) or "-"
        own = cell.get("own_tests")
        if not own:
            own_text = "-"
        elif not own.get("shipped"):
            own_text = "not shipped"
        else:
            own_text = f"{own.get('patched', '?')} ({', '.join(Path(test).name for test in own.get('files', []))})"
            if own.get("failing_on_stock_too"):
                own_text += f" ({len(own['failing_on_stock_too'])} fail on stock too)"
        record = {True: "yes", False: "NO"}.get(cell.get("record_identical"), "-")
        checked = cell.get("check")
        check_text = (f"check: {checked['status']} (exit {checked['exit']}): {'; '.join(checked['problems'])}"
                      if checked and checked.get("exit") else "")
        note = "; ".join(filter(None, [cell.get("failure"), cell.get("apply_says"), cell.get("reason"), check_text,
                                       cell.get("note")]))
        lines.append(
            f"| {cell['distribution']} {cell['version']} | {cell['generation']} | {backend_text} | "
            f"**{cell['outcome']}** | {layer_sets_text(cell)} | {verification} | {own_text} | {record} | "
            f"{cell.get('seconds', '?')} s | {run_text(cell)} | {note.replace('|', '/')} |"
        )
    lines += ["", "## By generation", "", *summary(document["cells"])]
    return "\n".join(lines) + "\n"


def result_verified_sets(cell: dict) -> list[str]:
    """The sets a result run-verified: recorded since LSTM/GRU joined the matrix, else read off its checks."""
    if cell.get("outcome") != "run-verified":
        return []
    if "verified_sets" in cell:
        return cell["verified_sets"]
    return [str(layer_set) for layer_set in verified_sets(cell.get("verification", []))]


def layer_sets_text(cell: dict) -> str:
    verified = result_verified_sets(cell)
    if verified:
        return ", ".join(verified)
    if cell.get("outcome") == "transform-only" and cell.get("layer_sets"):
        return f"- (transform: {', '.join(cell['layer_sets'])})"
    return "-"


def run_text(cell: dict) -> str:
    """When a row ran and with which convlstm-patch (results from before it was recorded say so)."""
    tool = cell.get("tool")
    date = cell.get("date", "?").removesuffix(" UTC")
    return f"{date}, {tool['version']} @ {tool['commit']}" if tool else f"{date}, tool commit not recorded"


def summary(results: list[dict]) -> list[str]:
    """One row per generation: run-verified versions with backend and whether LSTM/GRU were run, the others with why."""
    rows = ["| generation | run-verified (backend) | LSTM/GRU | transform-only / unsupported, and why |",
            "|---|---|---|---|"]
    generations: dict[str, list[dict]] = {}
    for cell in results:
        generations.setdefault(cell["generation"], []).append(cell)
    for generation, group in generations.items():
        verified: dict[str, list[str]] = {}
        for cell in group:
            if cell["outcome"] == "run-verified":
                engine = BACKEND_LABEL.get(cell["backend"], cell["backend"])
                version = cell.get("runtime", {}).get(cell["backend"], "")
                label = f"{engine} {version}".strip()
                verified.setdefault(f"{cell['distribution']} {cell['version']}", []).append(label)
        verified_text = ", ".join(f"{name} ({'; '.join(labels)})" for name, labels in verified.items()) or "none"
        others = [
            f"{cell['distribution']} {cell['version']}: {cell['outcome']} ({cell.get('failure') or cell.get('reason') or ''})"
            for cell in group if cell["outcome"] != "run-verified"
        ]
        rows.append(f"| {generation} | {verified_text} | {rnn_summary(group)} | {'; '.join(others) or '-'} |")
    return rows


def rnn_summary(group: list[dict]) -> str:
    """Whether a generation's LSTM and GRU were run-verified: in every cell of it, some, or none (and why)."""
    supported = {cell.id for cell in cells() if {LayerSet.LSTM, LayerSet.GRU} <= set(cell.layer_sets)}
    cells_with = [cell for cell in group if cell["id"] in supported or cell.get("canary")]
    if not cells_with:
        with_base = {cell.id for cell in cells() if BASE in cell.layer_sets}
        return "not supported: ConvLSTM only" if any(cell["id"] in with_base for cell in group) else "-"
    rnn = {str(LayerSet.LSTM), str(LayerSet.GRU)}
    done = [cell for cell in cells_with if rnn <= set(result_verified_sets(cell))]
    if len(done) == len(cells_with):
        return f"**run-verified** in all {len(done)} cells"
    rest = [cell for cell in cells_with if cell not in done]
    older = [cell["id"] for cell in rest if cell["outcome"] == "run-verified"]
    other = [f"{cell['id']} ({cell['outcome']})" for cell in rest if cell["outcome"] != "run-verified"]
    ran = f" ({', '.join(cell['id'] for cell in done)})" if done else ""
    parts = [f"run-verified in {len(done)} of {len(cells_with)} cells{ran}"]
    if older:
        parts.append(f"ConvLSTM only, run before LSTM/GRU joined the matrix: {', '.join(older)}")
    if other:
        parts.append(f"not run-verified: {', '.join(other)}")
    return "; ".join(parts)


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
        return bool(previous) and not cell.canary and not rerun and not (rerun_failed and previous.get("outcome") == "failed")

    return [cell for cell in chosen if not kept(cell)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every cell but the canary (keras-nightly)")
    which.add_argument("--sample", action="store_true", help="the CI sample (Theano 2.2.4, oldest/newest Keras 3, tf_keras)")
    which.add_argument("--cells", help="comma-separated cell ids (see --list)")
    which.add_argument("--list", action="store_true", help="print the cells and exit")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where matrix.json/md go (default {DEFAULT_OUT})")
    parser.add_argument("--jobs", type=int, default=2, help="cells at a time (default 2)")
    parser.add_argument("--rerun", action="store_true", help="rerun cells that already have a result")
    parser.add_argument("--rerun-failed", action="store_true", help="rerun cells whose result is 'failed'")
    parser.add_argument("--no-own-tests", action="store_true", help="skip the versions' own tests of the layers")
    parser.add_argument("--timeout", type=float, default=1200, help="per verification / own-test run (s)")
    args = parser.parse_args(argv)

    everything = cells()
    if args.list:
        for cell in everything:
            extra = f"  ({cell.reason})" if cell.reason else ""
            tags = "".join(f"  [{tag}]" for tag, on in (("sample", cell.sample), ("canary", cell.canary)) if on)
            sets = ",".join(map(str, cell.layer_sets)) or "-"
            print(f"{cell.id:<24} {cell.kind:<9} {cell.backend:<10} {sets:<17} {cell.generation}{tags}{extra}")
        return 0
    chosen = select(everything, args.all, args.sample, args.cells)
    if isinstance(chosen, str):
        parser.error(chosen)

    runner = Runner(args.out, args.timeout, own_tests=not args.no_own_tests)
    todo = to_run(chosen, runner.results, args.rerun, args.rerun_failed)
    for cell in chosen:
        if cell not in todo:
            previous = runner.results[cell.id]
            print(f"{cell.id}: kept ({previous.get('outcome')}, {previous.get('date')}; --rerun to run again)")
    print(f"{len(todo)} of {len(chosen)} cells to run, {args.jobs} at a time; venvs in {venvs.cache_dir()}", flush=True)
    todo.sort(key=priority)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(runner.run_cell, todo))
    wall = time.monotonic() - started
    if args.all:
        run = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python scripts/matrix.py --all" + (" --rerun" if args.rerun else ""),
            "wall": f"{wall / 60:.0f} min" + ("" if args.rerun or len(todo) == len(chosen) else " (resumed run)"),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
        write_json(args.out, runner.results)
    if (args.out / "matrix.json").exists():
        (args.out / "matrix.md").write_text(markdown(args.out))
    failed = [result["id"] for result in results if result["outcome"] == "failed"]
    print(f"{len(results)} cells in {wall:.0f} s; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
