"""A Keras conda installed, on a fake conda layout (tests/fake_keras.install_conda): which
package owns it, the remedies that name a reinstall, conda-meta's hashes, what status says.

No Keras, TensorFlow or libcst: the real conda environment, patched, verified and reverted
with its package cache, is tests/keras/test_conda_env.py (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import fake_keras
import pytest
from helpers import cli_at

from patcher.environment import HashSource, find_flavours

VERSION = "3.99.0"
CONV_LSTM = "keras/src/layers/rnn/conv_lstm.py"


def conda_command(site: Path) -> str:
    prefix = site.parents[2]
    return f"conda install --force-reinstall -p {prefix} keras={VERSION}"


def flavour_at(site: Path):
    (flavour,) = find_flavours([str(site)])
    return flavour


def test_the_record_that_lists_the_dist_info_names_the_package_and_its_environment(tmp_path):
    site = fake_keras.install_conda(tmp_path)
    conda = flavour_at(site).conda
    assert (conda.name, conda.version, conda.build) == ("keras", VERSION, "pyh0_0")
    assert conda.prefix == tmp_path / "envs" / "ml"
    assert conda.record == conda.prefix / "conda-meta" / f"keras-{VERSION}-pyh0_0.json"
    assert flavour_at(site).reinstall_command == conda_command(site)


def test_a_record_named_otherwise_is_found_when_installer_says_conda(tmp_path):
    site = fake_keras.install_conda(tmp_path)
    meta = tmp_path / "envs" / "ml" / "conda-meta"
    (meta / f"keras-{VERSION}-pyh0_0.json").rename(meta / f"keras-core-{VERSION}-0.json")
    assert flavour_at(site).conda.record == meta / f"keras-core-{VERSION}-0.json"


@pytest.mark.parametrize(
    ("installer", "expected"),
    [
        pytest.param("conda", "conda install --force-reinstall -p {prefix} keras=3.99.0", id="installer-conda"),
        pytest.param("pip", "pip install --force-reinstall --no-deps keras==3.99.0", id="pip-in-a-conda-env"),
    ],
)
def test_without_a_record_installer_decides(tmp_path, installer, expected):
    """conda-pack'ed or copied environments lose no INSTALLER; `pip install keras` in a conda
    environment leaves conda-meta without a record for it: pip's remedy is then the right one."""
    site = fake_keras.install_conda(tmp_path, installer=installer)
    meta = tmp_path / "envs" / "ml" / "conda-meta"
    (meta / f"keras-{VERSION}-pyh0_0.json").unlink()
    assert flavour_at(site).reinstall_command == expected.format(prefix=tmp_path / "envs" / "ml")


def test_a_record_of_another_keras_does_not_claim_a_pip_install(tmp_path):
    """`pip install -U keras` over conda's: conda-meta still lists the old dist-info, not the new one."""
    site = fake_keras.install_conda(tmp_path, installer="pip")
    info = site / f"keras-{VERSION}.dist-info"
    newer = site / "keras-3.99.1.dist-info"
    info.rename(newer)
    (newer / "METADATA").unlink()
    (newer / "METADATA").write_text("Metadata-Version: 2.1\nName: keras\nVersion: 3.99.1\n")
    assert flavour_at(site).conda is None
    assert flavour_at(site).reinstall_command == "pip install --force-reinstall --no-deps keras==3.99.1"


def test_a_pip_venv_is_not_conda(tmp_path):
    site = fake_keras.install(tmp_path / "lib" / "python3.11" / "site-packages")
    assert flavour_at(site).conda is None


# -- conda-meta's hashes ---------------------------------------------------------------------


def test_record_hashes_come_first_and_conda_meta_serves_where_record_has_none(tmp_path):
    with_record = flavour_at(fake_keras.install_conda(tmp_path / "a"))
    without = flavour_at(fake_keras.install_conda(tmp_path / "b", record_hashes=False))
    assert {target.hash_source for target in with_record.files} == {HashSource.RECORD}
    assert {target.hash_source for target in without.files} == {HashSource.CONDA}
    assert [t.record_sha256 for t in without.files] == [t.record_sha256 for t in with_record.files]
    assert all(target.record_sha256 for target in without.files)


def test_sha256_in_prefix_wins_over_the_package_sha256(tmp_path):
    """conda records both; after prefix replacement only sha256_in_prefix is what is on disk."""
    site = fake_keras.install_conda(tmp_path, record_hashes=False)
    record = next((tmp_path / "envs" / "ml" / "conda-meta").glob("keras-*.json"))
    data = json.loads(record.read_text())
    for entry in data["paths_data"]["paths"]:
        entry["sha256"] = "0" * 64
    record.write_text(json.dumps(data))
    target = next(t for t in flavour_at(site).files if t.relative == CONV_LSTM)
    assert target.record_sha256 == fake_keras.hashlib.sha256(fake_keras.source(CONV_LSTM)).hexdigest()


def test_an_edited_file_is_modified_against_conda_meta(tmp_path):
    site = fake_keras.install_conda(tmp_path, record_hashes=False)
    path = site / CONV_LSTM
    path.unlink()  # never write through the hard link into pkgs/
    path.write_bytes(fake_keras.source(CONV_LSTM, "edited"))
    document = json.loads(cli_at(site, "status", "--json").stdout)
    (state,) = [file for file in document["flavours"][0]["files"] if file["path"] == CONV_LSTM]
    assert state["state"] == "modified"
    assert state["note"] == "differs from conda's record of the package (conda-meta)"


# -- what status says, and every remedy ------------------------------------------------------


def test_status_says_it_is_a_conda_environment(tmp_path):
    site = fake_keras.install_conda(tmp_path)
    prefix = tmp_path / "envs" / "ml"
    text = cli_at(site, "status")
    assert text.exit_code == 0, text.output
    assert (
        f"  conda environment {prefix}: package keras-{VERSION}-pyh0_0 (conda-meta/keras-{VERSION}-pyh0_0.json)\n"
        in text.output
    )
    document = json.loads(cli_at(site, "status", "--json").stdout)
    assert document["flavours"][0]["conda"] == {
        "name": "keras",
        "version": VERSION,
        "build": "pyh0_0",
        "prefix": str(prefix),
        "record": str(prefix / "conda-meta" / f"keras-{VERSION}-pyh0_0.json"),
        "reinstall": conda_command(site),
    }
    pip_site = fake_keras.install(tmp_path / "venv")
    assert json.loads(cli_at(pip_site, "status", "--json").stdout)["flavours"][0]["conda"] is None
    assert "conda environment" not in cli_at(pip_site, "status").output


def _modified(site: Path) -> None:
    path = site / CONV_LSTM
    path.unlink()
    path.write_bytes(fake_keras.source(CONV_LSTM, "edited"))


def _missing(site: Path) -> None:
    (site / CONV_LSTM).unlink()


def _unlisted(site: Path) -> None:
    """A RECORD that does not list a file of the layout: the flavour is refused, with a remedy."""
    record = site / f"keras-{VERSION}.dist-info" / "RECORD"
    kept = [line for line in record.read_text().splitlines() if not line.startswith(CONV_LSTM)]
    record.unlink()
    record.write_text("\n".join(kept) + "\n")


@pytest.mark.parametrize(
    ("damage", "command", "exit_code"),
    [
        pytest.param(_modified, "apply", 5, id="apply-modified"),
        pytest.param(_missing, "apply", 5, id="apply-missing"),
        pytest.param(_missing, "status", 0, id="status-missing"),
        pytest.param(_unlisted, "status", 0, id="status-unlisted"),
        pytest.param(_unlisted, "apply", 4, id="apply-unlisted"),
    ],
)
def test_every_remedy_that_names_a_reinstall_names_conda(tmp_path, damage, command, exit_code):
    site = fake_keras.install_conda(tmp_path)
    damage(site)
    result = cli_at(site, command)
    assert result.exit_code == exit_code, result.output
    assert f"`{conda_command(site)}`" in result.output
    assert "pip install" not in result.output


# -- Anaconda's defaults keras 3.0.x: the source tree, no src/ -------------------------------


def test_a_source_tree_keras_3_is_found_with_its_convlstm_files_only(tmp_path):
    site = fake_keras.install(tmp_path / "site-packages")
    for relative in fake_keras.FILES:  # keras/src/layers/... -> keras/layers/...
        (site / relative.replace("/src/", "/")).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).rename(site / relative.replace("/src/", "/"))
    record = site / f"keras-{VERSION}.dist-info" / "RECORD"
    record.write_text(record.read_text().replace("keras/src/", "keras/"))
    flavour = flavour_at(site)
    assert flavour.layout.name == "keras3-tree" and flavour.layout.multi_backend
    assert [target.relative for target in flavour.files] == [r.replace("/src/", "/") for r in fake_keras.CONVLSTM]
    assert [str(layer_set) for layer_set in flavour.supported_sets] == ["convlstm"]
