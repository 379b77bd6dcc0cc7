"""Find the Keras flavours of an environment without importing them.

Everything here reads dist-info metadata and files: no Keras, TensorFlow or
libcst import, so ``status`` stays instant.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from patcher import errors
from patcher.hashing import record_hash_to_hex
from patcher.spec import DEFAULT_LAYER_SETS, LayerSet, Layout, layouts, ordered

# distribution name -> import package
FLAVOURS = {"keras": "keras", "tf_keras": "tf_keras"}


@dataclass(frozen=True)
class TargetFile:
    relative: str  # as in RECORD, e.g. keras/src/layers/rnn/conv_lstm.py
    path: Path
    classes: dict[str, str]  # class name -> role ("cell" or "layer")
    record_sha256: str | None  # hex; None when the distribution has no RECORD
    layer_set: LayerSet = LayerSet.CONVLSTM


@dataclass(frozen=True)
class Flavour:
    distribution: str  # "keras" or "tf_keras"
    version: str
    site: Path  # the folder holding the package and its dist-info
    layout: Layout | None  # None: a Keras whose ConvLSTM source we do not know
    files: tuple[TargetFile, ...]
    # The layer sets acted on (asked for, plus those a backup records), and
    # those this version's files allow.
    layer_sets: tuple[LayerSet, ...] = (LayerSet.CONVLSTM,)
    supported_sets: tuple[LayerSet, ...] = (LayerSet.CONVLSTM,)
    asked: tuple[LayerSet, ...] = ()  # what --layers named (empty: not given)

    @property
    def key(self) -> str:
        return f"{self.distribution}-{self.version}"

    @property
    def reinstall_command(self) -> str:
        """What puts this distribution's pristine files back, whatever state they are in."""
        return f"pip install --force-reinstall --no-deps {self.distribution}=={self.version}"


def search_path(python: str | None, keras_root: str | None) -> list[str]:
    """The folders to look for distributions in (--keras-root wins over --python)."""
    if keras_root is not None:
        return [str(_site_of_root(Path(keras_root)))]
    if python is not None:
        return _interpreter_path(python)
    return list(sys.path)


def find_flavours(
    path: list[str], only: str | None = None, layers: frozenset[LayerSet] | None = None
) -> list[Flavour]:
    """The Keras distributions importable from ``path``, first one per name.

    Each flavour's files are those of ``layers`` and of every layer set its
    backup records as applied (so status, verify and revert see the whole
    patch); a set its version cannot patch is left out (see supported_sets).
    ``layers`` None: not chosen (--layers not given), ConvLSTM's by default.
    """
    found: dict[str, Flavour] = {}
    for dist in metadata.distributions(path=path):
        name = _canonical(dist.metadata["Name"] or "")
        if name in FLAVOURS and name not in found and (only is None or only == name):
            found[name] = _flavour(dist, name, layers)
    return [found[name] for name in FLAVOURS if name in found]


def _flavour(dist: metadata.Distribution, name: str, layers: frozenset[LayerSet] | None = None) -> Flavour:
    site = Path(dist.locate_file("")).resolve()
    record = {str(entry): entry for entry in (dist.files or [])}
    package = FLAVOURS[name]
    for layout in layouts():
        if name not in layout.distributions:
            continue
        paths = layout.paths_for(package)
        if all(_defines(site / rel, classes, rel in record or not record) for rel, classes in paths):
            supported = [
                layer_set
                for layer_set in layout.known_sets
                if all(
                    _defines(site / rel, classes, rel in record or not record)
                    for rel, classes in layout.paths_for(package, layer_set)
                )
            ]
            wanted = {*DEFAULT_LAYER_SETS, *(layers or ()), *_recorded_sets(site, f"{name}-{dist.version}")}
            chosen = [layer_set for layer_set in supported if layer_set in wanted]
            files = tuple(
                TargetFile(
                    relative=rel,
                    path=site / rel,
                    classes=classes,
                    record_sha256=_record_sha256(record.get(rel)),
                    layer_set=layer_set,
                )
                for layer_set in chosen
                for rel, classes in layout.paths_for(package, layer_set)
            )
            return Flavour(name, dist.version, site, layout, files, tuple(chosen), tuple(supported), tuple(ordered(layers or ())))
    return Flavour(name, dist.version, site, None, (), (), ())


def _recorded_sets(site: Path, key: str) -> list[LayerSet]:
    """The layer sets the backup's manifest says are applied (ConvLSTM's only, for an older manifest).

    A quick read for choosing files; patcher.backup.read_manifest validates it.
    """
    path = site / ".convlstm-patch" / "backups" / key / "manifest.json"
    try:
        names = json.loads(path.read_text(encoding="utf-8")).get("layer_sets", ["convlstm"])
        return ordered(LayerSet(name) for name in names)
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def _defines(path: Path, classes: dict[str, str], listed: bool) -> bool:
    """Does the file exist (and appear in RECORD) and define these classes?

    A text search, not a parse: it tells layouts that share a file name
    apart (Keras 2.0-2.8 all have convolutional_recurrent.py) in microseconds.
    """
    if not listed:
        return False
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return all(f"class {name}(" in text for name in classes)


def _record_sha256(entry: metadata.PackagePath | None) -> str | None:
    if entry is None or entry.hash is None:
        return None
    return record_hash_to_hex(entry.hash.mode, entry.hash.value)


def _canonical(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _site_of_root(root: Path) -> Path:
    """Accept a site-packages folder, an unpacked wheel, or the package itself."""
    if not root.is_dir():
        raise errors.KerasNotFound(f"--keras-root {root} is not a folder; give the site-packages folder that holds keras")
    if (root / "__init__.py").is_file() and root.name in FLAVOURS.values():
        return root.parent
    return root


def _interpreter_path(python: str) -> list[str]:
    """sys.path of another interpreter, asked in a subprocess."""
    try:
        completed = subprocess.run(
            [python, "-c", "import json, sys; print(json.dumps(sys.path))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        paths = json.loads(completed.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        paths = None
    if not isinstance(paths, list):
        raise errors.NotAPython(
            f"--python {python} did not run as a Python interpreter; give the path of the environment's python"
        )
    return [entry for entry in paths if isinstance(entry, str)]
