"""The processes convlstm-patch starts in the target interpreter: `--python`'s discovery and the
verification probes.

Each starts in a session of its own (POSIX), so a Ctrl-C in the terminal reaches the tool alone,
which then kills it with everything it started: whatever ends the tool's wait early (Ctrl-C,
SIGTERM or SIGHUP, see patcher/interrupts.py; a timeout) kills it first. Neither it nor what it
starts writes bytecode (``-B``, and PYTHONDONTWRITEBYTECODE, which its own children inherit):
run by root on a user's venv (`sudo convlstm-patch apply --python ...`), an import would leave
root-owned ``__pycache__`` folders the user cannot delete, in Keras and in the backup the probe
imports the originals from, and the user's `revert` could no longer remove them.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping


def python_command(python: str, *arguments: str) -> list[str]:
    """``python -B ARGUMENTS``: the interpreter writes no bytecode (nor under a PYTHONPYCACHEPREFIX)."""
    return [python, "-B", *arguments]


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: ours) with PYTHONDONTWRITEBYTECODE set, for the processes a probe starts."""
    return {**(os.environ if base is None else base), "PYTHONDONTWRITEBYTECODE": "1"}


def start(command: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start ``command`` (from python_command) in a session of its own, its output piped, no input."""
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=environment(env),
        start_new_session=True,
    )


def ended(process: subprocess.Popen) -> bool:
    """Has a process from :func:`start` exited? If so, whatever it started and left running in its
    process group (a daemon that closed its pipes) is killed, then it is reaped: killed before the
    reaping, while its zombie keeps the group's id from being given to another process. (A child
    that made a session of its own with setsid() is out of reach.)"""
    waitid, killpg = getattr(os, "waitid", None), getattr(os, "killpg", None)
    if waitid is not None and killpg is not None and process.returncode is None:
        try:
            exited = waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # reaped already
            exited = False
        if exited:
            try:
                killpg(process.pid, signal.SIGKILL)
            except OSError:  # nothing of it left but the zombie
                pass
    return process.poll() is not None


def kill_group(process: subprocess.Popen, drain: bool = True) -> None:
    """Kill a process from :func:`start` and everything it started, and reap it.

    Process groups and SIGKILL are POSIX; elsewhere (Windows) the process alone is killed.
    ``drain``: read what is left in its pipes (communicate); False when other threads
    read them (then only wait for it).
    """
    killpg, sigkill = getattr(os, "killpg", None), getattr(signal, "SIGKILL", None)
    try:
        if killpg is None or sigkill is None:
            raise OSError
        killpg(process.pid, sigkill)
    except OSError:
        process.kill()
    if drain:
        process.communicate()
    else:
        process.wait()
