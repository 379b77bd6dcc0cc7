"""Throwaway Python environments for tests, built once and cached.

They live outside the repository (``$CONVLSTM_PATCH_ENV_CACHE`` or
``~/.cache/convlstm-patch/venvs``); tests work on copies of their Keras, or
only read them, never patch them in place. Those that share the running
interpreter's packages see them through a ``.pth`` file (scripts/venvs.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import venvs  # scripts/venvs.py (conftest puts scripts/ on sys.path)

# name -> (see the running interpreter's packages (TensorFlow 2.21)?, what to install)
ENVIRONMENTS = {
    "keras-3.0.0": (True, ["keras==3.0.0"]),  # the oldest Keras 3
    "keras-2.15.0": (False, ["tensorflow-cpu==2.15.1", "keras==2.15.0"]),  # the newest Keras 2
}


def environment(name: str) -> Path:
    """The venv's python, built on first use."""
    reuse, packages = ENVIRONMENTS[name]
    # The session's pristine copy of Keras is no site folder: left out, so the venv's own Keras is found.
    shared = venvs.running_site_packages() if reuse else []
    folder = venvs.folder(name, shared)
    python = folder / "bin" / "python"
    if not venvs.is_built(folder):
        try:
            venvs.create(folder, shared)
        except venvs.VenvError as error:
            pytest.fail(f"could not create the {name} test environment: {error}")
        completed = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True, timeout=1800
        )
        if completed.returncode != 0:
            pytest.fail(f"could not build the {name} test environment: {completed.stderr[-1500:]}")
        venvs.mark_built(folder)
    return python


site_packages = venvs.purelib  # the purelib folder of a python's environment


def tool_environment(tmp_path: Path) -> Path:
    """A venv holding only convlstm-patch (as `pipx install` makes one); its bin folder."""
    from helpers import ROOT

    folder = tmp_path / "tool-venv"
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    completed = subprocess.run(
        [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if completed.returncode != 0:
        pytest.fail(f"could not install convlstm-patch into a venv: {completed.stderr[-1500:]}")
    return folder / "bin"
