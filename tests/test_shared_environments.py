"""Environments as teams, admins and shells have them, on the fake Keras with the simulation's
stand-ins (tests/scripts/simulated_tool.py) in real processes: a group-shared environment, files
with extended attributes (ACLs), a read-only file system holding an interrupted run, a pipe
closed by its reader."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import simulation as sim
from helpers import SCRIPTS

TOOL = str(SCRIPTS / "simulated_tool.py")
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def tool(
    *args: str, user: tuple[int, ...] | None = None, umask: int | None = None, **kwargs
) -> subprocess.CompletedProcess:
    prefix = []
    if user is not None:
        # Reading everything (the interpreter lives under /root), writing only what the user may.
        prefix = [
            "setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", f"--groups={','.join(map(str, user[1:]))}",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
        ]  # fmt: skip
    command = [*prefix, sys.executable, TOOL, *args]
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=preexec, **kwargs)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site-packages"
    sim.pip_install(site, "keras", "3.99.0")
    sim.pip_install(site, "tf_keras", "2.99.0")
    return site


@pytest.mark.skipif(
    not ROOT_USER or not shutil.which("setpriv"), reason="needs root and setpriv to be two users of one group"
)
def test_a_team_shared_environment_lets_each_member_apply_and_revert(site, tmp_path):
    """umask 002 and a group-writable, setgid environment (a team's shared venv): what one member's
    run makes (the state folder, the lock, the backup), another member can write, as pip's files."""
    group = 4242
    tmp_path.chmod(0o755)
    for path in [site, *site.rglob("*")]:
        os.chown(path, 1001, group)
        path.chmod(0o2775 if path.is_dir() else 0o664)
    # Each member's own primary group, the team's a supplementary one: what the setgid folder
    # gives a new folder (its group, and the setgid bit) is all that makes it the team's.
    alice, bob = (1001, 1001, group), (1002, 1002, group)
    first = tool("apply", "--keras-root", str(site), user=alice, umask=0o002)
    assert first.returncode == 0, first.stderr
    second = tool("revert", "--keras-root", str(site), user=bob, umask=0o002)
    assert second.returncode == 0, second.stderr
    assert tool("apply", "--keras-root", str(site), user=bob, umask=0o002).returncode == 0
    assert tool("revert", "--keras-root", str(site), user=alice, umask=0o002).returncode == 0


def test_extended_attributes_of_a_patched_file_are_kept(site):
    """An ACL (or any extended attribute) on a Keras file survives apply and revert, as the permission bits do."""
    target = site / sim.FILES["keras"][0]
    try:
        os.setxattr(target, "user.convlstm_test", b"kept")
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"this file system has no user extended attributes ({error.strerror})")
        raise
    assert tool("apply", "--keras-root", str(site)).returncode == 0
    assert sim.base_of(target.read_bytes()) != target.read_bytes()
    assert os.getxattr(target, "user.convlstm_test") == b"kept"
    assert tool("revert", "--keras-root", str(site)).returncode == 0
    assert os.getxattr(target, "user.convlstm_test") == b"kept"


def test_status_piped_into_head_exits_with_what_the_command_did(site):
    """`status | head -1`: the reader goes away, the exit code still says what status found (0)."""
    sim.pip_install(site, "keras", "3.99.0")
    done = subprocess.run(
        f"set -o pipefail; {sys.executable} {TOOL} status --keras-root {site} -v | head -1",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("keras 3.99.0")
    assert "Error" not in done.stderr


@pytest.mark.skipif(not ROOT_USER or not shutil.which("mount"), reason="needs root to mount a file system read-only")
def test_an_interrupted_run_on_a_read_only_file_system_is_said_at_once(tmp_path, stand_ins):
    """A run killed, then the environment's file system made read-only (a read-only bind mount, a
    Docker layer): nobody can be writing there, so readers say so at once (exit 7), not after
    waiting out --lock-timeout for a run that cannot exist (exit 11)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        site = mount / "site-packages"
        sim.pip_install(site, "keras", "3.99.0")
        killed = sim.wait(sim.start(["apply", "--keras-root", str(site)], sim.Fault.KILL, 25, tmp_path / "run"))
        assert killed.killed and sim.journals(site)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        start = time.monotonic()
        status = tool("status", "--keras-root", str(site), "--lock-timeout", "60")
        assert time.monotonic() - start < 30
        assert status.returncode == 7, status.stderr
        assert "read-only" in status.stderr and status.stderr.count("Error:") == 1, status.stderr
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("umask", [pytest.param(0o077, id="umask-077"), pytest.param(0o027, id="umask-027")])
def test_an_image_patched_under_a_strict_umask_keeps_our_state_as_readable_as_site_packages(site, tmp_path, umask):
    """A Docker image patched as root under a hardened umask, run by an unprivileged user: every
    folder and file of our state is as readable as site-packages (world-readable here), so that
    user's `status` and `check` can read them."""
    for path in [site, *site.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert tool("apply", "--keras-root", str(site), umask=umask).returncode == 0
    state = site / sim.STATE
    unreadable = [
        str(path.relative_to(site))
        for path in [state, *state.rglob("*")]
        if not path.stat().st_mode & 0o004 or (path.is_dir() and not path.stat().st_mode & 0o001)
    ]
    assert not unreadable, f"not readable by other users: {unreadable}"


@pytest.mark.parametrize("command", ["apply", "status"])
def test_a_closed_stdout_is_no_error(site, command):
    """Started with stdout closed (`>&-`: cron, some daemons and CI runners): the work is done and
    the exit code says so, instead of a bug report after the change went through."""
    done = subprocess.run(
        f"{sys.executable} {TOOL} {command} --keras-root {site} >&-",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Error" not in done.stderr
    if command == "apply":
        data = (site / "keras/src/layers/rnn/conv_lstm.py").read_bytes()
        assert sim.base_of(data) != data  # patched
