"""The processes convlstm-patch starts in the target interpreter (`--python`'s discovery, the
verification probes): none outlives the tool, however it ends (Ctrl-C, SIGTERM, SIGHUP, a
timeout); they write no bytecode; their answer is found whatever else the interpreter prints.

Real conditions: a real `--python` that hangs at start-up or prints a banner (its
sitecustomize, through a wrapper script as users have them: `conda run`, pyenv shims), the
tool in a process of its own sent real signals. No Keras: the fake Keras
(tests/fake_keras.py) and the fake probe (tests/scripts/fake_probe.py, the `events` fixture).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT
from hostile_helpers import tool_env
from process_helpers import gone_soon, wait_for_file

POSIX = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="process groups and SIGHUP are POSIX")


def python_with_sitecustomize(folder: Path, code: str) -> Path:
    """A `--python` that runs ``code`` at start-up, as a sitecustomize does (a wrapper script
    putting its folder first on PYTHONPATH, then the real interpreter)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(code)
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{folder}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def hanging_python(folder: Path) -> tuple[Path, Path]:
    """A `--python` whose start-up hangs (a sitecustomize waiting on a dead network share) after
    starting a process of its own; and the file it writes both pids to once it hangs."""
    pids = folder / "pids"
    code = (
        "import os, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(pids)!r}, 'w').write('%d %d' % (os.getpid(), child.pid))\n"
        "time.sleep(600)\n"
    )
    return python_with_sitecustomize(folder, code), pids


def start_tool(*args: str) -> subprocess.Popen:
    """The tool in a session of its own, as a terminal runs a foreground command."""
    return subprocess.Popen(
        [sys.executable, "-m", "patcher", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=tool_env(), cwd=ROOT, start_new_session=True,
    )  # fmt: skip


@POSIX
@pytest.mark.parametrize(
    "how, signum, code",
    [
        pytest.param("Ctrl-C", signal.SIGINT, 130, id="ctrl-c"),
        pytest.param("SIGTERM", signal.SIGTERM, 143, id="sigterm-as-timeout-sends"),
        pytest.param("SIGHUP", getattr(signal, "SIGHUP", 1), 129, id="sighup-terminal-closed"),
    ],
)
def test_a_python_hanging_at_start_up_ends_with_the_tool(tmp_path, how, signum, code):
    """`status --python X` with X hanging at start-up, stopped by Ctrl-C, `timeout` (SIGTERM) or a
    closed terminal (SIGHUP): one Error line, exit 128 + the signal, and X is gone with its child."""
    python, pids = hanging_python(tmp_path / "env")
    tool = start_tool("status", "--python", str(python))
    hung = [int(pid) for pid in wait_for_file(pids).split()]
    if signum == signal.SIGINT:
        os.killpg(tool.pid, signum)  # the terminal's Ctrl-C: the foreground process group
    else:
        os.kill(tool.pid, signum)  # `timeout 5 convlstm-patch ...`, `kill`, a hang-up: the tool itself
    _, stderr = tool.communicate(timeout=60)
    left = gone_soon(hung)
    for pid in left:  # never leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"the hanging --python (and its child) outlived convlstm-patch stopped by {how}"
    assert tool.returncode == code, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: interrupted ({how}); "), stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr
