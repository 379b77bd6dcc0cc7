"""What tests/test_hostile.py shares: the tool run as an unprivileged user, a
read-only (immutable) folder, a small full disk, a CLI process to interrupt.

Real conditions, not injected errors: user ``nobody`` through setpriv, EPERM
from ``chattr +i`` (even for root), ENOSPC from a small tmpfs, SIGINT and
SIGKILL from the kernel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, SCRIPTS

NOBODY = 65534
LAUNCHER = str(SCRIPTS / "hostile_launcher.py")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a real other user, chattr, mount)")
needs_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to run as another user"
)
needs_chattr = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("chattr"), reason="needs root and chattr for a real read-only folder"
)


def tool_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The tool as user nobody: can read everything (the interpreter lives under /root), write nothing of root's."""
    command = [
        "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
        sys.executable, "-m", "patcher", *args,
    ]  # fmt: skip
    env = tool_env(HOME=str(cwd))
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def run_tool(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m patcher ARGS`` in a fresh process (real signals, real exit codes)."""
    return subprocess.run(
        [sys.executable, "-m", "patcher", *args],
        capture_output=True, text=True, env=env or tool_env(), cwd=cwd or ROOT, timeout=600,
    )  # fmt: skip


@contextlib.contextmanager
def immutable(*folders: Path) -> Iterator[None]:
    """chattr +i: a real EPERM on every write in the folder, even for root; always undone."""
    done = []
    try:
        for folder in folders:
            subprocess.run(["chattr", "+i", str(folder)], check=True)
            done.append(folder)
        yield
    finally:
        for folder in done:
            subprocess.run(["chattr", "-i", str(folder)], check=False)


@contextlib.contextmanager
def small_disk(megabytes: int) -> Iterator[Path]:
    """A tmpfs of this size: a real disk that can fill up (ENOSPC); always unmounted."""
    folder = Path(tempfile.mkdtemp(prefix="convlstm-patch-disk-"))
    completed = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if completed.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {completed.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


def run_launcher(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The CLI under tests/scripts/hostile_launcher.py (FILL_AFTER / FILL_FILE: fill the disk part way)."""
    return subprocess.run(
        [sys.executable, LAUNCHER, *args], capture_output=True, text=True, env=tool_env(**env), cwd=ROOT, timeout=600
    )
