"""Throwaway venvs that see the running interpreter's packages, never the base interpreter's.

Used by scripts/matrix.py (its cells) and tests/environments.py. Run from
inside a venv, as CI and users run, ``python -m venv --system-site-packages``
exposes the site-packages of the *base* interpreter (pyvenv.cfg's ``home``),
not those of the venv that runs it: on a fresh machine that base holds no
TensorFlow. A ``.pth`` file in the new venv naming the running interpreter's
site-packages folders works from a venv and from a plain interpreter alike.

``site`` appends a ``.pth`` file's folders after the venv's own
site-packages, so what the new venv installs itself comes first: its modules
and its dist-info (``importlib.metadata`` searches sys.path in order and
convlstm-patch takes the first distribution per name). pip in the new venv
sees the shared packages as installed and leaves them be ("outside
environment"): to get its own copy of a version the shared folders already
hold, install it with ``--ignore-installed --no-deps``.

Venvs live in ``$CONVLSTM_PATCH_ENV_CACHE`` (else
``~/.cache/convlstm-patch/venvs``), one per name and set of shared folders,
and are reused once built. A venv is made by the running interpreter, or by
another Python found with ``interpreter("3.9")`` (pyenv's, else python3.9 on
PATH): the keras 2.6-2.8 cells of the matrix and the suite's runs on other
Pythons (tests/test_pythons.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PTH_NAME = "_convlstm_patch_running_site.pth"
BUILT_MARKER = ".complete"  # written last: a venv without it is half-built and is rebuilt


class VenvError(RuntimeError):
    """A venv could not be created or asked for its folders."""


def cache_dir() -> Path:
    configured = os.environ.get("CONVLSTM_PATCH_ENV_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "convlstm-patch" / "venvs"


def running_site_packages() -> list[str]:
    """The running interpreter's package folders, venv or not, in sys.path order.

    Folders that are not site folders (the tests' pristine copy of Keras, the
    scripts folder, the checkout) are left out.
    """
    return [
        entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages") and Path(entry).is_dir()
    ]


def folder(name: str, shared: Sequence[str] = ()) -> Path:
    """Where the venv ``name`` lives: one per set of shared folders, since pip
    resolved its packages against what those held."""
    if not shared:
        return cache_dir() / name
    key = hashlib.sha256("\n".join(shared).encode()).hexdigest()[:10]
    return cache_dir() / f"{name}-{key}"


def is_built(venv: Path) -> bool:
    return (venv / BUILT_MARKER).exists()


def mark_built(venv: Path) -> None:
    (venv / BUILT_MARKER).write_text("ok\n")


def pyenv_root() -> Path:
    """$PYENV_ROOT, else the folder the `pyenv` on PATH lives in (CI runs with an empty HOME), else ~/.pyenv."""
    configured = os.environ.get("PYENV_ROOT")
    if configured:
        return Path(configured).expanduser()
    found = shutil.which("pyenv")  # ROOT/bin/pyenv, or ROOT/libexec/pyenv behind a link
    if found and (Path(found).resolve().parent.parent / "versions").is_dir():
        return Path(found).resolve().parent.parent
    return Path.home() / ".pyenv"


def interpreter(version: str) -> Path | None:
    """An interpreter of Python ``version`` ("3.9"): pyenv's newest 3.9.x, else python3.9 on PATH
    (the real executable behind it: a pyenv shim for a version not selected only fails); None if neither."""
    installed = sorted(
        (
            path
            for path in (pyenv_root() / "versions").glob(f"{version}.*/bin/python{version}")
            if path.parent.parent.name.removeprefix(f"{version}.").isdigit()
        ),  # not 3.9-dev, 3.13.0t
        key=lambda path: int(path.parent.parent.name.rsplit(".", 1)[1]),
    )
    if installed:
        return installed[-1]
    found = shutil.which(f"python{version}")
    if not found:
        return None
    try:
        answer = subprocess.run(
            [found, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(answer.stdout.strip()) if answer.returncode == 0 and answer.stdout.strip() else None


def create(venv: Path, shared: Sequence[str] = (), timeout: float = 300, base: Path | None = None) -> Path:
    """A fresh venv at ``venv`` (emptied if it exists) made by ``base`` (default: the running
    interpreter), seeing ``shared`` after its own packages; its python."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    maker = str(base or sys.executable)
    _run([maker, "-m", "venv", "--clear", str(venv)], f"{maker} -m venv {venv}", timeout)
    python = venv / "bin" / "python"
    if shared:
        site = purelib(python)
        if venv.resolve() not in site.resolve().parents:
            raise VenvError(
                f"the venv's site-packages resolved to {site}, outside {venv}: not writing {PTH_NAME} there"
            )
        (site / PTH_NAME).write_text("\n".join(shared) + "\n")
    return python


def purelib(python: Path) -> Path:
    """The purelib (site-packages) folder of ``python``'s environment."""
    # Not `python -S`: without site.py, sys.prefix is the base interpreter's
    # (Python <= 3.11) and purelib would be the base's site-packages.
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_run([str(python), "-c", code], f"{python}: purelib", 60).stdout.strip())


def _run(command: list[str], what: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise VenvError(f"{what}: {error}") from None
    if completed.returncode != 0:
        lines = (completed.stderr or completed.stdout).strip().splitlines()
        raise VenvError(f"{what} failed: {lines[-1] if lines else f'exit {completed.returncode}'}")
    return completed
