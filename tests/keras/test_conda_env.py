"""A real conda environment (scripts/conda_env.py: keras built as conda-forge builds it,
installed by rattler with hard links from its package cache): patched, verified, reverted
to the sha256 conda-meta records, the cache untouched, and conda's remedies in every
message that names a reinstall.

Every run passes ``--only keras``: the environment sees the test venv's packages (TensorFlow)
through a .pth file, tf_keras among them, which these tests must not touch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import conda_env  # scripts/conda_env.py (conftest puts scripts/ on sys.path)
import pytest
from environments import environment
from helpers import cli

pytestmark = pytest.mark.slow  # builds keras from its sdist and a conda environment (about 30 s)

VERSION = "3.15.0"  # not the test venv's keras (3.15.1): the environment's own is the one found
CONVLSTM = [
    "keras/src/layers/rnn/conv_lstm.py",
    "keras/src/layers/rnn/conv_lstm1d.py",
    "keras/src/layers/rnn/conv_lstm2d.py",
    "keras/src/layers/rnn/conv_lstm3d.py",
]


def run(env, *args: str):
    return cli(*args, "--python", str(env.python), "--only", "keras")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its sha256: the package cache, byte for byte."""
    return {
        str(path.relative_to(folder)): sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and ".convlstm-patch" not in path.parts
    }


def recorded(env) -> dict[str, str]:
    """conda-meta's sha256 (in the prefix) of every file of the package but bytecode."""
    paths = json.loads(env.record.read_text())["paths_data"]["paths"]
    return {entry["_path"]: entry["sha256_in_prefix"] for entry in paths if entry["path_type"] != "pyc_file"}


def altered_files(env) -> dict[str, list[str]]:
    """What `conda doctor`'s altered-files check reports (conda/plugins/subcommands/doctor/
    health_checks/altered_files.py, find_altered_packages): per record, the files whose
    sha256 differs from `sha256_in_prefix`, .pyc/.pyo left out, missing files skipped."""
    altered: dict[str, list[str]] = {}
    for record in sorted((env.prefix / "conda-meta").glob("*.json")):
        for entry in json.loads(record.read_text()).get("paths_data", {}).get("paths", []):
            path, expected = entry["_path"], entry.get("sha256_in_prefix")
            if path.endswith((".pyc", ".pyo")) or expected is None or not (env.prefix / path).is_file():
                continue
            if sha256(env.prefix / path) != expected:
                altered.setdefault(record.stem, []).append(path)
    return altered


def in_prefix(env, relative: str) -> str:
    return f"{env.site.relative_to(env.prefix).as_posix()}/{relative}"


def cached(env, relative: str) -> Path:
    """The package cache's copy of a site-packages file (a noarch package keeps site-packages/)."""
    return env.cache / f"keras-{VERSION}-{conda_env.BUILD}" / "site-packages" / relative


@pytest.fixture
def env(tmp_path: Path):
    return conda_env.build(tmp_path / "conda", VERSION)


def test_a_conda_environment_is_patched_verified_and_reverted_to_its_recorded_hashes(env):
    cache, pristine = tree(env.cache), recorded(env)
    assert all(sha256(env.prefix / path) == digest for path, digest in pristine.items())
    # As conda links them: each file is its cache copy (one inode, two names).
    for relative in CONVLSTM:
        live, kept = (env.site / relative).stat(), cached(env, relative).stat()
        assert (live.st_ino, live.st_nlink) == (kept.st_ino, 2), relative

    status = run(env, "status")
    assert status.exit_code == 0, status.output
    record = f"conda-meta/keras-{VERSION}-{conda_env.BUILD}.json"
    assert f"  conda environment {env.prefix}: package keras-{VERSION}-{conda_env.BUILD} ({record})\n" in status.output
    (flavour,) = json.loads(run(env, "status", "--json").stdout)["flavours"]
    assert flavour["site"] == str(env.site) and flavour["conda"]["record"] == str(env.record)

    applied = run(env, "apply")
    assert applied.exit_code == 0, applied.output
    assert f"keras-{VERSION} [tensorflow]: verified (5 checks passed)" in applied.output
    # What `conda doctor` reports now: the patched files, and nothing else.
    assert altered_files(env) == {env.record.stem: sorted(in_prefix(env, relative) for relative in CONVLSTM)}
    # Replaced, never written through: a new file each, the cache's copy kept by its backup.
    for relative in CONVLSTM:
        live, kept = (env.site / relative).stat(), cached(env, relative).stat()
        assert live.st_ino != kept.st_ino and live.st_nlink == 1, relative
        assert kept.st_nlink == 2, relative  # the cache's name and the backup's
    assert tree(env.cache) == cache

    verified = run(env, "verify")
    assert verified.exit_code == 0, verified.output
    assert f"keras-{VERSION} [tensorflow]: passed" in verified.output

    reverted = run(env, "revert")
    assert reverted.exit_code == 0, reverted.output
    assert {path: sha256(env.prefix / path) for path in pristine} == pristine
    assert altered_files(env) == {}
    for relative in CONVLSTM:  # the cache's file again, linked as conda linked it
        live, kept = (env.site / relative).stat(), cached(env, relative).stat()
        assert (live.st_ino, live.st_nlink) == (kept.st_ino, 2), relative
    assert tree(env.cache) == cache


def test_conda_remedies_are_named_and_the_reinstall_they_name_restores_the_files(env):
    cache, pristine = tree(env.cache), recorded(env)
    remedy = f"`conda install --force-reinstall -p {env.prefix} keras={VERSION}`"
    edited, deleted = env.site / CONVLSTM[1], env.site / CONVLSTM[2]

    def replace(path: Path, data: bytes) -> None:
        path.unlink()  # a new file: writing into the link would edit the cache
        path.write_bytes(data)

    outputs = []
    replace(edited, edited.read_bytes() + b"# edited\n")
    modified = run(env, "apply")
    assert modified.exit_code == 5, modified.output
    outputs.append(modified.output)
    deleted.unlink()
    for command in ("status", "apply"):
        missing = run(env, command)
        assert missing.exit_code == (0 if command == "status" else 5), missing.output
        outputs.append(missing.output)

    conda_env.reinstall(env)  # the remedy, done as conda does it
    assert {path: sha256(env.prefix / path) for path in pristine} == pristine
    applied = run(env, "apply", "--no-verify")
    assert applied.exit_code == 0, applied.output
    backup = env.site / ".convlstm-patch" / "backups" / f"keras-{VERSION}" / "files" / CONVLSTM[0]
    replace(backup, backup.read_bytes() + b"# damaged\n")
    damaged = run(env, "revert")
    assert damaged.exit_code == 8, damaged.output
    outputs.append(damaged.output)

    for output in outputs:
        assert remedy in output, output
        assert "pip install" not in output, output
    conda_env.reinstall(env)
    assert {path: sha256(env.prefix / path) for path in pristine} == pristine
    assert run(env, "status").exit_code == 0
    assert tree(env.cache) == cache
    assert os.path.samefile(env.site / CONVLSTM[2], cached(env, CONVLSTM[2]))


def test_anacondas_source_tree_keras_3_0_is_patched_verified_and_reverted(tmp_path):
    """Anaconda's `defaults` builds keras 3.0.x from its source tag: keras/layers/..., no src/.
    The oldest Keras 3 venv (tests/environments.py) has its dependencies (dm-tree)."""
    python = environment("keras-3.0.0")
    site = conda_env.source_tree_build("3.0.0", tmp_path / "site-packages")
    before = tree(site)

    def at(*args: str):
        return cli(*args, "--python", str(python), "--keras-root", str(site), "--only", "keras")

    (flavour,) = json.loads(at("status", "--json").stdout)["flavours"]
    assert (flavour["layout"], flavour["state"]) == ("keras3-tree", "pristine")
    assert [file["path"] for file in flavour["files"]] == [path.replace("/src/", "/") for path in CONVLSTM]
    assert flavour["layer_sets"]["supported"] == ["convlstm"]
    applied = at("apply")
    assert applied.exit_code == 0, applied.output
    assert "keras-3.0.0 [tensorflow]: verified (5 checks passed)" in applied.output
    assert before != tree(site)
    checked = at("check")  # PyPI's 3.0.0 has a lock; this build of it has none
    assert checked.exit_code == 10, checked.output
    assert "no hash pins for keras-3.0.0 (Keras 3.0, source-tree build)" in checked.output
    refused = at("apply", "--layers", "convlstm,lstm")
    assert refused.exit_code == 4, refused.output
    reverted = at("revert")
    assert reverted.exit_code == 0, reverted.output
    assert tree(site) == before
