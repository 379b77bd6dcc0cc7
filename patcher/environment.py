"""Find the Keras flavours of an environment without importing them.

Everything here reads dist-info metadata and files: no Keras, TensorFlow or
libcst import, so ``status`` stays instant.
"""

from __future__ import annotations

import json
import os
import signal
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
    record_sha256: str | None  # hex; None when neither RECORD nor our hash lock knows the file
    from_lock: bool = False  # record_sha256 comes from our hash lock: the distribution has no RECORD hash
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
    why_unsupported: str = ""  # with no layout: what is missing, when we can tell

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
    candidates = [layout for layout in layouts() if name in layout.distributions]
    # First the layout whose files all define their classes; else one whose
    # missing files RECORD lists (deleted since install: a patched Keras
    # with a file deleted can still be reverted, and status says which).
    for complete in (True, False):
        for layout in candidates:
            if not _matches(site, layout.paths_for(package), record, complete):
                continue
            supported = [
                layer_set
                for layer_set in layout.known_sets
                if _matches(site, layout.paths_for(package, layer_set), record, complete)
            ]
            wanted = {*DEFAULT_LAYER_SETS, *(layers or ()), *_recorded_sets(site, f"{name}-{dist.version}")}
            chosen = [layer_set for layer_set in supported if layer_set in wanted]
            files = tuple(
                _target(site, rel, classes, record.get(rel), name, dist.version, layer_set)
                for layer_set in chosen
                for rel, classes in layout.paths_for(package, layer_set)
            )
            return Flavour(
                name, dist.version, site, layout, files, tuple(chosen), tuple(supported), tuple(ordered(layers or ()))
            )
    why = _why_unsupported(dist, name, site, candidates, record)
    return Flavour(name, dist.version, site, None, (), (), (), why_unsupported=why)


def _matches(site: Path, paths, record: dict, complete: bool) -> bool:
    """Every file defines its classes; or (not complete) those that do not were deleted since install."""
    found = [_defines(site / rel, classes, rel in record or not record) for rel, classes in paths]
    if complete:
        return all(found)
    deleted = [rel in record and not (site / rel).exists() for rel, _ in paths]
    return any(found) and all(map(any, zip(found, deleted)))


def _why_unsupported(dist, name: str, site: Path, candidates: list[Layout], record: dict) -> str:
    """What is missing for a Keras no layout matched, when it is not simply a version without one."""
    package = FLAVOURS[name]
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct = {}
    if direct.get("dir_info", {}).get("editable") or not (site / package).is_dir():
        source = direct.get("url", "your source tree")
        return (
            f"{name} {dist.version} is an editable (development) install: its source is in {source}, not in "
            f"{site}, and has no RECORD to check it against; convlstm-patch patches installed copies only "
            "(install it into a venv with `pip install .`, see README, 'Supported Keras versions')"
        )
    for layout in candidates:
        paths = layout.paths_for(package)
        if record and all(_defines(site / rel, classes, True) for rel, classes in paths):
            unlisted = [rel for rel, _ in paths if rel not in record]
            return (
                f"the RECORD of {name} {dist.version} does not list {unlisted[0]} (a repackaged or hand-assembled "
                f"install), so its files cannot be checked; reinstall it with "
                f"`pip install --force-reinstall --no-deps {name}=={dist.version}`"
            )
    return ""


def _target(
    site: Path, rel: str, classes: dict[str, str], entry, name: str, version: str, layer_set: LayerSet
) -> TargetFile:
    """A target file with its pristine sha256: from RECORD, else (no RECORD, or no hash in it) from our lock."""
    recorded = _record_sha256(entry)
    if recorded is None:
        from patcher.locks import load_lock  # only for the rare install without RECORD hashes

        lock = load_lock(name, version)
        locked = lock.files.get(rel) if lock is not None else None
        if locked is not None:
            return TargetFile(rel, site / rel, classes, locked.pristine, from_lock=True, layer_set=layer_set)
    return TargetFile(rel, site / rel, classes, recorded, layer_set=layer_set)


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


INTERPRETER_TIMEOUT = 60  # seconds for another interpreter to print its sys.path

# sys.path of the interpreter as it is when started outside any project
# folder: without the entry for the current folder ('' with -c, which
# would find a Keras in whatever folder the tool was run from), every other
# entry made absolute.
_PATH_CODE = "import json, os, sys; print(json.dumps([os.path.abspath(p) for p in sys.path if p]))"


def _interpreter_path(python: str) -> list[str]:
    """sys.path of another interpreter, asked in a subprocess (killed, with its children, if it hangs)."""
    paths = None
    try:
        process = subprocess.Popen(
            [python, "-c", _PATH_CODE],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )  # fmt: skip
    except OSError:
        process = None
    if process is not None:
        try:
            stdout, _ = process.communicate(timeout=INTERPRETER_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise errors.NotAPython(
                f"--python {python} did not answer within {INTERPRETER_TIMEOUT} s (timed out; it was killed); "
                "give the path of the environment's python"
            ) from None
        try:
            paths = json.loads(stdout)
        except ValueError:
            paths = None
    if not isinstance(paths, list):
        raise errors.NotAPython(
            f"--python {python} did not run as a Python interpreter; give the path of the environment's python"
        )
    return [entry for entry in paths if isinstance(entry, str)]


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    process.communicate()
