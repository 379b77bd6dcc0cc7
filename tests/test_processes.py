"""The processes convlstm-patch starts in the target interpreter (`--python`'s discovery, the
verification probes): none outlives the tool, however it ends (Ctrl-C, SIGTERM, SIGHUP, a
timeout); they write no bytecode; their answer is found whatever else the interpreter prints.

Real conditions: a real `--python` that hangs at start-up or prints a banner (its
sitecustomize, through a wrapper script as users have them: `conda run`, pyenv shims), the
tool in a process of its own sent real signals. No Keras: the fake Keras
(tests/fake_keras.py) and the fake probe (tests/scripts/fake_probe.py, the `events` fixture).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, cli
from hostile_helpers import tool_env
from process_helpers import gone_soon, read_events, sleeps, wait_for_file, wait_for_lines

POSIX = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="process groups and SIGHUP are POSIX")


def python_with_sitecustomize(folder: Path, code: str, site: Path | None = None) -> Path:
    """A `--python` that runs ``code`` at start-up, as a sitecustomize does (a wrapper script
    putting its folder, then ``site``, first on PYTHONPATH, then the real interpreter)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(code)
    path = os.pathsep.join(str(entry) for entry in (folder, site) if entry)
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{path}" exec "{sys.executable}" "$@"\n')
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


# -- the answer among what the interpreter prints ------------------------------------

BANNER = """
import atexit, sys
print("Welcome to the team's Python (conda env ml-2024)")  # at start-up, on stdout
sys.stdout.write("loading site hooks... ")  # a line left open
atexit.register(print, "bye from the team's Python")  # at exit, after everything else
"""


def test_a_banner_at_start_up_does_not_hide_the_python(fake_site, tmp_path):
    """A target whose sitecustomize prints on stdout at start-up and at exit: still found as a Python."""
    python = python_with_sitecustomize(tmp_path / "env", BANNER, site=fake_site)
    result = cli("status", "--python", str(python), "--only", "keras")
    assert result.exit_code == 0, result.output
    assert f"keras 3.99.0 (Keras 3) in {fake_site}" in result.stdout


def test_a_banner_does_not_hide_the_probes_answer(fake_site, tmp_path, events, taken_as_patched):
    """The same banner printed by every probe: its answer is still read, and it passed."""
    python = python_with_sitecustomize(tmp_path / "env", BANNER)
    result = cli("verify", "--keras-root", str(fake_site), "--python", str(python), "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["reports"]
    assert [(report["distribution"], report["passed"]) for report in reports] == [("keras", True), ("tf_keras", True)]
    assert len(read_events(events)) == 2


# -- no bytecode ---------------------------------------------------------------------


def test_no_process_started_in_the_target_writes_bytecode(fake_site, tmp_path, events, taken_as_patched, monkeypatch):
    """A target whose start-up imports a module from a folder without __pycache__ (uv's default), with
    PYTHONPYCACHEPREFIX set too: neither --python's discovery, nor the probe, nor what the probe
    starts writes bytecode (run as root on a user's venv, it would be root's, and left there)."""
    imported = tmp_path / "imported-by"
    env = tmp_path / "env"
    python = python_with_sitecustomize(
        env, f"import os\nopen({str(imported)!r}, 'a').write('%d\\n' % os.getpid())\n", site=fake_site
    )
    prefix = tmp_path / "pycache-prefix"
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # as users have it (a CI image may set it)
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(prefix))
    monkeypatch.setenv("FAKE_PROBE_CHILD", "1")  # the probe starts a Python of its own
    assert cli("status", "--python", str(python)).exit_code == 0
    result = cli("verify", "--python", str(python), "--only", "keras")
    assert result.exit_code == 0, result.output
    ((probe, run),) = read_events(events).items()
    wait_for_lines(imported, 4)  # two discoveries, the probe, and the probe's child
    assert {probe, *run["children"]} <= {int(pid) for pid in imported.read_text().split()}
    assert not (env / "__pycache__").exists(), "the processes in the target interpreter wrote bytecode"
    assert not prefix.exists(), "the processes in the target interpreter wrote bytecode under PYTHONPYCACHEPREFIX"


# -- a probe that takes longer than --timeout ------------------------------------------


def test_verify_that_times_out_says_so_and_how_long_to_give_it(fake_site, events, taken_as_patched, monkeypatch):
    """A probe that needs longer than `--timeout` (a slow disk, a busy machine): the Error line says
    it timed out, after how long, and the --timeout to try; not "failed check 'run'", and no revert."""
    sleeps(monkeypatch, keras=60)
    result = cli("verify", "--keras-root", str(fake_site), "--only", "keras", "--timeout", "2")
    assert result.exit_code == 9, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        (
            "Error: keras-3.99.0: verification did not finish within 2 s (timed out; its processes were killed); "
            "give it longer: `convlstm-patch verify --timeout 4`"
        )
    ], result.stderr
    ((pid, run),) = read_events(events).items()
    assert run["end"] is None and gone_soon([pid]) == []
