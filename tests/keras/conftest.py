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

import importlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import FLAVOURS, ROOT, Session, copy_distribution


def pytest_configure(config) -> None:
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
    Session.pristine_site = folder


def pytest_unconfigure(config) -> None:
    if Session.pristine_site is not None:
        shutil.rmtree(Session.pristine_site, ignore_errors=True)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site-packages folder with pristine copies of the installed keras and tf_keras."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    for name in FLAVOURS:
        copy_distribution(name, folder)
    return folder


@dataclass(frozen=True)
class Verified:
    """One real `apply --layers convlstm,lstm,gru`, verified, on both flavours."""

    site: Path  # read only: the tests that share it must not change it
    document: dict  # apply's --json document, its verification reports included
    output: str

    def reports(self, distribution: str) -> list[dict]:
        return [report for report in self.document["verification"] if report["distribution"] == distribution]


@pytest.fixture(scope="session")
def verified(tmp_path_factory) -> Verified:
    """The one full verification of the session, shared by the tests that read it (mark them
    ``pytest.mark.xdist_group(name="verified")`` so one worker runs it once)."""
    from helpers import cli_at

    folder = tmp_path_factory.mktemp("verified") / "site-packages"
    folder.mkdir()
    for name in FLAVOURS:
        copy_distribution(name, folder)
    result = cli_at(folder, "apply", "--layers", "convlstm,lstm,gru", "--json")
    assert result.exit_code == 0, result.output
    return Verified(folder, json.loads(result.stdout), result.output)
