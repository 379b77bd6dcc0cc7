"""Where users break things: an unprivileged user, a read-only folder, a disk
that fills part way, Ctrl-C during verification, odd paths and option values.
Each test reproduces the user's situation with real conditions
where the machine allows (tests/hostile_helpers.py); docs/safety.md lists
which promise each one proves.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, Session, cli, cli_at, copy_distribution, hashes, target_files, tree_hashes
from hostile_helpers import (
    NOBODY,
    as_nobody,
    immutable,
    needs_chattr,
    needs_root,
    needs_setpriv,
    run_launcher,
    run_tool,
    small_disk,
    tool_env,
)
from process_helpers import gone_soon, processes_mentioning, sleeps

STATE = ".convlstm-patch"
CELL = "keras/src/layers/rnn/conv_lstm.py"
GRU = "keras/src/layers/rnn/gru.py"


def keras_site(folder: Path) -> Path:
    folder.mkdir(parents=True)
    copy_distribution("keras", folder)
    return folder


def nobodys_venv(tmp_path: Path) -> Path:
    """The site-packages of a venv that user nobody owns, with a copy of keras."""
    site = keras_site(tmp_path / "venv" / "site-packages")
    tmp_path.chmod(0o755)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(tmp_path / "venv")], check=True)
    return site


# -- nothing to write needs no write access -------------------------------------


@needs_setpriv
def test_already_patched_needs_no_write_access(tmp_path):
    """A Docker image patched as root; the runtime user runs `apply` again."""
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
    """Revert and clean on a never-patched environment the user cannot write."""
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
    """As the owner: no lock file (nor state folder) where nothing is written."""
    before = tree_hashes(site)
    for command in ("revert", "clean", "status", "check", "diff"):
        assert cli_at(site, command).exit_code == 0, command
    assert not (site / STATE).exists()
    assert tree_hashes(site) == before


# -- all or nothing ---------------------------------------------------------------


@needs_setpriv
def test_bytecode_root_compiled_in_a_users_venv_changes_nothing(tmp_path):
    """The user's venv, whose __pycache__ root once compiled (`sudo python -m compileall`)."""
    site = nobodys_venv(tmp_path)
    rnn = site / "keras/src/layers/rnn"
    cache = rnn / "__pycache__"
    shutil.rmtree(cache, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(rnn)], check=True)  # as root
    assert cache.stat().st_uid == 0 and list(cache.glob("conv_lstm1d.*.pyc"))
    before = tree_hashes(site)
    applied = as_nobody("apply", "--keras-root", str(site), "--only", "keras", "--no-verify", cwd=tmp_path)
    assert applied.returncode == 7, applied.stderr
    assert "cannot delete the cached bytecode" in applied.stderr and "nothing was changed" in applied.stderr
    assert tree_hashes(site) == before  # no patched file, no backup, no journal
    assert as_nobody("revert", "--keras-root", str(site), "--only", "keras", cwd=tmp_path).returncode == 0
    # Once root's bytecode is gone, the user patches and reverts as usual.
    shutil.rmtree(cache)
    for command in (("apply", "--no-verify"), ("revert",)):
        done = as_nobody(command[0], "--keras-root", str(site), "--only", "keras", *command[1:], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert tree_hashes(site) == before


def test_undeletable_bytecode_of_the_second_file_changes_nothing(site):
    """As root: a folder where conv_lstm1d's .pyc would be (unlink fails with EISDIR)."""
    cache = site / "keras/src/layers/rnn/__pycache__"
    cache.mkdir(exist_ok=True)
    blocker = cache / f"conv_lstm1d.{sys.implementation.cache_tag}.pyc"
    blocker.unlink(missing_ok=True)
    blocker.mkdir()
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert result.exit_code == 7, result.output
    assert tree_hashes(site) == before
    blocker.rmdir()
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    blocker.mkdir()
    patched = tree_hashes(site)
    result = cli_at(site, "revert", "--only", "keras")
    assert result.exit_code == 7, result.output
    assert tree_hashes(site) == patched  # revert refused before its first write: still patched, backup kept
    blocker.rmdir()
    assert cli_at(site, "revert", "--only", "keras").exit_code == 0
    assert tree_hashes(site) == before


@needs_chattr
def test_second_flavour_read_only_rolls_the_first_back(site):
    """Keras and tf_keras are one transaction; tf_keras's folder is immutable."""
    before = tree_hashes(site)
    with immutable(site / "tf_keras/src/layers/rnn"):
        result = cli_at(site, "apply", "--no-verify")
        assert result.exit_code == 7, result.output
        assert "cannot write" in result.stderr
        assert tree_hashes(site) == before  # keras rolled back too: no patched file, backup or journal
    assert cli_at(site, "status", "--json").exit_code == 0
    assert "recovered" not in cli_at(site, "status").output


@needs_root
def test_disk_full_after_the_first_file_puts_it_back_in_the_same_run():
    """A real full disk (a small tmpfs) right after the first Keras file is replaced."""
    with small_disk(64) as disk:
        site = keras_site(disk / "site-packages")
        before = tree_hashes(site)
        filler = disk / "filler"
        completed = run_launcher(
            "apply", "--keras-root", str(site), "--only", "keras", "--no-verify",
            FILL_AFTER=str(site / CELL), FILL_FILE=str(filler),
        )  # fmt: skip
        assert f"filled: {filler}" in completed.stderr
        assert completed.returncode == 7, completed.stderr
        assert "no space left" in completed.stderr
        assert tree_hashes(site) == before  # the first file put back in the same run: no journal, no backup
        filler.unlink()
        assert "not patched" in cli_at(site, "revert", "--only", "keras").output


def apply_until_verifying(site: Path) -> subprocess.Popen:
    """`apply` in its own session (as a terminal runs it), returned once its verification imports Keras."""
    process = subprocess.Popen(
        [sys.executable, "-m", "patcher", "apply", "--keras-root", str(site), "--only", "keras"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_env(), cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "importing keras" in line:
            return process
    process.wait()
    raise AssertionError(f"apply never reached its verification: {''.join(seen)}")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the probes in /proc")
@pytest.mark.parametrize(
    "how, signum, code",
    [
        pytest.param("Ctrl-C", signal.SIGINT, 130, id="ctrl-c"),
        pytest.param("SIGTERM", signal.SIGTERM, 143, id="sigterm-timeout-or-kill"),
    ],
)
def test_ctrl_c_or_sigterm_during_verification_rolls_back_and_ends_the_probe(site, how, signum, code):
    """Ctrl-C (SIGINT to the foreground process group), or SIGTERM to the tool (`timeout 60
    convlstm-patch apply`, `kill`, a CI job cancelled), while the verification imports Keras."""
    before = tree_hashes(site)
    process = apply_until_verifying(site)
    probes = [pid for pid in processes_mentioning(f"--site {site}") if pid != process.pid]
    assert probes, "the probe should be running"
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == code, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: interrupted ({how}); every change of this run was rolled back"], stderr
    assert "Aborted!" not in stderr and "Traceback" not in stderr
    assert gone_soon(probes) == [], "the probe outlived convlstm-patch"
    assert tree_hashes(site) == before  # no patched file, backup or journal
    assert "not patched" in cli_at(site, "revert", "--only", "keras").output


def test_killed_during_verification_is_rolled_back_by_the_next_run(site):
    """SIGKILL (OOM killer, CI timeout) during verification: the journal covers it."""
    files = target_files(site, "keras")
    pristine = hashes(files)
    process = apply_until_verifying(site)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert (site / STATE / "journal.json").exists()
    status = cli_at(site, "status", "--only", "keras")
    assert "recovered an interrupted apply" in status.stderr
    assert hashes(files) == pristine
    applied = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert applied.exit_code == 0 and "patched 4 files" in applied.output, applied.output


def test_apply_whose_verification_times_out_restores_and_says_how_long_to_give_it(site, events, monkeypatch):
    """The probe (the fake one, sleeping) needs longer than `apply --timeout`: the originals are
    restored, and the Error line says it timed out and the --timeout to try, not "please report this"."""
    sleeps(monkeypatch, keras=60)
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--only", "keras", "--timeout", "2")
    assert result.exit_code == 9, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        (
            f"Error: keras-{keras_version(site)}: verification did not finish within 2 s (timed out; its processes "
            "were killed), so the original files were restored; give it longer: `convlstm-patch apply --timeout 4`"
        )
    ], result.stderr
    assert tree_hashes(site) == before


def keras_version(site: Path) -> str:
    (info,) = site.glob("keras-*.dist-info")
    return info.name[len("keras-") : -len(".dist-info")]


# -- acting on the right environment --------------------------------------------------


def test_python_finds_its_own_keras_not_the_current_folders(tmp_path):
    """`cd R && convlstm-patch apply --python X` with R holding a Keras and X having none."""
    python = tmp_path / "bare" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    here = keras_site(tmp_path / "project")
    before = tree_hashes(here)
    completed = run_tool("apply", "--python", str(python), "--no-verify", cwd=here)
    assert completed.returncode == 3, completed.stderr
    assert "no keras or tf_keras installed in the environment of" in completed.stderr
    assert tree_hashes(here) == before


def test_hanging_python_is_killed_and_said_to_have_timed_out(tmp_path, monkeypatch):
    """A --python that never answers is killed (with its children) and reported as timed out."""
    import patcher.environment

    monkeypatch.setattr(patcher.environment, "INTERPRETER_TIMEOUT", 2)
    marker = tmp_path / "child-alive"
    hanging = tmp_path / "python"
    hanging.write_text(f"#!/bin/sh\n(sleep 3; touch {marker}) &\nsleep 600\n")
    hanging.chmod(0o755)
    result = cli("status", "--python", str(hanging))
    assert result.exit_code == 3
    assert "did not answer within 2 s (timed out; it was killed)" in result.stderr
    time.sleep(4)
    assert not marker.exists(), "a child of the hanging --python kept running"


def test_keras_root_with_a_colon_is_the_one_verified(tmp_path):
    """A folder name with ':' is not split like a path list; the copy there is verified."""
    site = keras_site(tmp_path / "runs:2024" / "site-packages")
    result = cli_at(site, "apply", "--only", "keras")
    assert result.exit_code == 0, result.output
    assert "verified (5 checks passed)" in result.output
    assert cli_at(site, "revert", "--only", "keras").exit_code == 0


# -- options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, says",
    [
        pytest.param("--timeout", "1e12", "is not in the range 1<=x<=604800", id="timeout-1e12"),
        pytest.param("--timeout", "inf", "is not in the range", id="timeout-inf"),
        pytest.param("--timeout", "nan", "'nan' is not a number of seconds", id="timeout-nan"),
        pytest.param("--lock-timeout", "nan", "'nan' is not a number of seconds", id="lock-timeout-nan"),
        pytest.param("--lock-timeout", "-inf", "is not in the range 0<=x<=604800", id="lock-timeout-minus-inf"),
        pytest.param("--backend", "bogus", "'bogus' is not one of 'tensorflow', 'jax', 'torch'", id="backend-bogus"),
    ],
)
def test_bad_option_values_are_usage_errors_before_anything_is_touched(site, option, value, says):
    """Exit 2 and one Error line, in a fresh process (no thread traceback), nothing written."""
    before = tree_hashes(site)
    for command in ("apply", "verify"):
        if option == "--lock-timeout" and command == "verify":
            continue
        completed = run_tool(command, "--keras-root", str(site), "--only", "keras", option, value)
        assert completed.returncode == 2, completed.stderr
        assert says in completed.stderr and "Traceback" not in completed.stderr
    assert tree_hashes(site) == before and not (site / STATE).exists()


# -- recoverable, never a dead end -------------------------------------------------


def reinstall(site: Path, name: str = "keras") -> None:
    """What `pip install --force-reinstall --no-deps keras==X` does to the target files: pristine bytes again."""
    for path in target_files(site, name):
        shutil.copyfile(Session.pristine_site / path.relative_to(site), path)


@pytest.mark.parametrize("damage", ["backup-file", "manifest"])
def test_damaged_backup_after_the_advised_reinstall_is_no_dead_end(site, damage):
    """Revert exits 8 on a damaged backup; after the reinstall it advises, every command works again."""
    files = target_files(site, "keras")
    pristine = hashes(files)
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    folder = site / STATE / "backups" / next((site / STATE / "backups").iterdir()).name
    if damage == "backup-file":
        copy = folder / "files" / CELL
        copy.write_bytes(copy.read_bytes() + b"# damaged\n")
    else:
        (folder / "manifest.json").write_text("{not json")
    refused = cli_at(site, "revert", "--only", "keras")
    assert refused.exit_code == 8 and "reinstall" in refused.stderr
    reinstall(site)  # as advised
    status = cli_at(site, "status", "--only", "keras")
    assert status.exit_code == 0 and "that backup is damaged but not needed" in status.output
    reverted = cli_at(site, "revert", "--only", "keras")
    assert reverted.exit_code == 0 and "nothing to revert" in reverted.output
    assert "`convlstm-patch clean`" in reverted.stderr
    cleaned = cli_at(site, "clean", "--only", "keras")
    assert cleaned.exit_code == 0 and f"removed stale backup {folder}" in cleaned.output
    assert not folder.exists() and hashes(files) == pristine
    assert "that backup is damaged" not in cli_at(site, "status", "--only", "keras").output


def test_apply_replaces_a_damaged_backup_that_is_not_needed(site):
    """Or, after the reinstall, just apply again: the damaged backup is replaced by a good one."""
    files = target_files(site, "keras")
    pristine = hashes(files)
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    copy = next((site / STATE / "backups").glob("keras-*")) / "files" / CELL
    copy.write_bytes(b"")
    reinstall(site)
    applied = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert applied.exit_code == 0, applied.output
    assert "replaced a damaged backup" in applied.stderr
    reverted = cli_at(site, "revert", "--only", "keras")
    assert reverted.exit_code == 0 and "restored 4 files" in reverted.output
    assert hashes(files) == pristine


def test_a_file_deleted_while_patched_is_restored_with_the_others(site):
    """conv_lstm2d.py deleted while patched: not "unsupported"; revert restores all four."""
    files = target_files(site, "keras")
    pristine = hashes(files)
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    deleted = site / "keras/src/layers/rnn/conv_lstm2d.py"
    deleted.unlink()
    status = cli_at(site, "status", "--only", "keras")
    assert status.exit_code == 0, status.output
    assert "missing  keras/src/layers/rnn/conv_lstm2d.py" in status.output
    assert "conv_lstm2d.py is missing; `convlstm-patch revert` restores it from the backup" in status.output
    reverted = cli_at(site, "revert", "--only", "keras")
    assert reverted.exit_code == 0, reverted.output
    assert "restored 4 files" in reverted.output and "was missing; restored from the backup" in reverted.stderr
    assert hashes(files) == pristine


def test_a_file_deleted_from_a_pristine_keras_names_the_reinstall(site):
    """Without a backup, the missing file's fix is the reinstall command (exit 5 for apply)."""
    (site / "keras/src/layers/rnn/conv_lstm3d.py").unlink()
    status = cli_at(site, "status", "--only", "keras")
    assert (
        "conv_lstm3d.py is missing; reinstall it with `pip install --force-reinstall --no-deps keras==" in status.output
    )
    applied = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert applied.exit_code == 5 and "pip install --force-reinstall --no-deps keras==" in applied.stderr


LATIN_1 = 'EDITED_BY = "José"\n'.encode("latin-1")  # a hand edit saved by an editor set to Latin-1


@pytest.mark.parametrize(
    "patched, edited, command, code",
    [
        pytest.param(True, CELL, ("status",), 0, id="patched-status"),
        pytest.param(True, CELL, ("diff",), 0, id="patched-diff"),
        pytest.param(True, CELL, ("check",), 1, id="patched-check"),
        pytest.param(True, CELL, ("revert",), 5, id="patched-revert"),
        pytest.param(True, CELL, ("revert", "--force"), 0, id="patched-revert-force"),
        pytest.param(True, CELL, ("apply", "--force", "--no-verify"), 0, id="patched-apply-force"),
        pytest.param(False, CELL, ("status",), 0, id="pristine-status"),
        pytest.param(False, CELL, ("diff",), 6, id="pristine-diff"),
        pytest.param(False, CELL, ("check",), 1, id="pristine-check"),
        pytest.param(False, CELL, ("apply", "--no-verify"), 5, id="pristine-apply"),
        pytest.param(False, CELL, ("apply", "--force", "--no-verify"), 6, id="pristine-apply-force"),
        pytest.param(False, GRU, ("apply", "--layers", "lstm", "--no-verify"), 6, id="other-set-apply-lstm"),
        pytest.param(False, GRU, ("apply", "--layers", "lstm", "--dry-run"), 6, id="other-set-dry-run-lstm"),
    ],
)
def test_a_target_file_edited_in_latin_1_gets_one_clear_line(site, patched, edited, command, code):
    """A Keras file hand-edited and saved with a byte that is not UTF-8: every command answers with
    its result or one Error line saying which file and what to do, never "unexpected ... please report"."""
    if patched:
        assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    with open(site / edited, "ab") as handle:
        handle.write(LATIN_1)
    before = tree_hashes(site) if code else None
    result = cli_at(site, *command, "--only", "keras")
    assert "unexpected" not in result.stderr and "please report" not in result.stderr.lower(), result.stderr
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == (1 if code else 0), result.stderr
    if code == 6 or edited == GRU:
        assert f"{edited} of keras-" in errors[0] and "is not UTF-8 text (byte 0xe9 on line " in errors[0], errors
        assert "pip install --force-reinstall --no-deps keras==" in errors[0], errors
    if command == ("diff",) and patched:
        assert "\\xe9" in result.stdout and f"{CELL} is not UTF-8 text (byte 0xe9 on line " in result.stderr
    if code:
        assert tree_hashes(site) == before  # an error changed nothing


def test_a_module_of_another_set_that_does_not_parse_refuses_with_one_line(site):
    """gru.py hand-edited into invalid Python, then `apply --layers lstm`: the fused-kernel audit
    cannot read it, so it refuses (fail closed) naming the file and the reinstall, changing nothing."""
    with open(site / GRU, "a") as handle:
        handle.write("def edited(:\n")
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--layers", "lstm", "--only", "keras", "--no-verify")
    assert result.exit_code == 6, result.output
    assert f"{GRU} of keras-" in result.stderr and " does not parse (" in result.stderr, result.stderr
    assert "pip install --force-reinstall --no-deps keras==" in result.stderr and "unexpected" not in result.stderr
    assert tree_hashes(site) == before


def uninstall(site: Path, name: str) -> None:
    """What `pip uninstall NAME` does: the package and its dist-info go, our state folder stays (in no RECORD)."""
    shutil.rmtree(site / name)
    for info in site.glob(f"{name}-*.dist-info"):
        shutil.rmtree(info)


def test_clean_removes_backups_of_an_uninstalled_keras(tmp_path):
    """`pip uninstall keras` while patched; status says no Keras and points at clean, which removes it."""
    site = keras_site(tmp_path / "site-packages")
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    uninstall(site, "keras")
    status = cli_at(site, "status")
    assert status.exit_code == 3 and "`convlstm-patch clean` removes the backups left in" in status.stderr
    cleaned = cli_at(site, "clean")
    assert cleaned.exit_code == 0, cleaned.output
    assert "removed stale backup" in cleaned.output and "keras-3" in cleaned.output
    assert not list((site / STATE / "backups").iterdir())
    assert cli_at(site, "clean").output.strip() == "no stale backups"


def test_clean_removes_the_uninstalled_flavours_backup_beside_another(site):
    """With tf_keras still installed: only keras's backup goes."""
    assert cli_at(site, "apply", "--no-verify").exit_code == 0
    uninstall(site, "keras")
    cleaned = cli_at(site, "clean")
    assert cleaned.exit_code == 0, cleaned.output
    assert [folder.name.split("-")[0] for folder in (site / STATE / "backups").iterdir()] == ["tf_keras"]
    assert cli_at(site, "revert").exit_code == 0


def test_status_reports_the_backup_an_uninstalled_flavour_left_beside_another(site):
    """`pip uninstall keras` while patched, tf_keras still installed: status (finding tf_keras only)
    still names keras's backup and `clean`, which removes it; then status says nothing of it."""
    assert cli_at(site, "apply", "--no-verify").exit_code == 0
    uninstall(site, "keras")
    (folder,) = (site / STATE / "backups").glob("keras-*")
    status = cli_at(site, "status")
    assert status.exit_code == 0, status.output
    assert (
        f"note: backup of keras {folder.name[len('keras-') :]}, which is no longer installed here: {folder}"
        in status.stdout
    )
    assert "remove it with `convlstm-patch clean`" in status.stdout
    assert json.loads(cli_at(site, "status", "--json").stdout)["orphaned_backups"] == [str(folder)]
    assert cli_at(site, "clean").exit_code == 0 and not folder.exists()
    status = cli_at(site, "status")
    assert "no longer installed" not in status.output and "tf_keras" in status.output
    assert json.loads(cli_at(site, "status", "--json").stdout)["orphaned_backups"] == []


# -- also wrong or undocumented (D items) ------------------------------------------


def test_json_is_a_document_even_on_errors(site, tmp_path):
    """Errors before any environment ran, and apply's failed verification (exit 9) with its report."""
    for args in (
        ("status", "--keras-root", str(site), "--python", "a", "--python", "b"),
        ("apply", "--timeout", "nan"),
    ):
        completed = run_tool(*args, "--json")
        assert completed.returncode == 2
        assert json.loads(completed.stdout)["error"]["exit_code"] == 2, completed.stdout
        assert completed.stderr.count("Error:") == 1
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nexit 1\n")
    crashing.chmod(0o755)
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--only", "keras", "--python", str(crashing), "--json")
    assert result.exit_code == 9
    document = json.loads(result.stdout)
    assert document["error"]["exit_code"] == 9
    (report,) = document["verification"]
    assert report["passed"] is False and report["checks"][0]["name"] == "run"
    assert tree_hashes(site) == before


def test_verify_on_unpatched_keras_says_apply_without_running_the_probe(site):
    """The advice for a pristine Keras is `apply`, not "revert then apply", given before any probe starts."""
    result = cli_at(site, "verify", "--only", "keras", "--json")
    assert result.exit_code == 9
    document = json.loads(result.stdout)
    message = document["error"]["message"]
    assert "it is not patched: run `convlstm-patch apply`" in message and "revert" not in message
    assert "verification" not in document, document


def test_manifest_with_no_files_says_so(site):
    """An empty manifest `files` is a backup problem (exit 8), not "edited after patching"."""
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    manifest = next((site / STATE / "backups").glob("keras-*")) / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "files": []}))
    before = tree_hashes(site)
    result = cli_at(site, "revert", "--only", "keras")
    assert result.exit_code == 8 and "lists no files" in result.stderr, result.output
    assert tree_hashes(site) == before


@needs_setpriv
def test_sudo_apply_on_a_users_venv_keeps_every_files_owner(tmp_path):
    """Root patches a venv nobody owns; every file stays nobody's, and nobody can revert."""
    site = nobodys_venv(tmp_path)
    before = tree_hashes(site)
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0  # as root
    root_owned = [str(path) for path in site.rglob("*") if path.lstat().st_uid != NOBODY]
    assert not root_owned, root_owned[:5]
    reverted = as_nobody("revert", "--keras-root", str(site), "--only", "keras", cwd=tmp_path)
    assert reverted.returncode == 0, reverted.stderr
    assert tree_hashes(site) == before


def uv_venv_of_nobody(tmp_path: Path) -> tuple[Path, Path]:
    """A venv that user nobody owns, made as uv makes one: no __pycache__ anywhere, a copy of keras
    in its site-packages, the running interpreter's packages (TensorFlow) seen through a .pth file;
    its python and its site-packages."""
    import venvs  # scripts/venvs.py

    folder = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = venvs.purelib(python)
    copy_distribution("keras", site)
    (site / venvs.PTH_NAME).write_text("\n".join(venvs.running_site_packages()) + "\n")
    for cache in list(folder.rglob("__pycache__")):
        shutil.rmtree(cache)
    tmp_path.chmod(0o755)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(folder)], check=True)
    return python, site


@needs_setpriv
def test_sudo_apply_python_on_a_uv_venv_leaves_nothing_root_owned(tmp_path, monkeypatch):
    """`sudo convlstm-patch apply --python` on a user's venv without __pycache__ (uv's default): the
    verification imports that Keras as root, yet no root-owned file (bytecode) is left in the venv
    or the backup, and the user reverts as usual."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # as users have it (a CI image may set it)
    python, site = uv_venv_of_nobody(tmp_path)
    before = tree_hashes(site)
    applied = cli("apply", "--python", str(python), "--only", "keras")  # as root, verified
    assert applied.exit_code == 0, applied.output
    assert "verified (5 checks passed)" in applied.output
    root_owned = [str(path) for path in (tmp_path / "venv").rglob("*") if path.lstat().st_uid != NOBODY]
    assert not root_owned, f"{len(root_owned)} root-owned files left in the user's venv: {root_owned[:5]}"
    reverted = as_nobody("revert", "--python", str(python), "--only", "keras", cwd=tmp_path)
    assert reverted.returncode == 0, reverted.stderr
    assert tree_hashes(site) == before


def test_without_record_the_hash_lock_tells_pristine_from_edited(site):
    """A Keras whose dist-info has no RECORD: an edited file is `modified`, not trusted as pristine."""
    (record,) = site.glob("keras-*.dist-info/RECORD")
    record.unlink()
    status = cli_at(site, "status", "--only", "keras")
    assert status.exit_code == 0 and "keras 3" in status.output and ": pristine" in status.output, status.output
    with open(site / CELL, "a") as handle:
        handle.write("# edited\n")
    status = cli_at(site, "status", "--only", "keras")
    assert "modified  keras/src/layers/rnn/conv_lstm.py" in status.output, status.output
    result = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert result.exit_code == 5 and "differs from this version's hash pins" in result.stderr


def test_an_editable_keras_is_unsupported_for_the_right_reason(tmp_path):
    """`pip install -e` leaves only a dist-info in site-packages; say so, not "no layout"."""
    site = keras_site(tmp_path / "site-packages")
    source = tmp_path / "checkout"
    source.mkdir()
    shutil.move(str(site / "keras"), str(source / "keras"))
    (info,) = site.glob("keras-*.dist-info")
    (info / "direct_url.json").write_text(json.dumps({"url": source.as_uri(), "dir_info": {"editable": True}}))
    result = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert result.exit_code == 4
    assert "is an editable (development) install" in result.stderr and source.as_uri() in result.stderr
    tree = cli_at(str(source), "status")
    assert tree.exit_code == 3 and "no dist-info: a source tree?" in tree.stderr


def test_record_without_the_convlstm_rows_says_so(site):
    """A RECORD that does not list the ConvLSTM files: name the missing row, not "no layout"."""
    (record,) = site.glob("keras-*.dist-info/RECORD")
    record.write_text("".join(line for line in record.read_text().splitlines(True) if not line.startswith(CELL + ",")))
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert result.exit_code == 4
    assert f"does not list {CELL}" in result.stderr and "pip install --force-reinstall" in result.stderr
    assert tree_hashes(site) == before


def test_quiet_status_still_says_it_finished_an_interrupted_run(site):
    """`status -q` that rolls back an interrupted apply says so: it changed files."""
    process = apply_until_verifying(site)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    status = cli_at(site, "status", "--only", "keras", "-q")
    assert "recovered an interrupted apply: rolled back" in status.stderr, status.output
