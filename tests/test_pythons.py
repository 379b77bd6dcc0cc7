"""Every Python the package claims, run: setup.cfg's classifiers say which, and these tests run them.

On the oldest and the newest claimed Python, README's two test commands run
as written (`pip install ".[test]" && python -m pytest`), in a fresh venv of
pyenv's interpreter, in a clone of the checkout with its working tree copied
over it (some tests read git): TensorFlow has wheels for both.
On those between, `pip install .` and the tests that need no Keras (`tests/`
without `tests/keras`, with the test extra less TensorFlow and tf-keras). The
running Python (CI's and README's) runs README's command itself.

An interpreter that is missing is a skip that says so, and a failure where
CONVLSTM_PATCH_REQUIRE_PYTHONS=1 (.ci/run).
"""

from __future__ import annotations

import configparser
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import venvs  # scripts/venvs.py
from helpers import ROOT

SETUP = configparser.ConfigParser()
SETUP.read(ROOT / "setup.cfg")
CLAIMED = sorted(
    (
        match.group(1)
        for match in re.finditer(
            r"Programming Language :: Python :: (3\.\d+)$", SETUP["metadata"]["classifiers"], re.MULTILINE
        )
    ),
    key=lambda version: int(version.split(".")[1]),
)
RUNNING = ".".join(platform.python_version_tuple()[:2])
FULL = {CLAIMED[0], CLAIMED[-1]}  # README's test command, TensorFlow included
NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv*", ".cache", ".pytest_cache"
)


def test_python_requires_and_classifiers_agree():
    assert SETUP["options"]["python_requires"] == f">={CLAIMED[0]}"
    minors = [int(version.split(".")[1]) for version in CLAIMED]
    assert minors == list(range(minors[0], minors[-1] + 1)), CLAIMED  # no gap
    assert RUNNING in CLAIMED


def interpreter(version: str) -> Path:
    found = venvs.interpreter(version)
    if found is None:
        message = f"no Python {version} interpreter here (pyenv install {version}, or put python{version} on PATH)"
        if os.environ.get("CONVLSTM_PATCH_REQUIRE_PYTHONS"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def extra_without_tensorflow() -> list[str]:
    """The test extra less what needs TensorFlow for that Python."""
    requirements = [line.strip() for line in SETUP["options.extras_require"]["test"].splitlines()]
    return [
        line for line in requirements if line and not line.startswith("#") and line not in ("tensorflow", "tf-keras")
    ]


def clone(folder: Path) -> Path:
    """A git clone of the checkout (as CI's), with the working tree's files copied over it."""
    cloned = subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], capture_output=True, text=True)
    assert cloned.returncode == 0, f"git clone of {ROOT}: {cloned.stderr.strip()}"
    shutil.copytree(ROOT, folder, ignore=NOT_SOURCE, dirs_exist_ok=True)
    return folder


def shell(command: str, cwd: Path, venv: Path, timeout: float) -> subprocess.CompletedProcess:
    """``command`` run by bash as a user would type it, with the venv's bin first on PATH."""
    # As a newcomer's shell: none of CI's CONVLSTM_PATCH_* switches, no other venv or pytest settings.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST", "CONVLSTM_PATCH_"))
    }
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv))
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # a venv per Python, pip downloads (TensorFlow for the oldest and newest), the suite itself
@pytest.mark.parametrize("version", [version for version in CLAIMED if version != RUNNING])
def test_the_suite_passes_on(version, tmp_path):
    base = interpreter(version)
    source = clone(tmp_path / "convlstm-patch")
    venv = tmp_path / "venv"
    venvs.create(venv, base=base)
    if version in FULL:
        install, test = 'pip install ".[test]"', "python -m pytest -p no:cacheprovider"
    else:
        extra = " ".join(f"'{requirement}'" for requirement in extra_without_tensorflow())
        install, test = f"pip install . {extra}", "python -m pytest -p no:cacheprovider tests --ignore=tests/keras"
    installed = shell(install, source, venv, timeout=1800)
    assert installed.returncode == 0, f"{install} on Python {version}: {installed.stderr[-3000:]}"
    said = shell("convlstm-patch --version", tmp_path, venv, timeout=120)
    assert said.returncode == 0 and f"(Python {version}." in said.stdout, said

    ran = shell(test, source, venv, timeout=3000)
    summary = ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ran.stderr[-2000:]
    assert ran.returncode == 0, f"{test} on Python {version}: {summary}\n{ran.stdout[-6000:]}"
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    # Not a run that collected next to nothing: README's command runs the whole default suite.
    assert passed > (500 if version in FULL else 250), summary
    print(f"Python {version}: {test}: {summary}")
