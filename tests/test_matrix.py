"""scripts/matrix.py: which cells exist, the CI sample, and the RECORD comparison (no venvs built here)."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import matrix  # noqa: E402


def by_id():
    return {cell.id: cell for cell in matrix.cells()}


def test_cells_cover_every_generation_the_issue_names():
    cells = by_id()
    keras3 = [cell for cell in cells.values() if cell.generation == "Keras 3" and cell.backend == "tensorflow"]
    assert {cell.version.rsplit(".", 1)[0] for cell in keras3} == {f"3.{minor}" for minor in range(16)}
    assert {"keras-3.15.1-torch", "keras-3.15.1-jax"} <= set(cells)
    tf_keras = {cell.version.rsplit(".", 1)[0] for cell in cells.values() if cell.distribution == "tf_keras"}
    assert tf_keras == {f"2.{minor}" for minor in range(15, 22)}
    for version in ("2.12.0", "2.13.1", "2.14.0", "2.15.0", "2.9.0", "2.10.0", "2.11.0"):
        assert cells[f"keras-{version}"].kind == "run"
    for version in ("2.0.9", "2.1.4", "2.1.6", "2.2.4", "2.3.1"):
        assert cells[f"keras-{version}"].backend == "theano"
    assert cells["keras-2.4.3"].kind == "transform" and cells["keras-2.4.3"].reason


def test_ids_unique_and_every_cell_explains_itself():
    cells = matrix.cells()
    assert len({cell.id for cell in cells}) == len(cells)
    for cell in cells:
        if cell.kind == "transform":
            assert cell.reason, cell.id
        else:
            assert cell.packages, cell.id
        # not the user's stack: the note says how
        if cell.sitecustomize or cell.after:
            assert cell.note, cell.id


def test_sample_is_what_ci_needs():
    sample = sorted(cell.id for cell in matrix.cells() if cell.sample)
    assert sample == ["keras-2.2.4", "keras-3.0.5", "keras-3.15.1", "tf_keras-2.21.0"]
    assert min(matrix.cells(), key=matrix.priority).id == "keras-2.2.4"


def test_shims_live_only_in_the_venv_and_are_valid_python():
    for text in (matrix.THEANO_SITECUSTOMIZE.format(venv="/v"), matrix.ARGSPEC_SITECUSTOMIZE):
        compile(text, "sitecustomize.py", "exec")
    product = Path(__file__).resolve().parent.parent / "patcher"
    for path in product.rglob("*.py"):
        source = path.read_text()
        assert "scan_perform_ext" not in source and "collections.Iterable" not in source, path


def test_newest_per_minor():
    versions = ["2.9.0", "2.10.0", "2.10.1", "3.0.0", "3.0.5", "3.1.0"]
    assert matrix.newest_per_minor(versions, (2, 10), (3, 0)) == ["2.10.1", "3.0.5"]


@pytest.mark.parametrize(
    "path, expected",
    [
        ("keras/src/layers/rnn/conv_lstm2d_test.py", True),
        ("keras/layers/convolutional_recurrent_test.py", True),
        ("keras/src/layers/rnn/conv_lstm2d.py", False),
        ("keras/src/layers/rnn/lstm_test.py", False),
    ],
)
def test_own_test_files(path, expected):
    assert matrix.is_convlstm_test(path) is expected


def test_record_comparison(tmp_path):
    package = tmp_path / "keras"
    package.mkdir()
    (package / "a.py").write_text("a = 1\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(b"a = 1\n").digest()).rstrip(b"=").decode()
    info = tmp_path / "keras-9.9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: keras\nVersion: 9.9.9\n")
    (info / "RECORD").write_text(f"keras/a.py,sha256={digest},6\nkeras-9.9.9.dist-info/RECORD,,\n")
    record = matrix.record_of(tmp_path, "keras", "9.9.9")
    assert list(record) == ["keras/a.py"]
    assert matrix.record_mismatches(tmp_path, record) == []
    (package / "a.py").write_text("a = 2\n")
    assert matrix.record_mismatches(tmp_path, record) == ["keras/a.py"]


def test_markdown_from_results(tmp_path):
    result = {
        "id": "keras-2.2.4", "distribution": "keras", "version": "2.2.4", "backend": "theano",
        "generation": "old label", "kind": "run", "outcome": "run-verified", "seconds": 65.3,
        "runtime": {"theano": "1.0.5"}, "verification": [{"backend": "theano", "passed": True, "checks": {}}],
        "own_tests": {"shipped": False}, "record_identical": True,
    }
    matrix.write_json(tmp_path, {"keras-2.2.4": result})
    assert json.loads((tmp_path / "matrix.json").read_text())["cells"][0]["id"] == "keras-2.2.4"
    table = matrix.markdown(tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| keras 2.2.4"))
    assert "Theano 1.0.5" in row and "**run-verified**" in row and "keras 2.0-2.3" in row and "| yes |" in row


def test_shims_never_written_outside_the_venv(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLSTM_PATCH_ENV_CACHE", str(tmp_path / "venvs"))
    cell = next(cell for cell in matrix.cells() if cell.sitecustomize)
    outside = tmp_path / "system-site-packages"
    outside.mkdir()
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho {outside}\n")
    fake.chmod(0o755)
    with pytest.raises(matrix.StepFailed, match="outside"):
        matrix.Runner.write_sitecustomize(cell, fake)
    assert not (outside / "sitecustomize.py").exists()
