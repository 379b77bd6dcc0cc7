"""Never lose or corrupt a Keras install: kills at every step, concurrency,
upgrades, bytecode, symlinks. Every trial ends all-pristine or all-patched.
"""

from __future__ import annotations

import json
import os
import py_compile
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, SCRIPTS, cli_at, hashes, run_in_site, target_files, tree_hashes

LAUNCHER = str(SCRIPTS / "fault_launcher.py")
CELL = "keras/src/layers/rnn/conv_lstm.py"


def launch(site: Path, fault_at: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FAULT_AT": str(fault_at), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, LAUNCHER, *args, "--keras-root", str(site), "--only", "keras"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def operations(completed: subprocess.CompletedProcess) -> int:
    line = next(line for line in completed.stderr.splitlines() if line.startswith("operations: "))
    return int(line.split()[1])


@pytest.fixture
def states(site):
    """(pristine hashes, patched hashes) of the keras target files of ``site``."""
    files = target_files(site, "keras")
    pristine = hashes(files)
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    patched = hashes(files)
    assert cli_at(site, "revert", "--only", "keras").exit_code == 0
    assert hashes(files) == pristine
    return files, pristine, patched


def settled(files, pristine, patched) -> str:
    now = hashes(files)
    assert now in (pristine, patched), "files are neither all pristine nor all patched"
    return "pristine" if now == pristine else "patched"


ALL = "convlstm,lstm,gru"
# What a user runs, and the state it starts from (commands run on a reverted copy first).
KILL_SCENARIOS = {
    "apply": ([], ["apply", "--no-verify"]),
    "revert": ([["apply", "--no-verify"]], ["revert"]),
    "apply-adding-sets": ([["apply", "--no-verify"]], ["apply", "--no-verify", "--layers", ALL]),
    "apply-dropping-a-set": (
        [["apply", "--no-verify", "--layers", ALL]],
        ["apply", "--no-verify", "--layers", "convlstm,lstm"],
    ),
}
SAMPLED_KILLS = 4  # per scenario in README's test command; `slow` kills at every operation


def all_files(site: Path) -> list[Path]:
    """Every keras target file of every layer set."""
    from patcher.layersets import LayerSet

    return target_files(site, "keras", set(LayerSet))


def kill_trials(site: Path, scenario: str, kill_points) -> set[str]:
    """SIGKILL the scenario's command before its k-th file operation, for each k; the next command
    must settle it: rolled back (journal started) or finished (journal committed), never a mix."""
    setup, command = KILL_SCENARIOS[scenario]
    files = all_files(site)

    def prepare():
        assert cli_at(site, "revert", "--only", "keras").exit_code == 0
        for step in setup:
            assert cli_at(site, *step, "--only", "keras").exit_code == 0
        return hashes(files)

    before = prepare()
    assert cli_at(site, *command, "--only", "keras").exit_code == 0
    after = hashes(files)
    assert before != after
    prepare()
    total = operations(launch(site, 0, *command))
    assert total > 10
    journal = site / ".convlstm-patch" / "journal.json"
    seen = set()
    for k in kill_points(total):
        prepare()
        killed = launch(site, k, *command)
        assert killed.returncode == -9, (k, killed.stderr[-500:])
        phase = json.loads(journal.read_text())["phase"] if journal.exists() else None
        status = cli_at(site, "status", "--only", "keras")  # the next command recovers by itself
        assert status.exit_code == 0, (k, status.output)
        now = hashes(files)
        assert now in (before, after), (k, "files are neither as before nor as after the command")
        if phase == "started":
            assert now == before, (k, "a run killed before its commit point must be rolled back")
        elif phase == "committed":
            assert now == after, (k, "a run killed after its commit point must be finished")
        state = "before" if now == before else "after"
        seen.add(state)
        # A backup exists exactly while some file is patched, and is valid (status read it).
        manifest = next((site / ".convlstm-patch" / "backups").glob("keras-*/manifest.json"), None)
        assert (manifest is not None) == any(h != t.record_sha256 for h, t in zip(now.values(), _targets(site))), k
        assert not list(site.rglob("*.tmp")), k
    assert cli_at(site, "revert", "--only", "keras").exit_code == 0
    assert all(hashes(files)[t.path] == t.record_sha256 for t in _targets(site))
    return seen


def _targets(site: Path):
    from patcher.environment import find_flavours

    (flavour,) = find_flavours([str(site)], only="keras")
    return flavour.files


@pytest.mark.parametrize("scenario", list(KILL_SCENARIOS))
def test_sigkill_at_sampled_file_operations(site, scenario):
    """A few kill points per scenario, seeded: the first, the last and two in between."""

    def sampled(total):
        chosen = {1, total} | set(random.Random(f"{scenario}-{total}").sample(range(2, total), SAMPLED_KILLS - 2))
        return sorted(chosen)

    kill_trials(site, scenario, sampled)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(KILL_SCENARIOS))
def test_sigkill_at_every_file_operation(site, scenario):
    seen = kill_trials(site, scenario, lambda total: range(1, total + 1))
    assert seen == {"before", "after"}  # killed before and after the commit point


def test_concurrent_apply_revert_and_status_never_interleave(site, states):
    files, pristine, patched = states
    for _ in range(3):
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "patcher", command, "--keras-root", str(site), "--only", "keras"]
                + (["--no-verify"] if command == "apply" else []),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for command in ["apply", "revert"] * 4 + ["status"] * 2
        ]
        for process in processes:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr
        settled(files, pristine, patched)
    cli_at(site, "revert", "--only", "keras")
    assert hashes(files) == pristine


def test_lock_held_elsewhere_fails_clearly(site):
    import filelock

    folder = site / ".convlstm-patch"
    folder.mkdir()
    before = tree_hashes(site)
    with filelock.FileLock(str(folder / "lock")):
        result = cli_at(site, "apply", "--no-verify", "--lock-timeout", "0.5")
    assert result.exit_code == 11
    assert "another convlstm-patch" in result.stderr
    assert tree_hashes(site) == before


def simulate_upgrade(site: Path, new_version: str) -> None:
    """What `pip install -U keras` does to our files: new dist-info, fresh sources."""
    backup = next((site / ".convlstm-patch" / "backups").glob("keras-*")) / "files"
    for copy in backup.rglob("*.py"):
        shutil.copyfile(copy, site / copy.relative_to(backup))
    (old_info,) = site.glob("keras-*.dist-info")
    metadata = (old_info / "METADATA").read_text()
    old_version = old_info.name[len("keras-") : -len(".dist-info")]
    new_info = site / f"keras-{new_version}.dist-info"
    old_info.rename(new_info)
    (new_info / "METADATA").write_text(metadata.replace(f"Version: {old_version}", f"Version: {new_version}", 1))


def test_upgrade_is_detected_and_stale_backup_never_restored(site):
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    simulate_upgrade(site, "99.0.0")
    status = cli_at(site, "status", "--only", "keras").output
    assert "keras 99.0.0" in status and ": pristine" in status
    assert "the patch is gone: keras was upgraded from" in status
    assert "stale backup of a version no longer installed" in status
    # revert must not restore the old version's backup over the new one
    result = cli_at(site, "revert", "--only", "keras")
    assert "not patched, nothing to revert" in result.output
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    assert (site / ".convlstm-patch" / "backups" / "keras-99.0.0" / "manifest.json").exists()
    cleaned = cli_at(site, "clean", "--only", "keras")
    assert "removed stale backup" in cleaned.output
    assert [folder.name for folder in (site / ".convlstm-patch" / "backups").iterdir()] == ["keras-99.0.0"]
    assert cli_at(site, "revert", "--only", "keras").exit_code == 0


def test_force_reinstall_is_detected(site):
    files = target_files(site, "keras")
    pristine = {path: path.read_bytes() for path in files}
    cli_at(site, "apply", "--only", "keras", "--no-verify")
    for path, data in pristine.items():  # what --force-reinstall does
        path.write_bytes(data)
    status = cli_at(site, "status", "--only", "keras").output
    assert "the patch is gone: the files were reinstalled" in status
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    assert "patched" in cli_at(site, "status", "--only", "keras").output.splitlines()[0]


def test_unchecked_hash_bytecode_never_hides_the_new_source(site):
    probe = "import inspect, keras; print('activation_i' in inspect.signature(keras.layers.ConvLSTM2D).parameters)"

    def compile_unchecked():
        for path in target_files(site, "keras"):
            py_compile.compile(str(path), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH, doraise=True)

    compile_unchecked()
    cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert run_in_site(site, "-c", probe).stdout.strip().splitlines()[-1] == "True"
    compile_unchecked()
    cli_at(site, "revert", "--only", "keras")
    assert run_in_site(site, "-c", probe).stdout.strip().splitlines()[-1] == "False"


def test_symlinked_target_is_refused(site, tmp_path):
    outside = tmp_path / "elsewhere.py"
    shutil.copyfile(site / CELL, outside)
    (site / CELL).unlink()
    (site / CELL).symlink_to(outside)
    before, outside_before = tree_hashes(site), outside.read_bytes()
    result = cli_at(site, "apply", "--only", "keras", "--no-verify", "--force")
    assert result.exit_code == 12
    assert "symlink" in result.stderr and "never writes through links" in result.stderr
    assert tree_hashes(site) == before and outside.read_bytes() == outside_before


@pytest.mark.parametrize(
    "link", [pytest.param(".convlstm-patch", id="state-folder"), pytest.param(".convlstm-patch/backups", id="backups")]
)
def test_symlinked_backup_folder_is_refused(site, tmp_path, link):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (site / link).parent.mkdir(exist_ok=True)
    (site / link).symlink_to(elsewhere)
    before = tree_hashes(site)
    result = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert result.exit_code == 12
    assert tree_hashes(site) == before and not any(elsewhere.iterdir())


def test_missing_backup_file_is_never_restored(site):
    cli_at(site, "apply", "--only", "keras", "--no-verify")
    (copy,) = list((site / ".convlstm-patch").rglob("conv_lstm2d.py"))
    copy.unlink()
    before = tree_hashes(site)
    result = cli_at(site, "revert", "--only", "keras")
    assert result.exit_code == 8
    assert "is missing or does not match its manifest" in result.stderr
    assert tree_hashes(site) == before


def test_backup_that_does_not_match_record_is_never_restored(site):
    # Backup file and manifest both rewritten consistently: only RECORD can tell.
    import hashlib
    import json

    cli_at(site, "apply", "--only", "keras", "--no-verify")
    (copy,) = list((site / ".convlstm-patch").rglob("conv_lstm3d.py"))
    copy.write_bytes(copy.read_bytes() + b"\n# injected\n")
    manifest_path = next((site / ".convlstm-patch").rglob("manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        if entry["path"].endswith("conv_lstm3d.py"):
            entry["before"] = hashlib.sha256(copy.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    before = tree_hashes(site)
    result = cli_at(site, "revert", "--only", "keras")
    assert result.exit_code == 8
    assert "does not match the RECORD" in result.stderr
    assert tree_hashes(site) == before


def test_writes_keep_the_permission_bits(site):
    cell = site / CELL
    cell.chmod(0o640)
    assert cli_at(site, "apply", "--only", "keras", "--no-verify").exit_code == 0
    assert cell.stat().st_mode & 0o7777 == 0o640
    assert cli_at(site, "revert", "--only", "keras").exit_code == 0
    assert cell.stat().st_mode & 0o7777 == 0o640


@pytest.mark.parametrize("command", [pytest.param("check", id="check"), pytest.param("diff", id="diff")])
def test_readers_recover_an_interrupted_apply_first(site, states, command):
    files, pristine, _ = states
    total = operations(launch(site, 0, "apply", "--no-verify"))
    cli_at(site, "revert", "--only", "keras")
    assert launch(site, total // 2, "apply", "--no-verify").returncode == -9
    assert (site / ".convlstm-patch" / "journal.json").exists()
    result = cli_at(site, command, "--only", "keras")
    assert result.exit_code == 0, result.output
    assert "recovered an interrupted apply: rolled back" in result.stderr
    assert hashes(files) == pristine
    assert not (site / ".convlstm-patch" / "journal.json").exists()
