"""Where users break things: an unprivileged user, a read-only folder, a disk
that fills part way, Ctrl-C during verification, odd paths and option values
(issue 11). Each test reproduces the user's situation with real conditions
where the machine allows (tests/hostile_helpers.py); README "Safety" lists
which promise each one proves.
"""

from __future__ import annotations

from pathlib import Path

from helpers import cli_at, copy_distribution, tree_hashes
from hostile_helpers import as_nobody, needs_setpriv

STATE = ".convlstm-patch"


def keras_site(folder: Path) -> Path:
    folder.mkdir(parents=True)
    copy_distribution("keras", folder)
    return folder


# -- nothing to write needs no write access (B9, B10) ---------------------------


@needs_setpriv
def test_already_patched_needs_no_write_access(tmp_path):
    """B9: a Docker image patched as root; the runtime user runs `apply` again."""
    site = keras_site(tmp_path / "image" / "site-packages")
    tmp_path.chmod(0o755)
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    before = tree_hashes(site)
    lock = site / STATE / "lock"
    lock_before = lock.stat()
    completed = as_nobody("apply", "--keras-root", str(site), "--only", "keras", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "already patched" in completed.stdout
    assert tree_hashes(site) == before
    assert lock.stat().st_mtime_ns == lock_before.st_mtime_ns


@needs_setpriv
def test_nothing_to_revert_or_clean_needs_no_write_access(tmp_path):
    """B10: revert and clean on a never-patched environment the user cannot write."""
    site = keras_site(tmp_path / "image" / "site-packages")
    tmp_path.chmod(0o755)
    before = tree_hashes(site)
    reverted = as_nobody("revert", "--keras-root", str(site), "--only", "keras", cwd=tmp_path)
    assert reverted.returncode == 0, reverted.stderr
    assert "nothing to revert" in reverted.stdout
    cleaned = as_nobody("clean", "--keras-root", str(site), "--only", "keras", cwd=tmp_path)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "no stale backups" in cleaned.stdout
    assert tree_hashes(site) == before
    assert not (site / STATE).exists()


def test_commands_with_nothing_to_write_create_no_file(site):
    """B10, as the owner: no lock file (nor state folder) where nothing is written."""
    before = tree_hashes(site)
    for command in ("revert", "clean", "status", "check", "diff"):
        assert cli_at(site, command).exit_code == 0, command
    assert not (site / STATE).exists()
    assert tree_hashes(site) == before
