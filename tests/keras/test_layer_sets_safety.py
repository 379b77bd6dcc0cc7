"""One state, read once under the lock: layer sets (`--layers`) under races, kills and hand edits.

Each test reproduces a situation a hostile but realistic user met, with real
processes: concurrent runs held at named points (tests/runs.py), SIGKILL,
hand-edited manifests. The invariant behind all of them: a backup is never
deleted while a file it covers is not its original, and after any mix of runs
a final `revert` leaves every file identical to RECORD.
"""

from __future__ import annotations

import json
import os
import py_compile
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import cli_at, tree_hashes
from runs import Run, run

from patcher import pauses
from patcher.environment import find_flavours
from patcher.hashing import sha256_hex
from patcher.layersets import LayerSet

ALL = "convlstm,lstm,gru"
STATE = Path(".convlstm-patch")


def keras(site: Path):
    (flavour,) = find_flavours([str(site)], only="keras")
    return flavour


def file_names(site: Path, *layer_sets: LayerSet) -> list[str]:
    """The names of the keras files of these layer sets (of every set: none given), as this Keras lays them out:
    bidirectional.py belongs to LSTM and GRU from keras 3.15 on."""
    flavour = keras(site)
    return sorted(Path(t.relative).name for t in (flavour.files_of(set(layer_sets)) if layer_sets else flavour.files))


def off_record(site: Path) -> list[str]:
    """The keras target files (every layer set's) that differ from RECORD."""
    return [t.relative for t in keras(site).files if sha256_hex(t.path.read_bytes()) != t.record_sha256]


def patched_files(site: Path) -> list[str]:
    return sorted(Path(relative).name for relative in off_record(site))


def manifest_path(site: Path) -> Path:
    return site / STATE / "backups" / f"{keras(site).key}" / "manifest.json"


def tool(site: Path, *args: str) -> list[str]:
    return [*args, "--keras-root", str(site), "--only", "keras"]


def ok(result) -> None:
    assert result.exit_code == 0, result.output


# -- 1: a revert waiting for the lock decides after it, from what the apply left ------------


def test_revert_waiting_for_an_apply_that_adds_sets_reverts_every_set(site):
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify"))
    adding = Run(*tool(site, "apply", "--no-verify", "--layers", ALL), pause_at=pauses.LOCKED).held()
    revert = Run(*tool(site, "revert"), pause_at=pauses.LOCKED)
    assert revert.running(for_seconds=1.0), revert.finish().output  # waiting for the lock
    adding.release().finish()
    assert adding.returncode == 0, adding.output
    revert.held().release().finish()
    assert revert.returncode == 0, revert.output
    assert f"restored {len(file_names(site))} files" in revert.stdout, revert.output
    assert off_record(site) == [] and not manifest_path(site).parent.exists()
    status = json.loads(cli_at(site, "status", "--only", "keras", "--json").stdout)
    assert status["flavours"][0]["state"] == "pristine"


def test_revert_decides_under_the_lock_even_when_it_read_before(site):
    """The revert read the environment (convlstm patched) before the apply took the lock."""
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify"))
    revert = Run(*tool(site, "revert"), pause_at=pauses.DISCOVERED).held()
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", ALL))
    revert.release().finish()
    assert revert.returncode == 0, revert.output
    assert off_record(site) == [] and not manifest_path(site).parent.exists()


# -- 2: writers and readers side by side, with layer sets ------------------------------------


def _loops(site: Path, rounds: int) -> None:
    """Two writer lanes and one reader lane, each running its commands one after the other."""
    lanes = [
        [tool(site, "apply", "--no-verify", "--layers", ALL), tool(site, "revert")] * rounds,
        [
            tool(site, "apply", "--no-verify"),
            tool(site, "apply", "--no-verify", "--layers", "lstm"),
            tool(site, "apply", "--no-verify", "--layers", "convlstm,gru"),
            tool(site, "revert"),
        ]
        * rounds,
        [tool(site, command) for command in ("status", "check", "diff")] * rounds,
    ]
    finished: list[Run] = []
    threads = [
        threading.Thread(target=lambda lane=lane: finished.extend(run(*args) for args in lane)) for lane in lanes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bad = [f"{' '.join(p.args[:3])}: {p.output[-400:]}" for p in finished if p.returncode != 0]
    assert len(finished) == sum(map(len, lanes)) and bad == [], bad


def test_writers_and_readers_with_layer_sets_all_succeed_and_a_final_revert_is_record_identical(site):
    _loops(site, rounds=3)
    ok(cli_at(site, "revert", "--only", "keras"))
    assert off_record(site) == []
    assert not (site / STATE / "backups" / keras(site).key).exists()


@pytest.mark.slow
def test_concurrency_soak_with_layer_sets(site):
    """About a minute of apply/revert loops with --layers beside status/check/diff."""
    _loops(site, rounds=12)
    ok(cli_at(site, "revert", "--only", "keras"))
    assert off_record(site) == []


# -- 3: a hand-edited manifest is refused, nothing restored ------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda data: data["layer_sets"].append("rnn"), id="unknown-set-added"),
        pytest.param(lambda data: data.update(layer_sets="convlstm,lstm,gru"), id="made-a-string"),
        pytest.param(lambda data: data.update(layer_sets=[]), id="emptied"),
        pytest.param(lambda data: data.pop("layer_sets"), id="removed"),
        pytest.param(lambda data: data.update(layer_sets=["convlstm"]), id="sets-dropped-but-files-listed"),
    ],
)
def test_a_hand_edited_manifest_is_refused_and_nothing_is_restored(site, edit):
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", ALL))
    path = manifest_path(site)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    before = tree_hashes(site)
    for command in ("revert", "apply", "status"):
        result = cli_at(site, command, "--only", "keras")
        assert result.exit_code == 8, (command, result.output)
        assert "is not valid" in result.stderr and "nothing was changed" in result.stderr
    assert tree_hashes(site) == before


# -- 4: apply --layers means exactly those sets ----------------------------------------------------


def test_apply_layers_convlstm_leaves_convlstm_alone_patched(site):
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", ALL))
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", "convlstm"))
    assert patched_files(site) == ["conv_lstm.py", "conv_lstm1d.py", "conv_lstm2d.py", "conv_lstm3d.py"]
    diff = cli_at(site, "diff", "--only", "keras")
    names = {line.split("/")[-1] for line in diff.stdout.splitlines() if line.startswith("+++ ")}
    assert names == {"conv_lstm.py", "conv_lstm1d.py", "conv_lstm2d.py", "conv_lstm3d.py"}
    (flavour,) = json.loads(cli_at(site, "status", "--only", "keras", "--json").stdout)["flavours"]
    assert flavour["state"] == "patched" and flavour["layer_sets"]["patched"] == ["convlstm"]


# -- 5: a lock file replaced by a symlink --------------------------------------------------------


def test_a_symlinked_lock_file_is_refused_as_a_link(site, tmp_path):
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify"))
    lock = site / STATE / "lock"
    lock.unlink()
    lock.symlink_to(tmp_path / "elsewhere")
    before = tree_hashes(site)
    result = cli_at(site, "revert", "--only", "keras")
    assert result.exit_code == 12, result.output
    assert "Replace the link" in result.stderr
    assert tree_hashes(site) == before and not (tmp_path / "elsewhere").exists()


# -- 6: bytecode outside __pycache__ (PYTHONPYCACHEPREFIX) -------------------------------------


def test_bytecode_under_a_pycache_prefix_is_replaced_too(site, tmp_path):
    """Unchecked-hash bytecode of the stock files under the prefix would hide the patch forever."""
    prefix = tmp_path / "pycache"
    cell = keras(site).files_of({LayerSet.CONVLSTM})[0].path
    compiled = (
        prefix
        / cell.parent.relative_to(cell.parent.anchor)
        / f"{cell.stem}.cpython-{sys.version_info[0]}{sys.version_info[1]}.pyc"
    )
    compiled.parent.mkdir(parents=True)
    py_compile.compile(str(cell), cfile=str(compiled), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    applied = run(*tool(site, "apply", "--no-verify"), PYTHONPYCACHEPREFIX=str(prefix))
    assert applied.returncode == 0, applied.output
    assert not compiled.exists()
    # What `import` would run for the cell (whose stock bytecode was planted), read by the loader
    # import uses, under the prefix: not all of Keras and TensorFlow compiled into an empty prefix.
    code = (
        "import importlib.machinery, sys\n"
        "def names(code):\n"
        "    yield from code.co_varnames\n"
        "    for const in code.co_consts:\n"
        "        if hasattr(const, 'co_varnames'): yield from names(const)\n"
        "code = importlib.machinery.SourceFileLoader('conv_lstm', sys.argv[1]).get_code('conv_lstm')\n"
        "print('activation_i' in set(names(code)))"
    )
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(prefix)}
    seen = subprocess.run([sys.executable, "-c", code, str(cell)], capture_output=True, text=True, env=env, timeout=600)
    assert seen.stdout.strip() == "True", seen.stderr[-500:]


# -- 7: after `apply --layers convlstm,lstm`, gru is simply not patched --------------------------------


def test_status_of_a_set_put_back_says_it_is_not_patched(site):
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", ALL))
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", "convlstm,lstm"))
    status = cli_at(site, "status", "--only", "keras")
    ok(status)
    assert ": patched" in status.stdout.splitlines()[0]
    assert "layer sets: patched convlstm, lstm" in status.stdout
    assert "settle" not in status.stdout and "partial" not in status.stdout
    # Files GRU shares with LSTM (bidirectional.py, keras 3.15+) stay patched for LSTM.
    assert patched_files(site) == file_names(site, LayerSet.CONVLSTM, LayerSet.LSTM)
    assert "gru.py" not in patched_files(site) and {"conv_lstm.py", "lstm.py"} <= set(patched_files(site))


# -- 8: what the next command says after a killed run ---------------------------------------------


def test_a_killed_apply_that_adds_a_set_goes_back_to_the_previous_sets(site):
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify"))
    before = patched_files(site)
    Run(*tool(site, "apply", "--no-verify", "--layers", "lstm"), pause_at=pauses.WRITTEN).held().kill()
    status = cli_at(site, "status", "--only", "keras")
    ok(status)
    assert (
        f"warning: {keras(site).key}: recovered an interrupted apply --layers convlstm,lstm: rolled back"
        in status.stderr
    )
    assert "reinstalled" not in status.output and ": patched" in status.stdout.splitlines()[0]
    assert patched_files(site) == before  # ConvLSTM still patched, LSTM not


def test_revert_after_a_killed_apply_says_it_recovered_and_that_files_changed(site):
    Run(*tool(site, "apply", "--no-verify"), pause_at=pauses.WRITTEN).held().kill()
    reverted = cli_at(site, "revert", "--only", "keras")
    ok(reverted)
    assert "recovered an interrupted apply: rolled back" in reverted.stderr
    assert "nothing to revert" in reverted.stdout and "restart" in reverted.stdout
    assert off_record(site) == []


def test_a_killed_apply_that_drops_a_set_is_named_as_such(site):
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", ALL))
    before = patched_files(site)
    Run(*tool(site, "apply", "--no-verify", "--layers", "convlstm,lstm"), pause_at=pauses.WRITTEN).held().kill()
    status = cli_at(site, "status", "--only", "keras")
    assert "recovered an interrupted apply --layers convlstm,lstm: rolled back" in status.stderr, status.output
    assert patched_files(site) == before


def test_each_flavours_recovery_is_named_by_its_own_flavour(site):
    Run("apply", "--no-verify", "--keras-root", str(site), pause_at=pauses.WRITTEN).held().kill()
    status = cli_at(site, "status")
    lines = [line for line in status.stderr.splitlines() if "recovered" in line]
    tf_keras = next(f for f in find_flavours([str(site)]) if f.package == "tf_keras")
    assert lines == [
        f"warning: {keras(site).key}: recovered an interrupted apply: rolled back, every file is as it was before it",
        f"warning: {tf_keras.key}: recovered an interrupted apply: rolled back, every file is as it was before it",
    ]


def test_a_kill_before_deleting_the_backup_is_finished_not_undone(site):
    """After the commit point a revert is complete; the next command deletes the backup it left."""
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", "lstm"))
    Run(*tool(site, "revert"), pause_at=pauses.BEFORE_BACKUP_DELETE).held().kill()
    # Killed right before deleting the backup, which the revert had set aside before committing.
    assert json.loads((site / STATE / "journal.json").read_text())["phase"] == "committed"
    kept_manifest = manifest_path(site).with_name(".manifest.json.convlstm-patch-kept.tmp")
    assert not manifest_path(site).exists() and kept_manifest.exists()
    status = cli_at(site, "status", "--only", "keras")
    assert "recovered an interrupted revert: it had completed" in status.stderr
    assert off_record(site) == [] and not manifest_path(site).parent.exists()
    assert not (site / STATE / "layer-sets-keras.json").exists()


# -- 9: the layer sets chosen outlive a version --------------------------------------------------------


def _reinstall_as(site: Path, version: str) -> None:
    """What `pip install keras==VERSION` leaves: the pristine files, under another version's dist-info."""
    flavour = keras(site)
    for target in flavour.files:
        data = (site / STATE / "backups" / flavour.key / "files" / target.relative).read_bytes()
        target.path.write_bytes(data)
    info = next(site.glob("keras-*.dist-info"))
    metadata = info / "METADATA"
    metadata.write_text(metadata.read_text().replace(f"Version: {flavour.version}", f"Version: {version}"))
    info.rename(site / f"keras-{version}.dist-info")


def test_after_an_upgrade_plain_apply_patches_the_sets_chosen_before(site):
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", ALL))
    old = keras(site).version
    _reinstall_as(site, "99.0.0")
    status = cli_at(site, "status", "--only", "keras")
    assert f"upgraded from {old} to 99.0.0" in status.stdout and "chosen before (convlstm, lstm, gru)" in status.stdout
    applied = cli_at(site, "apply", "--only", "keras", "--no-verify")
    ok(applied)
    assert "patching the layer sets chosen before as well: lstm, gru" in applied.stderr
    assert f"patched {len(file_names(site))} files" in applied.stdout
    ok(cli_at(site, "revert", "--only", "keras"))
    assert not (site / STATE / "layer-sets-keras.json").exists()  # a full revert forgets them
    again = cli_at(site, "apply", "--only", "keras", "--no-verify")
    assert "patched 4 files" in again.stdout


def test_a_never_patched_environment_gets_convlstm_only(site):
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify"))
    assert patched_files(site) == ["conv_lstm.py", "conv_lstm1d.py", "conv_lstm2d.py", "conv_lstm3d.py"]
    assert not (site / STATE / "layer-sets-keras.json").exists()


# -- 10: verify while a writer works ------------------------------------------------------------------


def test_verify_during_an_apply_reports_busy_or_waits_for_it(site):
    writer = Run(*tool(site, "apply", "--no-verify", "--layers", "lstm"), pause_at=pauses.WRITTEN).held()
    busy = run(*tool(site, "verify", "--lock-timeout", "1"))
    assert busy.returncode == 11, busy.output
    assert "another convlstm-patch" in busy.stderr
    waiting = Run(*tool(site, "verify"))
    assert waiting.running(for_seconds=1.0)
    writer.release().finish()
    assert writer.returncode == 0, writer.output
    waiting.finish()
    assert waiting.returncode == 0, waiting.output
    assert "lstm fused" in waiting.stdout and "passed" in waiting.stdout


# -- the invariant, on every path that deletes a backup --------------------------------------------------


def test_a_backup_is_kept_when_a_file_it_covers_is_not_its_original(site):
    """Someone replaces a file between the revert's restore and its commit: the revert is rolled
    back, that file left as the other program left it, the backup kept (exit 5)."""
    ok(cli_at(site, "apply", "--only", "keras", "--no-verify"))
    revert = Run(*tool(site, "revert"), pause_at=pauses.WRITTEN).held()
    cell = keras(site).files_of({LayerSet.CONVLSTM})[0].path
    edited = cell.with_name("edited.tmp")
    edited.write_text(cell.read_text() + "\n# edited meanwhile\n")
    edited.replace(cell)  # another program replaced it (a restored file is its backup copy's hard link until then)
    revert.release().finish()
    assert revert.returncode == 5, revert.output
    assert "was changed by another program" in revert.stderr and "rolled back" in revert.stderr
    assert manifest_path(site).exists()
    assert "# edited meanwhile" in cell.read_text()
    # The rest is as before the revert: patched, with its backup, which is intact.
    assert cli_at(site, "status", "--only", "keras").exit_code == 0
    assert sorted(patched_files(site)) == ["conv_lstm.py", "conv_lstm1d.py", "conv_lstm2d.py", "conv_lstm3d.py"]
