"""scripts/pristine.py: the tests' stock Keras, whatever state the environment is in.

Each case treats a ``site`` copy as "the environment", puts it in one state a
user's environment can be in, and checks that the pristine copy made from it
matches RECORD file for file, from the source the project trusts for that state.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import ROOT, cli_at, hashes, tree_hashes

from patcher.environment import find_flavours

sys.path.insert(0, str(ROOT / "scripts"))
from pristine import copy_pristine

ALL_SETS = "convlstm,lstm,gru"  # the pristine copy restores every layer set's files


def all_files(site: Path, name: str):
    (flavour,) = find_flavours([str(site)], only=name)
    return flavour.files


def record_hashes(site: Path, name: str) -> dict[str, str]:
    return {target.relative: target.record_sha256 for target in all_files(site, name)}


def copied(site: Path, tmp_path: Path, name: str = "keras"):
    dest = tmp_path / "pristine"
    dest.mkdir(exist_ok=True)
    copy = copy_pristine(name, dest, path=[str(site)])
    files = [target.path for target in all_files(dest, name)]
    return copy, {str(path.relative_to(dest)): digest for path, digest in hashes(files).items()}


def test_pristine_environment_is_copied_as_it_is(site, tmp_path):
    copy, digests = copied(site, tmp_path)
    assert digests == record_hashes(site, "keras")
    assert set(copy.sources.values()) == {"installed"}


def test_patched_environment_gives_the_backup_and_stays_patched(site, tmp_path):
    assert cli_at(site, "apply", "--only", "keras", "--no-verify", "--layers", ALL_SETS).exit_code == 0
    before = tree_hashes(site)
    copy, digests = copied(site, tmp_path)
    assert digests == record_hashes(site, "keras")
    assert set(copy.sources.values()) == {"backup"}
    assert tree_hashes(site) == before  # the environment is only read


@pytest.mark.slow  # downloads the release's wheel
def test_forced_patch_over_an_edit_gives_the_wheel(site, tmp_path):
    cell = site / "keras/src/layers/rnn/conv_lstm.py"
    cell.write_text(cell.read_text() + "\n# a hand edit\n")
    assert cli_at(site, "apply", "--only", "keras", "--no-verify", "--force", "--layers", ALL_SETS).exit_code == 0
    copy, digests = copied(site, tmp_path)
    assert digests == record_hashes(site, "keras")
    # the backup holds the hand edit, which does not match RECORD: the wheel is used for that file
    assert copy.sources["keras/src/layers/rnn/conv_lstm.py"] == "wheel"
    assert {source for relative, source in copy.sources.items() if not relative.endswith("/conv_lstm.py")} == {"backup"}


def test_patched_tf_keras_too(site, tmp_path):
    assert cli_at(site, "apply", "--only", "tf_keras", "--no-verify", "--layers", ALL_SETS).exit_code == 0
    copy, digests = copied(site, tmp_path, "tf_keras")
    assert digests == record_hashes(site, "tf_keras")
    assert set(copy.sources.values()) == {"backup"}
