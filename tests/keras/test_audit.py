"""audit: every use of a fused LSTM/GRU kernel in a Keras package sits under the
patch's guard, or is named (file:line) as not.

On the session's pristine keras and tf_keras (read only, never imported) and on
throwaway copies of keras with calls added. The audit reads text: no TensorFlow.
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import pytest
from helpers import Session

from patcher.audit import Coverage, audit, uncovered
from patcher.layersets import LayerSet
from patcher.transform import transform_source

RNN = frozenset({LayerSet.LSTM, LayerSet.GRU})
# What `apply --layers lstm,gru` rewrites in Keras 3 and tf_keras (bidirectional.py: Keras 3.15+).
RNN_FILES = {
    "src/layers/rnn/lstm.py": ({"LSTMCell": "cell", "LSTM": "layer"}, [LayerSet.LSTM]),
    "src/layers/rnn/gru.py": ({"GRUCell": "cell", "GRU": "layer"}, [LayerSet.GRU]),
    "src/layers/rnn/bidirectional.py": ({"Bidirectional": "wrapper"}, [LayerSet.LSTM, LayerSet.GRU]),
}


def package_dir(package: str) -> Path:
    return Session.pristine_site / package


def patched_texts(folder: Path, package: str, sets=RNN) -> dict[str, str]:
    """The patched text of the package's LSTM/GRU files, by site-relative path."""
    texts = {}
    for relative, (_targets, layer_sets) in RNN_FILES.items():
        source = (folder / relative).read_text(encoding="utf-8")
        if relative.endswith("bidirectional.py") and "_can_attempt_fused_" not in source:
            continue  # before Keras 3.15 Bidirectional has no fused path
        chosen = tuple(layer_set for layer_set in layer_sets if layer_set in sets)
        if chosen:
            texts[f"{package}/{relative}"] = _transformed(source, relative, chosen)
    return texts


@functools.cache
def _transformed(source: str, relative: str, layer_sets: tuple[LayerSet, ...]) -> str:
    """The transform of one file (once per session: the copies share the pristine sources)."""
    return transform_source(source, RNN_FILES[relative][0], layer_sets=layer_sets).code


def lines_of(text: str, pattern: str) -> list[int]:
    return [number for number, line in enumerate(text.splitlines(), 1) if re.search(pattern, line)]


@pytest.mark.parametrize("package", ["keras", "tf_keras"])
def test_patched_package_is_fully_covered(package):
    sites = audit(package_dir(package), package, patched_texts(package_dir(package), package))
    assert sites, "found no fused kernel at all"
    assert [str(site) for site in sites if not site.covered] == []


def test_pristine_keras3_is_not_covered():
    folder = package_dir("keras")
    sites = audit(folder, "keras")
    expected = set()
    for relative, pattern, layer_set in [
        ("src/layers/rnn/lstm.py", r"\bbackend\.(rnn\.)?(lstm|cudnn_ok)\(", LayerSet.LSTM),
        ("src/layers/rnn/gru.py", r"\bbackend\.(rnn\.)?(gru|cudnn_ok)\(", LayerSet.GRU),
        ("src/layers/rnn/bidirectional.py", r"\bbackend\.(rnn\.)?bidirectional_lstm\(", LayerSet.LSTM),
        ("src/layers/rnn/bidirectional.py", r"\bbackend\.(rnn\.)?bidirectional_gru\(", LayerSet.GRU),
    ]:
        text = (folder / relative).read_text(encoding="utf-8")
        expected |= {(f"keras/{relative}", line, layer_set) for line in lines_of(text, pattern)}
    assert len(expected) >= 4
    found = {(site.path, site.line, layer_set) for site in uncovered(sites, RNN) for layer_set in site.layer_sets}
    assert found == expected


def test_pristine_tf_keras_is_not_covered():
    folder = package_dir("tf_keras")
    bad = uncovered(audit(folder, "tf_keras"), RNN)
    for name, kernels in [("lstm", ("gpu_lstm", "standard_lstm")), ("gru", ("gpu_gru", "standard_gru"))]:
        path = f"tf_keras/src/layers/rnn/{name}.py"
        text = (folder / "src/layers/rnn" / f"{name}.py").read_text(encoding="utf-8")
        here = {(site.line, site.entry) for site in bad if site.path == path}
        (flag_line,) = lines_of(text, r"self\._could_use_gpu_kernel = ")
        assert (flag_line, "self._could_use_gpu_kernel") in here
        for kernel in kernels:
            assert {line for line, entry in here if entry == kernel} == set(lines_of(text, rf"= {kernel}\(")), kernel
    # The kernels' own code and the fused-only CuDNN layers are not findings.
    assert not [site for site in bad if "cudnn_" in site.path or "gru_lstm_utils" in site.path]


def test_lstm_set_alone_leaves_grus_sites_to_stock():
    folder = package_dir("keras")
    sites = audit(folder, "keras", patched_texts(folder, "keras", sets={LayerSet.LSTM}))
    assert uncovered(sites, {LayerSet.LSTM}) == []
    assert uncovered(sites, {LayerSet.GRU}), "GRU's fused paths are not guarded by the LSTM set"


def test_allow_listed_and_kernel_sites_say_why():
    sites = audit(package_dir("tf_keras"), "tf_keras")
    allowed = [site for site in sites if site.coverage == Coverage.ALLOWED]
    assert {Path(site.path).name for site in allowed} == {"cudnn_lstm.py", "cudnn_gru.py"}
    assert all("cuDNN-only by design" in site.why for site in allowed)
    kernel = [site for site in sites if site.coverage == Coverage.KERNEL]
    assert any("inside the kernel definition lstm_with_backend_selection" in site.why for site in kernel)


class KerasCopy:
    """A throwaway copy of the session's pristine keras package (sources only), shared by a
    module's tests: each test's changes are undone after it (copying 500 files each time is slow)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._originals: dict[Path, str | None] = {}

    def add(self, relative: str, code: str) -> tuple[str, int]:
        """Append ``code`` to a module (creating it); the site path and the line marked ``# here``."""
        before = self._keep(relative)
        (self.folder / relative).write_text((before or "") + code, encoding="utf-8")
        line = (before or "").count("\n") + next(
            number for number, text in enumerate(code.splitlines(), 1) if "# here" in text
        )
        return f"keras/{relative}", line

    def replace(self, relative: str, old: str, new: str) -> None:
        before = self._keep(relative)
        assert old in before
        (self.folder / relative).write_text(before.replace(old, new), encoding="utf-8")

    def _keep(self, relative: str) -> str | None:
        path = self.folder / relative
        text = path.read_text(encoding="utf-8") if path.exists() else None
        self._originals.setdefault(path, text)
        return text

    def undo(self) -> None:
        for path, text in self._originals.items():
            if text is None:
                path.unlink()
            else:
                path.write_text(text, encoding="utf-8")
        self._originals.clear()


@pytest.fixture(scope="module")
def _keras_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("audit") / "keras"
    shutil.copytree(package_dir("keras"), folder, ignore=_all_but_modules)
    return folder


def _all_but_modules(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if not name.endswith(".py") and not Path(folder, name).is_dir()]


@pytest.fixture
def keras_copy(_keras_folder) -> KerasCopy:
    copy = KerasCopy(_keras_folder)
    yield copy
    copy.undo()


UNGUARDED = {
    "module-alias": """
from keras.src import backend as K


class Sneaky:
    def call(self, sequences):
        return K.lstm(sequences)  # here
""",
    "function-alias": """
from keras.src.backend import lstm as fused


def fast(sequences):
    return fused(sequences)  # here


fast(None)
""",
    "import-as-moved-name": """
import keras.src.backend as kb


class Sneaky:
    def inner_loop(self, sequences):
        if self.use_cudnn:
            return kb.rnn.gru(sequences)  # here
""",
    "backend-module": """
from keras.src.backend.tensorflow.rnn import lstm


class Sneaky:
    def call(self, sequences):
        if self.cell.recurrent_activation is not None:
            return lstm(sequences)  # here
""",
    "getattr": """
from keras.src import backend


class Sneaky:
    def call(self, sequences):
        return getattr(backend, "bidirectional_lstm")(sequences)  # here
""",
    "function-nobody-calls": """
from keras.src import backend


def _unused_fused_path(sequences):
    return backend.lstm(sequences)  # here
""",
    "re-export": """
from keras.src.backend import bidirectional_gru  # here
""",
    "per-gate-callee-the-wrong-way-round": """
from keras.src import backend


class Sneaky:
    def inner_loop(self, sequences):
        return (self._per_gate_lstm if not self.cell._overriding_activations else backend.lstm)(sequences)  # here
""",
    "caller-unguarded": """
from keras.src import backend


class Sneaky:
    def call(self, sequences):
        if self.use_cudnn and not self.cell._overriding_activations:
            return self._fused(sequences)
        return self._fused(sequences[::-1])

    def _fused(self, sequences):
        return backend.lstm(sequences)  # here
""",
}


@pytest.mark.parametrize("relative", ["src/layers/rnn/time_distributed.py", "src/layers/rnn/fast_rnn.py"])
@pytest.mark.parametrize("code", UNGUARDED.values(), ids=UNGUARDED.keys())
def test_an_unguarded_call_anywhere_is_named(keras_copy, relative, code):
    """A call site outside every layer set's files, however imported, is found: file and line."""
    where = keras_copy.add(relative, code)
    sites = audit(keras_copy.folder, "keras", patched_texts(keras_copy.folder, "keras"))
    assert [(site.path, site.line) for site in uncovered(sites, RNN)] == [where]


GUARDED = {
    "under-the-guard": """
from keras.src import backend as K


class Careful:
    def call(self, sequences):
        if self.use_cudnn and not self.cell._overriding_activations:
            return K.lstm(sequences)  # here
        return sequences
""",
    "callers-guarded": """
from keras.src import backend


class Careful:
    def call(self, sequences):
        if self.use_cudnn and not getattr(getattr(self.layer, "cell", None), "_overriding_activations", ()):
            return self._fused(sequences)
        return sequences

    def _fused(self, sequences):
        return backend.gru(sequences)  # here
""",
    "else-of-a-guarded-flag": """
from tf_keras.src.layers.rnn.lstm import gpu_lstm


class Careful:
    def __init__(self):
        self._could_use_gpu_kernel = self.use_bias and not self.cell._overriding_activations

    def call(self, inputs):
        if not self._could_use_gpu_kernel:
            return self.cell(inputs)
        else:
            return gpu_lstm(inputs)  # here
""",
    "module-imported-by-full-name": """
import tensorflow.python.ops.gen_cudnn_rnn_ops


class Careful:
    def call(self, inputs):
        if not self.cell._overriding_activations:
            return tensorflow.python.ops.gen_cudnn_rnn_ops.cudnn_rnn(inputs)  # here
        return inputs
""",
    "per-gate-callee": """
from keras.src import backend


class Careful:
    def inner_loop(self, sequences):
        return (backend.lstm if not self.cell._overriding_activations else self._per_gate_lstm)(sequences)  # here

    def _per_gate_lstm(self, sequences):
        return sequences
""",
    "predicate-in-a-guarded-and": """
from keras.src import backend


class Careful:
    def __init__(self, cell):
        if backend.cudnn_ok(cell.activation) and not self.cell._overriding_activations:  # here
            self.supports_jit = False
""",
}


@pytest.mark.parametrize("code", GUARDED.values(), ids=GUARDED.keys())
def test_a_guarded_call_anywhere_is_covered(keras_copy, code):
    path, line = keras_copy.add("src/layers/rnn/careful.py", code)
    sites = audit(keras_copy.folder, "keras", patched_texts(keras_copy.folder, "keras"))
    (site,) = [site for site in sites if (site.path, site.line) == (path, line)]
    assert site.covered, site
    assert uncovered(sites, RNN) == []


def test_an_unguarded_call_in_a_patched_file_is_named(keras_copy):
    """lstm.py itself: a fused call the transform does not know (not in an `if`)."""
    relative = "src/layers/rnn/lstm.py"
    anchor = "    def call(self, sequences, initial_state=None, mask=None, training=False):\n"
    keras_copy.replace(relative, anchor, anchor + "        backend.lstm(sequences)  # here\n")
    patched = patched_texts(keras_copy.folder, "keras")
    (line,) = lines_of(patched[f"keras/{relative}"], "# here")
    bad = uncovered(audit(keras_copy.folder, "keras", patched), RNN)
    assert [(site.path, site.line, site.entry) for site in bad] == [(f"keras/{relative}", line, "backend.lstm")]


def test_patched_text_is_read_instead_of_the_disk(keras_copy):
    on_disk = {site.path for site in uncovered(audit(keras_copy.folder, "keras"), RNN)}
    patched = patched_texts(keras_copy.folder, "keras")
    assert set(patched) <= on_disk
    assert uncovered(audit(keras_copy.folder, "keras", patched), RNN) == []


def test_a_private_kernel_caller_used_from_another_module_is_named(keras_copy):
    """Bidirectional's _call_fused_lstm is covered by its one guarded caller, unless another module calls it."""
    if "_call_fused_lstm" not in (keras_copy.folder / "src/layers/rnn/bidirectional.py").read_text():
        pytest.skip("this Keras has no private fused-kernel caller in Bidirectional (keras 3.15+ has)")
    where = keras_copy.add(
        "src/layers/rnn/fast_rnn.py", "def run(layer, x):\n    return layer._call_fused_lstm(x, None)  # here\n"
    )
    bad = uncovered(audit(keras_copy.folder, "keras", patched_texts(keras_copy.folder, "keras")), RNN)
    assert [site.path for site in bad] == ["keras/src/layers/rnn/bidirectional.py"]
    assert f"also used at {where[0]}:{where[1]}" in bad[0].why


@pytest.mark.parametrize(
    "relative", ["src/backend/tensorflow/fused_extra.py", "src/layers/rnn/fast_rnn_test.py"], ids=["backend", "test"]
)
def test_backend_implementations_and_tests_are_not_audited(keras_copy, relative):
    keras_copy.add(relative, UNGUARDED["module-alias"])
    assert uncovered(audit(keras_copy.folder, "keras", patched_texts(keras_copy.folder, "keras")), RNN) == []
