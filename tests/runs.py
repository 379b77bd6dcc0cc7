"""Real convlstm-patch processes for the race and interruption tests.

A run can be held at a named point (patcher/pauses.py: after discovery, after
taking the lock, after writing, before deleting a backup) and released, so a
race is reproduced step by step instead of hoped for with sleeps.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers import ROOT


def tool_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


class Run:
    """``python -m patcher ARGS`` in its own process (and session), optionally held at a point."""

    def __init__(self, *args: str, pause_at: str | None = None, folder: Path | None = None, **env: str) -> None:
        self.args = args
        # A folder made here is removed when the run ends; a given one belongs to the caller.
        self.owns_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="convlstm-patch-pause-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.point = pause_at
        extra = {"CONVLSTM_PATCH_PAUSE_AT": pause_at, "CONVLSTM_PATCH_PAUSE_DIR": str(self.folder)} if pause_at else {}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "patcher", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=tool_env(**extra, **env), cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        self.stdout = self.stderr = ""

    def held(self, timeout: float = 300) -> Run:
        """Wait until the run is held at its point (fail if it ends first)."""
        reached = self.folder / f"{self.point}.reached"
        deadline = time.monotonic() + timeout
        while not reached.exists():
            if self.process.poll() is not None:
                self.finish()
                raise AssertionError(
                    f"{' '.join(self.args)} ended (exit {self.process.returncode}) before "
                    f"{self.point}: {self.stderr[-800:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{' '.join(self.args)} never reached {self.point}")
            time.sleep(0.02)
        return self

    def release(self) -> Run:
        (self.folder / f"{self.point}.go").touch()
        return self

    def running(self, for_seconds: float = 0.0) -> bool:
        """Still running (after waiting ``for_seconds``, e.g. to show it waits for a lock)."""
        deadline = time.monotonic() + for_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return self.process.poll() is None

    def kill(self) -> Run:
        """SIGKILL to the run and everything it started (the OOM killer, a CI timeout)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.finish()
        return self

    def finish(self, timeout: float = 600) -> Run:
        self.stdout, self.stderr = self.process.communicate(timeout=timeout)
        if self.owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        return self

    @property
    def returncode(self) -> int:
        return self.process.returncode

    @property
    def output(self) -> str:
        return f"exit {self.returncode}\n{self.stdout}{self.stderr}"


def run(*args: str, **env: str) -> Run:
    """A run to its end."""
    return Run(*args, **env).finish()
