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
from helpers import FLAVOURS, ROOT, Session, copy_distribution, link_distribution, record_mismatches


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
    folder.chmod(0o755)  # the `site` folders link here, and some tests run as another user
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    Session.pristine_site = folder


@pytest.fixture(scope="session", autouse=True)
def pristine_copy_stays_pristine():
    """The tests' `site` folders link to the session's pristine copy: the last test of the
    session errors if one wrote through a link."""
    yield
    changed = [path for name in FLAVOURS for path in record_mismatches(name, Session.pristine_site)]
    if changed:
        pytest.fail(
            f"a test wrote through a link into the session's pristine Keras: {', '.join(map(str, changed[:5]))}"
        )


def pytest_unconfigure(config) -> None:
    if Session.pristine_site is not None:
        shutil.rmtree(Session.pristine_site, ignore_errors=True)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site-packages folder with pristine copies of the installed keras and tf_keras (the
    folders convlstm-patch may patch copied, the rest linked: helpers.link_distribution)."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    for name in FLAVOURS:
        link_distribution(name, folder)
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
def verified(tmp_path_factory, worker_id) -> Verified:
    """The one full verification of the session, shared by the tests that read it.

    Under pytest-xdist every worker has its own session: the first to take the
    lock makes it in the run's shared temporary folder, the others wait and read
    it (pytest-xdist's recipe for a session fixture made once; its
    ``xdist_group`` marks are not honoured by pytest 9.2, which ignores the
    node ids xdist rewrites)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    folder = shared / "verified" / "site-packages"
    document = shared / "verified" / "apply.json"
    with FileLock(str(shared / "verified.lock")):
        if not document.exists():
            folder.mkdir(parents=True)
            for name in FLAVOURS:
                copy_distribution(name, folder)
            from helpers import cli_at

            result = cli_at(folder, "apply", "--layers", "convlstm,lstm,gru", "--json")
            assert result.exit_code == 0, result.output
            document.write_text(json.dumps({"document": json.loads(result.stdout), "output": result.output}))
    made = json.loads(document.read_text())
    return Verified(folder, made["document"], made["output"])
