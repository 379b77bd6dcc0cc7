"""No POSIX-only call crashes the core flows where the platform lacks it (Windows).

Nothing here can run Windows: these tests remove the POSIX-only names from
``os`` and ``signal`` (``geteuid``, ``chown``, ``killpg``, ``SIGKILL``, ``SIGHUP``)
and run the flows that used them. That proves no AttributeError, not that Windows works.
"""

from __future__ import annotations

import os
import signal
import sys
import types

import pytest
from helpers import cli, cli_at, hashes, target_files

from patcher import environment, interrupts, processes

POSIX_ONLY = ["geteuid", "getuid", "chown", "killpg"]


@pytest.fixture
def without_posix(monkeypatch):
    """os without its POSIX-only functions; our modules' ``signal`` without SIGKILL and SIGHUP (only
    theirs: subprocess itself needs SIGKILL on Linux, and on Windows kills another way)."""
    for name in POSIX_ONLY:
        monkeypatch.delattr(os, name, raising=False)
    posix_signals = ("SIGKILL", "SIGHUP")
    without = types.SimpleNamespace(**{n: getattr(signal, n) for n in dir(signal) if n not in posix_signals})
    for module in (processes, interrupts):
        monkeypatch.setattr(module, "signal", without)


def test_apply_status_check_and_revert_without_posix_calls(site, without_posix):
    files = target_files(site, "keras")
    pristine = hashes(files)
    for command in (("apply", "--no-verify", "--layers", "convlstm,lstm,gru"), ("status",), ("check",), ("diff",)):
        result = cli_at(site, *command, "--only", "keras")
        assert result.exit_code == 0, (command, result.output)
    assert hashes(files) != pristine
    reverted = cli_at(site, "revert", "--only", "keras")
    assert reverted.exit_code == 0, reverted.output
    assert hashes(files) == pristine


def test_a_hanging_python_is_killed_without_process_groups(tmp_path, monkeypatch, without_posix):
    hanging = tmp_path / "python"
    hanging.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import time; time.sleep(60)'\n")
    hanging.chmod(0o755)
    monkeypatch.setattr(environment, "INTERPRETER_TIMEOUT", 1)
    result = cli("status", "--python", str(hanging))
    assert result.exit_code == 3, result.output
    assert "did not answer within 1 s (timed out; it was killed)" in result.stderr
    assert not hasattr(os, "killpg")  # the fixture really removed it
