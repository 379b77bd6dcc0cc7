"""Find the Keras flavours of an environment without importing them.

Everything here reads dist-info metadata and files: no Keras, TensorFlow or
libcst import, so ``status`` stays instant. It finds where Keras is and which
files a patch may touch, never whether they are patched: that is the
snapshot's job (patcher/snapshot.py), read under the lock by every run that
writes.
"""

from __future__ import annotations

import csv
import errno
import functools
import json
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from patcher import errors, processes
from patcher.conda import CondaPackage, conda_package
from patcher.enums import TextEnum
from patcher.hashing import record_hash_to_hex
from patcher.layersets import REGISTRY, LayerSet, ordered
from patcher.probe import answer
from patcher.spec import Layout, LayoutFile, layouts

# distribution (canonical name) -> the package it installs. The nightlies
# install the same package as the release, so `--only keras` names both.
DISTRIBUTIONS = {
    "keras": "keras",
    "keras_nightly": "keras",
    "tf_keras": "tf_keras",
    "tf_keras_nightly": "tf_keras",
}
PACKAGES = ("keras", "tf_keras")  # the values of --only, in the order flavours are listed


class HashSource(TextEnum):
    """Where a target file's pristine sha256 comes from, first found first (as `status` names it)."""

    RECORD = "the distribution's RECORD"
    CONDA = "conda's record of the package (conda-meta)"  # RECORD has none (an egg-info install, an edited RECORD)
    PINS = "this version's hash pins (it has no RECORD)"  # neither has one


@dataclass(frozen=True)
class TargetFile:
    relative: str  # as in RECORD, e.g. keras/src/layers/rnn/conv_lstm.py
    path: Path
    classes: dict[str, str]  # class name -> role ("cell", "layer" or "wrapper")
    layer_sets: frozenset[LayerSet]  # the sets it belongs to: several for a file their layers share
    record_sha256: str | None  # hex, the pristine file's; None when no HashSource knows the file
    hash_source: HashSource | None = HashSource.RECORD


@dataclass(frozen=True)
class Flavour:
    distribution: str  # canonical: keras, tf_keras, keras_nightly, tf_keras_nightly
    project: str  # the name pip knows it by (its metadata Name), for advice
    package: str  # the import package: keras or tf_keras
    version: str
    site: Path  # the folder holding the package and its dist-info
    layout: Layout | None  # None: a Keras whose ConvLSTM source we do not know
    files: tuple[TargetFile, ...] = ()  # every file of every layer set this version supports
    why_unsupported: str = ""  # with no layout: what is missing, when we can tell
    dist_info: str = ""  # the name of its dist-info folder in ``site``
    conda: CondaPackage | None = None  # installed by conda (a conda environment), not pip

    @property
    def key(self) -> str:
        return f"{self.distribution}-{self.version}"

    @property
    def installer(self) -> str:
        """The tool that installs and replaces this distribution's files, for messages."""
        return "conda" if self.conda is not None else "pip"

    @property
    def reinstall_command(self) -> str:
        """What puts this distribution's pristine files back, whatever state they are in."""
        return _reinstall_command(self.project, self.version, self.conda)

    @property
    def supported_sets(self) -> tuple[LayerSet, ...]:
        return ordered(layer_set for target in self.files for layer_set in target.layer_sets)

    def files_of(self, layer_sets: Iterable[LayerSet]) -> tuple[TargetFile, ...]:
        """The files of these layer sets (a file shared with another set included)."""
        wanted = set(layer_sets)
        return tuple(target for target in self.files if target.layer_sets & wanted)


@dataclass(frozen=True)
class SearchPath:
    """Where an environment's packages are, and where its interpreter caches bytecode."""

    entries: list[str]
    # sys.pycache_prefix of the interpreter that imports this Keras
    # (PYTHONPYCACHEPREFIX): its bytecode lives there, outside __pycache__.
    pycache_prefix: Path | None = None

    @property
    def folders(self) -> list[Path]:
        """The existing folders among the entries, resolved, each once."""
        return list(dict.fromkeys(Path(entry).resolve() for entry in self.entries if entry and Path(entry).is_dir()))


def search_path(python: str | None, keras_root: str | None) -> SearchPath:
    """The folders to look for distributions in (--keras-root wins over --python)."""
    if keras_root is not None:
        # The verifying interpreter inherits our environment (PYTHONPYCACHEPREFIX too).
        entries, prefix = [str(_site_of_root(Path(keras_root)))], sys.pycache_prefix
    elif python is not None:
        entries, prefix = _interpreter_path(python)
    else:
        entries, prefix = list(sys.path), sys.pycache_prefix
    return SearchPath(entries, Path(prefix) if prefix else None)


def find_flavours(path: list[str], only: str | None = None) -> list[Flavour]:
    """The Keras flavours importable from ``path``: per package, the distribution of the
    first folder that has one; two distributions of one package there are refused."""
    found: dict[str, list[metadata.Distribution]] = {}
    for dist in metadata.distributions(path=path):
        name = _canonical(dist.metadata["Name"] or "")
        package = DISTRIBUTIONS.get(name)
        if package is None or (only is not None and only != package) or dist_info_name(dist).startswith("~"):
            # "~eras-3.13.2.dist-info": what pip leaves of an upgrade it could not finish
            # (it warns of it as "-eras"); pip itself ignores it, and so do we.
            continue
        same = found.setdefault(package, [])
        if not same or _site(dist) == _site(same[0]):
            same.append(dist)
    flavours = []
    for package in PACKAGES:
        dists = found.get(package, [])
        if len({_canonical(dist.metadata["Name"]) for dist in dists}) > 1:
            both = " and ".join(f"{dist.metadata['Name']} {dist.version}" for dist in dists)
            names = " ".join(dist.metadata["Name"] for dist in dists)
            raise errors.Unsupported(
                f"{both} are both installed in {_site(dists[0])} and own the same {package} files, so convlstm-patch "
                f"cannot tell which one they are; keep one: `pip uninstall -y {names}` then `pip install` the one you "
                "want (uninstalling one alone deletes the files they share)"
            )
        versions = sorted({dist.version for dist in dists})
        if len(versions) > 1:
            project = dists[0].metadata["Name"]
            raise errors.Unsupported(
                f"{project} is recorded as installed twice in {_site(dists[0])} ({' and '.join(versions)}: an "
                "interrupted or hand-made install), so convlstm-patch cannot tell which files are which; reinstall "
                f"the one you want: `pip install --force-reinstall --no-deps {project}==<version>`"
            )
        if dists:
            flavours.append(_flavour(dists[0], package))
    return flavours


def dist_info_name(dist: metadata.Distribution) -> str:
    """The name of a distribution's dist-info folder (importlib.metadata keeps its path as _path)."""
    path = getattr(dist, "_path", None)
    return Path(path).name if path is not None else ""


def installed_distributions(site: Path) -> set[str]:
    """The canonical names of the Keras distributions installed in one folder (any version, any layout)."""
    names = {_canonical(dist.metadata["Name"] or "") for dist in metadata.distributions(path=[str(site)])}
    return names & set(DISTRIBUTIONS)


def _site(dist: metadata.Distribution) -> Path:
    return Path(str(dist.locate_file(""))).resolve()


def _flavour(dist: metadata.Distribution, package: str) -> Flavour:
    name = _canonical(dist.metadata["Name"])
    site = _site(dist)
    record = record_entries(dist)
    candidates = [layout for layout in layouts() if package in layout.packages]
    conda, conda_hashes = conda_package(dist, dist_info_name(dist), site)
    found = functools.partial(
        Flavour, distribution=name, project=dist.metadata["Name"], package=package, version=dist.version,
        site=site, dist_info=dist_info_name(dist), conda=conda,
    )  # fmt: skip
    # First the layout whose files all define their classes; else one whose
    # missing files RECORD lists (deleted since install: a patched Keras
    # with a file deleted can still be reverted, and status says which).
    for complete in (True, False):
        for layout in candidates:
            if not _matches(site, layout.base_files(package), record, complete):
                continue
            files = []
            for layer_set in layout.known_sets:
                members = [file for file in layout.files(package, (layer_set,)) if _belongs(site, file, layer_set)]
                if _matches(site, members, record, complete):
                    files += [(file, layer_set) for file in members]
            targets = _targets(site, files, record, conda_hashes, name, dist.version)
            return found(layout=layout, files=targets)
    why = _why_unsupported(dist, name, site, candidates, record, conda)
    return found(layout=None, why_unsupported=why)


def record_entries(dist: metadata.Distribution) -> dict[str, metadata.PackagePath]:
    """Every row of the distribution's RECORD by path, files deleted since install included.

    Not ``dist.files``: from Python 3.12 on it leaves out the files that no
    longer exist, and a Keras with a deleted ConvLSTM file would look like a
    layout we do not know instead of one whose file is missing.
    """
    text = dist.read_text("RECORD")
    if text is None:  # no RECORD (egg-info): what the metadata lists
        return {str(entry): entry for entry in (dist.files or [])}
    entries = {}
    for row in csv.reader(text.splitlines()):
        if not row or not row[0]:
            continue
        entry = metadata.PackagePath(row[0])
        entry.hash = metadata.FileHash(row[1]) if len(row) > 1 and row[1] else None
        entry.size = int(row[2]) if len(row) > 2 and row[2].isdigit() else None
        entry.dist = dist
        entries[str(entry)] = entry
    return entries


def _belongs(site: Path, file: LayoutFile, layer_set: LayerSet) -> bool:
    """A wrapper file belongs to a set only where it can reach the set's fused kernel."""
    if any(role != "wrapper" for role in file.classes.values()):
        return True
    text = _read(site / file.relative)
    return any(name in text for name in REGISTRY[layer_set].wrapper_reaches)


def _targets(
    site: Path,
    files: list[tuple[LayoutFile, LayerSet]],
    record: dict,
    conda_hashes: dict[str, str],
    name: str,
    version: str,
):
    """One TargetFile per file, with every set it belongs to, in layout order."""
    sets: dict[str, set[LayerSet]] = {}
    layout_files: dict[str, LayoutFile] = {}
    for file, layer_set in files:
        sets.setdefault(file.relative, set()).add(layer_set)
        layout_files[file.relative] = file
    return tuple(
        _target(site, file, frozenset(sets[relative]), record.get(relative), conda_hashes.get(relative), name, version)
        for relative, file in layout_files.items()
    )


def _matches(site: Path, files: Iterable[LayoutFile], record: dict, complete: bool) -> bool:
    """Every file defines its classes; or (not complete) those that do not were deleted since install."""
    files = list(files)
    found = [_defines(site / file.relative, file.classes, file.relative in record or not record) for file in files]
    if complete:
        return bool(files) and all(found)
    # Deleted, or something else where the file belongs (a folder, a FIFO): status says which.
    deleted = [file.relative in record and not (site / file.relative).is_file() for file in files]
    return any(found) and all(map(any, zip(found, deleted)))


def _why_unsupported(dist, name: str, site: Path, candidates: list[Layout], record: dict, conda) -> str:
    """What is missing for a Keras no layout matched, when it is not simply a version without one."""
    package = DISTRIBUTIONS[name]
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        direct = {}
    project = dist.metadata["Name"]
    if direct.get("dir_info", {}).get("editable") or not (site / package).is_dir():
        source = direct.get("url", "your source tree")
        return (
            f"{project} {dist.version} is an editable (development) install: its source is in {source}, not in "
            f"{site}, and has no RECORD to check it against; convlstm-patch patches installed copies only "
            "(install it into a venv with `pip install .`, see README, 'Supported Keras versions')"
        )
    for layout in candidates:
        files = layout.base_files(package)
        if record and all(_defines(site / file.relative, file.classes, True) for file in files):
            unlisted = [file.relative for file in files if file.relative not in record]
            return (
                f"the RECORD of {project} {dist.version} does not list {unlisted[0]} (a repackaged or hand-assembled "
                f"install), so its files cannot be checked; reinstall it with "
                f"`{_reinstall_command(project, dist.version, conda)}`"
            )
    return ""


def _target(
    site: Path,
    file: LayoutFile,
    layer_sets: frozenset[LayerSet],
    entry,
    conda_sha256: str | None,
    name: str,
    version: str,
) -> TargetFile:
    """A target file with its pristine sha256: from RECORD, else (no RECORD, or no hash in it)
    from conda's record of the package, else from our hash pins."""
    target = functools.partial(TargetFile, file.relative, site / file.relative, file.classes, layer_sets)
    recorded = _record_sha256(entry)
    if recorded is not None:
        return target(recorded, HashSource.RECORD)
    if conda_sha256 is not None:
        return target(conda_sha256, HashSource.CONDA)
    from patcher.pins import load_pins  # only for the rare install without RECORD hashes

    pins = load_pins(name, version)
    pinned = pins.files.get(file.relative) if pins is not None else None
    if pinned is not None:
        return target(pinned.pristine, HashSource.PINS)
    return target(None, None)


def _read(path: Path) -> str:
    """The file's text; empty when it is missing, not a regular file (never opened: a FIFO
    would block) or unreadable."""
    if not path.is_file():
        return ""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _defines(path: Path, classes: dict[str, str], listed: bool) -> bool:
    """Does the file exist (and appear in RECORD) and define these classes?

    A text search, not a parse: it tells layouts that share a file name
    apart (Keras 2.0-2.8 all have convolutional_recurrent.py) in microseconds.
    """
    if not listed:
        return False
    text = _read(path)
    return bool(text) and all(f"class {name}(" in text for name in classes)


def _record_sha256(entry: metadata.PackagePath | None) -> str | None:
    if entry is None or entry.hash is None:
        return None
    return record_hash_to_hex(entry.hash.mode, entry.hash.value)


def _canonical(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _reinstall_command(project: str, version: str, conda: CondaPackage | None) -> str:
    if conda is not None:
        return conda.reinstall_command
    return f"pip install --force-reinstall --no-deps {project}=={version}"


def _site_of_root(root: Path) -> Path:
    """Accept a site-packages folder, an unpacked wheel, or the package itself."""
    try:
        folder = stat.S_ISDIR(root.stat().st_mode)
    except OSError as error:  # missing, and also a name too long (ENAMETOOLONG) or a loop of links (ELOOP)
        folder, why = False, f" ({error.strerror})" if error.errno not in (errno.ENOENT, errno.ENOTDIR) else ""
    else:
        why = ""
    if not folder:
        raise errors.KerasNotFound(
            f"--keras-root {root} is not a folder{why}; give the site-packages folder that holds keras"
        )
    if (root / "__init__.py").is_file() and root.name in PACKAGES:
        return root.parent
    return root


INTERPRETER_TIMEOUT = 60  # seconds for another interpreter to print its sys.path

# sys.path of the interpreter as it is when started outside any project
# folder: without the entry for the current folder ('' with -c, which
# would find a Keras in whatever folder the tool was run from), every other
# entry made absolute; and where it writes bytecode. Printed as answer.emit
# prints: behind its marker, found whatever a sitecustomize prints besides.
_PATH_CODE = (
    "import json, os, sys; sys.stdout.write(%r + json.dumps({'path': [os.path.abspath(p) for p in sys.path if p], "
    "'pycache_prefix': getattr(sys, 'pycache_prefix', None)}) + '\\n')" % ("\n" + answer.MARKER)
)


def _interpreter_path(python: str) -> tuple[list[str], str | None]:
    """sys.path and sys.pycache_prefix of another interpreter, asked in a subprocess (killed,
    with its children, if it hangs, and whatever else ends the wait: Ctrl-C, SIGTERM)."""
    found = None
    try:
        process = processes.start(processes.python_command(python, "-c", _PATH_CODE))
    except OSError:
        process = None
    if process is not None:
        try:
            stdout, _ = process.communicate(timeout=INTERPRETER_TIMEOUT)
        except subprocess.TimeoutExpired:
            processes.kill_group(process)
            raise errors.KerasNotFound(
                f"--python {python} did not answer within {INTERPRETER_TIMEOUT} s (timed out; it was killed); "
                "give the path of the environment's python"
            ) from None
        except BaseException:
            processes.kill_group(process, drain=False)
            raise
        found = answer.find(stdout.decode(errors="replace"))
    if not isinstance(found, dict) or not isinstance(found.get("path"), list):
        raise errors.KerasNotFound(
            f"--python {python} did not run as a Python interpreter; give the path of the environment's python"
        )
    prefix = found.get("pycache_prefix")
    return [entry for entry in found["path"] if isinstance(entry, str)], prefix if isinstance(prefix, str) else None
