"""What a release would upload, and what the documents tell users to install.

Tests import patcher from the checkout, so only these tests notice a package
or data file that setup.cfg forgot, an sdist that cannot build the wheel, or
metadata PyPI would refuse.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import fake_keras
import pytest
import venvs  # scripts/venvs.py (conftest puts scripts/ on sys.path)
from helpers import ROOT

from patcher import __version__

# What never goes into a build's source copy: build output, caches, VCS.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv*", ".cache", ".pytest_cache"
)
# The user-facing text that may name an install command.
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "scripts" / "github-actions-check.yml"]
MESSAGES = sorted((ROOT / "patcher").rglob("*.py"))
# An install of convlstm-patch by its (unpublished) name: pip, pipx, uv, conda.
INSTALL_BY_NAME = re.compile(r"(?:pip|pipx|uv pip|conda) install(?: -U| --upgrade)? convlstm-patch(?![-\w./])")


def expected_files() -> set[str]:
    """Every module and data file the installed tool needs, as wheel paths."""
    expected = {str(path.relative_to(ROOT)) for path in (ROOT / "patcher").rglob("*.py")}
    expected |= {
        "patcher/patches/" + str(path.relative_to(ROOT / "patches"))
        for path in (ROOT / "patches").rglob("*")
        if path.suffix in (".toml", ".json")
    }
    return expected


def test_wheel_contains_every_module_and_data_file(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("convlstm_patch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert expected_files() - names == set()
    assert any(name.endswith("entry_points.txt") for name in names)


@pytest.mark.parametrize(
    "text, names",
    [
        pytest.param("pip install convlstm-patch", True, id="pip"),
        pytest.param("`pip install -U convlstm-patch`", True, id="pip-upgrade"),
        pytest.param("pipx install convlstm-patch", True, id="pipx"),
        pytest.param("pip install ./convlstm-patch", False, id="a-checkout-folder"),
        pytest.param('pip install "convlstm-patch @ git+https://x@v1"', False, id="git-url"),
        pytest.param("pip install convlstm-patch-0.1.0.tar.gz", False, id="a-file"),
    ],
)
def test_install_by_name_is_recognised(text, names):
    assert bool(INSTALL_BY_NAME.search(text)) is names


def test_no_document_installs_the_unpublished_name():
    """`pip install convlstm-patch` finds nothing on PyPI (or, one day, someone else's package): a
    document names it only in the sentence that says it is not published yet."""
    found = []
    for path in DOCUMENTS + MESSAGES:
        text = path.read_text(encoding="utf-8")
        for match in INSTALL_BY_NAME.finditer(text):
            # The sentence around it (a paragraph's lines joined), up to the full stops either side.
            start = max(text.rfind(". ", 0, match.start()), text.rfind("\n\n", 0, match.start()), 0)
            end = min(
                position
                for position in (text.find(". ", match.end()), text.find("\n\n", match.end()), len(text))
                if position >= 0
            )
            sentence = " ".join(text[start:end].split())
            if "published" not in sentence:
                found.append(f"{path.relative_to(ROOT)}: {sentence}")
    assert not found, "\n".join(found)


@pytest.fixture(scope="module")
def distributions(tmp_path_factory) -> dict[str, Path]:
    """`python -m build` of a copy of the checkout: the sdist, then the wheel built from the sdist
    (so the sdist must hold everything the wheel needs). No build isolation: setuptools and wheel
    come from the test extra, so this needs no network."""
    folder = tmp_path_factory.mktemp("release")
    source = folder / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    completed = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(folder / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    (sdist,) = (folder / "dist").glob("convlstm_patch-*.tar.gz")
    (wheel,) = (folder / "dist").glob("convlstm_patch-*-py3-none-any.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.mark.slow  # builds both distributions (`python -m build`)
def test_sdist_and_wheel_hold_what_the_tool_needs(distributions):
    version = f"convlstm_patch-{__version__}"
    assert distributions["wheel"].name == f"{version}-py3-none-any.whl"
    assert distributions["sdist"].name == f"{version}.tar.gz"
    wheel = set(zipfile.ZipFile(distributions["wheel"]).namelist())
    assert expected_files() - wheel == set()
    assert f"{version}.dist-info/licenses/LICENSE" in wheel or f"{version}.dist-info/LICENSE" in wheel
    with tarfile.open(distributions["sdist"]) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    source = {path.replace("patcher/patches/", "patches/", 1) for path in expected_files()}
    assert source | {"LICENSE", "README.md", "setup.cfg", "pyproject.toml", "PKG-INFO"} <= members


@pytest.mark.slow  # builds both distributions
def test_twine_check_passes_on_both(distributions):
    completed = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(distributions["sdist"]), str(distributions["wheel"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count("PASSED") == 2, completed.stdout


def pinned_git_url() -> str:
    """README's third way, a git URL pinned to a commit: this checkout's HEAD, by file:// (pip clones it)."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout: no commit to pin")
    return f"git+{ROOT.as_uri()}@{head.stdout.strip()}"


@pytest.mark.slow  # a fresh venv per distribution; pip fetches click, libcst and filelock (or takes them from its cache)
@pytest.mark.parametrize("kind", ["wheel", "sdist", "git"])
def test_each_distribution_installs_into_a_fresh_venv_and_runs(distributions, kind, tmp_path):
    python = venvs.create(tmp_path / "venv")
    requirement = pinned_git_url() if kind == "git" else str(distributions[kind])
    completed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", requirement], capture_output=True, text=True, timeout=900
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    tool = python.parent / "convlstm-patch"

    def run(*args: str) -> subprocess.CompletedProcess:
        # From a folder that holds no checkout, so the installed copy is what runs.
        return subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)

    where = subprocess.run(
        [str(python), "-c", "import patcher; print(patcher.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout.strip()
    assert Path(where).resolve().is_relative_to((tmp_path / "venv").resolve()), where

    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith(f"convlstm-patch {__version__} ("), version
    assert "no Keras" in version.stdout, version.stdout

    # The fresh venv holds no Keras: one line saying so, exit 3 (README's exit codes).
    status = run("status")
    assert status.returncode == 3, status
    assert status.stdout == "" and status.stderr.startswith("Error: no keras or tf_keras installed"), status
    assert len(status.stderr.splitlines()) == 1, status.stderr

    # The packaged data is there: status names the layer sets patches/layouts.toml gives a Keras 3
    # layout, and check compares with the hash pins shipped for keras 3.15.1.
    site = fake_keras.install(tmp_path / "site", version="3.15.1")
    status = run("status", "--keras-root", str(site), "--json")
    assert status.returncode == 0, status.stderr
    (flavour,) = json.loads(status.stdout)["flavours"]
    assert flavour["layer_sets"]["supported"] == ["convlstm", "lstm", "gru"], flavour
    lock = json.loads((ROOT / "patches" / "pins" / "keras" / "3.15.1.json").read_text())
    checked = run("check", "--keras-root", str(site))
    assert checked.returncode == 1 and "drift" in checked.stdout, checked  # a fake Keras: not the locked bytes
    expected = lock["files"]["keras/src/layers/rnn/conv_lstm.py"]["pristine"]
    assert "conv_lstm.py: pristine sha256 " in checked.stdout and f"expected {expected[:16]}" in checked.stdout, checked
