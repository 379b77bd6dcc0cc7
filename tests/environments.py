"""Throwaway Python environments for tests, built once and cached.

They live outside the repository (``$CONVLSTM_PATCH_ENV_CACHE`` or
``~/.cache/convlstm-patch/venvs``); tests work on copies of their Keras, or
only read them, never patch them in place.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("CONVLSTM_PATCH_ENV_CACHE", Path.home() / ".cache" / "convlstm-patch" / "venvs"))

# name -> (see this interpreter's packages (TensorFlow 2.21)?, what to install)
ENVIRONMENTS = {
    "keras-3.0.0": (True, ["keras==3.0.0"]),  # the oldest Keras 3
    "keras-2.15.0": (False, ["tensorflow-cpu==2.15.1", "keras==2.15.0"]),  # the newest Keras 2
}


def running_site_packages() -> list[str]:
    """The running interpreter's package folders, venv or not (in sys.path order).

    ``venv --system-site-packages`` would expose the *base* interpreter's
    packages, not a venv's; a ``.pth`` file naming these folders works from
    both. The session's pristine copy of Keras is left out (it is not a
    site folder), and the venv's own packages come first, so its Keras wins.
    """
    return [entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages") and Path(entry).is_dir()]


def environment(name: str) -> Path:
    """The venv's python, built on first use (a `.complete` marker guards half-built ones)."""
    reuse, packages = ENVIRONMENTS[name]
    shared = running_site_packages() if reuse else []
    # One venv per set of shared folders: a venv built beside another
    # interpreter's packages resolved its dependencies against those.
    key = hashlib.sha256("\n".join(shared).encode()).hexdigest()[:10] if shared else "own"
    folder = CACHE / f"{name}-{key}"
    python = folder / "bin" / "python"
    if not (folder / ".complete").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        if shared:
            (Path(site_packages(python)) / "_convlstm_patch_tests_shared.pth").write_text("\n".join(shared) + "\n")
        completed = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True, timeout=1800
        )
        if completed.returncode != 0:
            pytest.fail(f"could not build the {name} test environment: {completed.stderr[-1500:]}")
        (folder / ".complete").write_text("ok\n")
    return python


def site_packages(python: Path) -> Path:
    """The purelib folder of ``python``'s environment."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def tool_environment(tmp_path: Path) -> Path:
    """A venv holding only convlstm-patch (as `pipx install` makes one); its bin folder."""
    from helpers import ROOT

    folder = tmp_path / "tool-venv"
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    completed = subprocess.run(
        [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)], capture_output=True, text=True, timeout=900
    )
    if completed.returncode != 0:
        pytest.fail(f"could not install convlstm-patch into a venv: {completed.stderr[-1500:]}")
    return folder / "bin"
