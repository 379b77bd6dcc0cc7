"""Fixtures: throwaway copies of the installed Keras, never the real one.

The environment the tests run in may be pristine, patched by
`convlstm-patch apply` (README's first command does that), patched with
--force over an edited file, or lack tf_keras. So the session starts by
building one pristine copy of keras and tf_keras in a temporary folder
(``scripts/pristine.py``: live files, the environment's backup or the
release's wheel, each checked against RECORD) and puts it first on
``sys.path``: every in-process ``import keras`` and every test's ``site``
copy then see stock Keras, and the environment itself is only read.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest

FLAVOURS = ("keras", "tf_keras")
ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = Path(".convlstm-patch/lock")
# The session's pristine keras and tf_keras (set by pytest_configure).
PRISTINE_SITE: Path | None = None


def pytest_configure(config) -> None:
    global PRISTINE_SITE
    sys.path.insert(0, str(ROOT / "scripts"))
    from pristine import NoPristineSource, copy_pristine

    folder = Path(tempfile.mkdtemp(prefix="convlstm-patch-pristine-"))
    try:
        for name in FLAVOURS:
            copy_pristine(name, folder, path=sys.path[1:])
    except NoPristineSource as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise pytest.UsageError(f"cannot make a pristine copy of Keras for the tests: {error}") from None
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    PRISTINE_SITE = folder


def pytest_unconfigure(config) -> None:
    if PRISTINE_SITE is not None:
        shutil.rmtree(PRISTINE_SITE, ignore_errors=True)


def copy_distribution(name: str, site: Path, source_site: Path | None = None) -> None:
    """Copy a distribution's package folder and dist-info into ``site``.

    From the session's pristine copy, or from ``source_site`` (another env's site-packages).
    """
    source_site = source_site or PRISTINE_SITE
    dist = next(metadata.distributions(name=name, path=[str(source_site)]))
    source_site = Path(dist.locate_file("")).resolve()
    info = source_site / f"{name}-{dist.version}.dist-info"
    shutil.copytree(source_site / name, site / name)
    shutil.copytree(info, site / info.name)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site-packages folder with pristine copies of the installed keras and tf_keras."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    for name in FLAVOURS:
        copy_distribution(name, folder)
    return folder


def target_files(site: Path, name: str) -> list[Path]:
    from patcher.environment import find_flavours

    (flavour,) = find_flavours([str(site)], only=name)
    return [target.path for target in flavour.files]


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
