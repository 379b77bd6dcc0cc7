"""The processes the tests watch: the fake probe's runs (tests/scripts/fake_probe.py, from the
log it keeps) and whether a process is still alive.

The ``events`` fixture (tests/conftest.py) puts the fake probe in place of the real ones.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from helpers import SCRIPTS

FAKE_PROBE = SCRIPTS / "fake_probe.py"


def read_events(log: Path) -> dict[int, dict]:
    """probe pid -> {"package", "backend", "kind", "start", "end" (None: killed), "children": [pid]}."""
    runs: dict[int, dict] = {}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        run = runs.setdefault(event["probe"], dict(event, start=None, end=None, children=[]))
        if event["event"] == "child":
            run["children"].append(event["pid"])
        else:
            run[event["event"]] = event["time"]
    return runs


def sleeps(monkeypatch, **seconds: float) -> None:
    """How long the fake probe sleeps, per "PACKAGE", "PACKAGE/BACKEND" or "PACKAGE KIND"."""
    monkeypatch.setenv("FAKE_PROBE_SLEEP", json.dumps(seconds))


def alive(pid: int) -> bool:
    """Is the process still there (a zombie, killed but not yet reaped by its parent, is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a pid reused by another user's process
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return not status.parent.parent.is_dir()  # no /proc: os.kill is all there is


def gone_soon(pids: list[int], seconds: float = 10) -> list[int]:
    """The pids still alive after up to ``seconds`` (an orphan is reaped by init, not at once)."""
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def wait_for_file(path: Path, seconds: float = 60) -> str:
    """The text of ``path`` once it exists and is not empty (a process writes it when it gets there)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


def wait_for_lines(path: Path, count: int, seconds: float = 60) -> list[str]:
    """The lines of ``path`` once it has at least ``count`` (processes append one each)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} has fewer than {count} lines: {lines}")


def processes_mentioning(text: str) -> list[int]:
    """The live processes whose command line mentions ``text`` (a probe names its --site), from /proc."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command and alive(int(entry.name)):
            found.append(int(entry.name))
    return found
