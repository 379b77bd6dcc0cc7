"""What the tests share: the CLI runner, copies of Keras, and file hashes.

Imported as ``from helpers import ...`` (tests/ is on sys.path under pytest), never
from conftest;
the fixtures that use these live in conftest.py.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from click.testing import CliRunner, Result

from patcher.cli import main

FLAVOURS = ("keras", "tf_keras")
ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "scripts"  # the helper programs the tests launch
LOCK_FILE = Path(".convlstm-patch/lock")


class Session:
    """Set once by conftest.pytest_configure: the session's pristine keras and tf_keras."""

    pristine_site: Path | None = None


class _BothStreams(Result):
    """click 8.1's result with click 8.2's ``output``: stdout, then stderr."""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class _Click81Runner(CliRunner):
    def invoke(self, *args, **kwargs) -> Result:
        result = super().invoke(*args, **kwargs)
        result.__class__ = _BothStreams
        return result


def runner() -> CliRunner:
    """click's CliRunner as click 8.2+ makes it: stderr apart (``result.stderr``) and ``result.output``
    holding both streams. click 8.1 (on Python 3.9, where 8.2 does not install) keeps stderr apart only
    with mix_stderr=False, and its output is then stdout alone: given both here, stdout first."""
    if "mix_stderr" in inspect.signature(CliRunner).parameters:
        return _Click81Runner(mix_stderr=False)
    return CliRunner()


def cli(*args: str) -> Result:
    """Run convlstm-patch in this process, as a user would type it."""
    return runner().invoke(main, list(args), catch_exceptions=False)


def cli_at(site: Path, command: str, *args: str) -> Result:
    """``convlstm-patch COMMAND --keras-root SITE ARGS...``: the tests' usual call, on a copy."""
    return cli(command, "--keras-root", str(site), *args)


def copy_distribution(name: str, site: Path, source_site: Path | None = None) -> None:
    """Copy a distribution's package folder and dist-info into ``site``.

    From the session's pristine copy, or from ``source_site`` (another env's site-packages).
    """
    source_site = source_site or Session.pristine_site
    dist = next(metadata.distributions(name=name, path=[str(source_site)]))
    source_site = Path(dist.locate_file("")).resolve()
    info = source_site / f"{name}-{dist.version}.dist-info"
    shutil.copytree(source_site / name, site / name)
    shutil.copytree(info, site / info.name)


def link_distribution(name: str, site: Path) -> None:
    """Like copy_distribution from the session's pristine copy, in a fraction of the time: the
    folders holding files convlstm-patch may patch are copied, and so is the dist-info; their
    ancestors are real folders; everything else (files and whole folders) is a symbolic link to
    the pristine copy: importable, and never written by the tool, which replaces the files it
    patches instead of writing through them. (os.walk, as the fused-kernel audit walks a package,
    does not enter linked folders: none of them holds a layer of any set.) A test that writes
    elsewhere in the package must use copy_distribution: the session checks the pristine copy
    against RECORD at its end and errors if a test wrote through a link."""
    from patcher.environment import find_flavours

    source_site = Session.pristine_site
    (flavour,) = find_flavours([str(source_site)], only=name)
    copied = {target.path.parent for target in flavour.files}
    real = {folder for target in copied for folder in (target, *target.parents)}
    dist = next(metadata.distributions(name=name, path=[str(source_site)]))
    info = source_site / f"{name}-{dist.version}.dist-info"
    shutil.copytree(info, site / info.name)

    def fill(source: Path) -> None:
        destination = site / source.relative_to(source_site)
        destination.mkdir()
        for child in source.iterdir():
            if child.name == "__pycache__":
                continue
            if child in real:
                fill(child)
            elif source in copied and child.is_file():
                shutil.copy2(child, destination / child.name)
            else:
                (destination / child.name).symlink_to(child)

    fill(source_site / name)


def record_mismatches(name: str, site: Path) -> list[Path]:
    """The files of distribution ``name`` under ``site`` whose bytes differ from their RECORD hash."""
    import base64

    from patcher.environment import record_entries  # deleted files too (Python 3.12+'s dist.files drops them)

    dist = next(metadata.distributions(name=name, path=[str(site)]))
    mismatches = []
    for entry in record_entries(dist).values():
        if entry.hash is None:
            continue
        path = site / entry
        if not path.is_file():
            mismatches.append(path)
            continue
        digest = base64.urlsafe_b64encode(hashlib.new(entry.hash.mode, path.read_bytes()).digest()).rstrip(b"=")
        if digest.decode() != entry.hash.value:
            mismatches.append(path)
    return mismatches


def target_files(site: Path, name: str, layer_sets=None) -> list[Path]:
    """The files of these layer sets (default: ConvLSTM's) of the flavour ``name`` under ``site``."""
    from patcher.environment import find_flavours
    from patcher.layersets import LayerSet

    (flavour,) = find_flavours([str(site)], only=name)
    return [target.path for target in flavour.files_of(layer_sets or {LayerSet.CONVLSTM})]


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in a file (which must hold it): a hand edit, or a broken patch."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def removed_lines(original: list[str], patched: list[str]) -> list[str]:
    """The stripped lines of ``original`` that ``patched`` replaced or deleted (a line diff without
    autojunk: blank lines are frequent enough to be junked otherwise)."""
    import difflib

    matcher = difflib.SequenceMatcher(None, original, patched, autojunk=False)
    return [
        line.strip()
        for tag, start, end, _, _ in matcher.get_opcodes()
        if tag in ("replace", "delete")
        for line in original[start:end]
    ]


def hashes(paths: list[Path]) -> dict[Path, str]:
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove nothing changed).

    The environment's (empty) lock file is left out: like any lock file it
    stays after the first run, by design.
    """
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.relative_to(folder) != LOCK_FILE
    }


def run_in_site(site: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a Python subprocess that imports Keras from ``site`` first."""
    environment = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    environment.setdefault("KERAS_BACKEND", "tensorflow")
    return subprocess.run([sys.executable, *args], env=environment, capture_output=True, text=True, timeout=600)
