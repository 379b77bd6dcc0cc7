"""scripts/matrix.py: which cells exist, the CI sample, the RECORD comparison, and where a cell's backend comes from."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import matrix_cells
import matrix_own_tests
import matrix_report
import matrix_results
import matrix_run
import venvs

from patcher.layersets import LayerSet, ordered


def by_id():
    return {cell.id: cell for cell in matrix_cells.cells()}


def test_cells_cover_every_generation_the_issue_names():
    cells = by_id()
    keras3 = [cell for cell in cells.values() if cell.generation == "Keras 3" and cell.backend == "tensorflow"]
    assert {cell.version.rsplit(".", 1)[0] for cell in keras3} == {f"3.{minor}" for minor in range(16)}
    assert {"keras-3.15.1-torch", "keras-3.15.1-jax"} <= set(cells)
    tf_keras = {cell.version.rsplit(".", 1)[0] for cell in cells.values() if cell.distribution == "tf_keras"}
    assert tf_keras == {f"2.{minor}" for minor in range(15, 22)}
    for version in ("2.12.0", "2.13.1", "2.14.0", "2.15.0", "2.9.0", "2.10.0", "2.11.0", "2.6.0", "2.7.0", "2.8.0"):
        assert cells[f"keras-{version}"].kind == "run"
    assert [cell.id for cell in cells.values() if cell.kind == "transform"] == ["keras-2.4.3"]
    for version in ("2.0.9", "2.1.4", "2.1.6", "2.2.4", "2.3.1"):
        assert cells[f"keras-{version}"].backend == "theano"
    assert cells["keras-2.4.3"].kind == "transform" and cells["keras-2.4.3"].reason


def test_ids_unique_and_every_cell_explains_itself():
    cells = matrix_cells.cells()
    assert len({cell.id for cell in cells}) == len(cells)
    for cell in cells:
        if cell.kind == "transform":
            assert cell.reason, cell.id
        else:
            assert cell.packages, cell.id
        # not the user's stack: the note says how
        if cell.sitecustomize or cell.after:
            assert cell.note, cell.id


@pytest.mark.parametrize("version", ["2.6.0", "2.7.0", "2.8.0"])
def test_keras_2_6_to_2_8_run_on_their_own_tensorflow_under_python_3_9(version):
    cell = by_id()[f"keras-{version}"]
    minor = version.rsplit(".", 1)[0]
    assert (cell.python, cell.shared, cell.sitecustomize, cell.after) == ("3.9", False, "", [])
    assert cell.packages == [f"tensorflow-cpu=={minor}.*", f"keras=={version}", "numpy<2"]
    assert "Python 3.9" in cell.note and "numpy<2" in cell.note


def test_a_cell_venv_is_made_by_its_python_and_named_for_its_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLSTM_PATCH_ENV_CACHE", str(tmp_path / "venvs"))
    cell = by_id()["keras-2.7.0"]
    assert by_id()["keras-3.15.1"].base_python() is None  # the running interpreter
    monkeypatch.setattr(
        venvs, "interpreter", lambda version: Path(f"/opt/python{version}") if version == "3.9" else None
    )
    assert cell.base_python() == Path("/opt/python3.9")
    other = matrix_cells.Cell(**{**cell.__dict__, "python": "3.8"})
    with pytest.raises(matrix_cells.StepFailed, match="no Python 3.8 interpreter found"):
        other.base_python()
    # Another Python or another package list: another venv, never the one built before.
    assert other.venv != cell.venv
    assert matrix_cells.Cell(**{**cell.__dict__, "packages": cell.packages[:2]}).venv != cell.venv
    assert cell.venv == by_id()["keras-2.7.0"].venv and cell.venv.name.startswith("matrix-keras-2.7.0-")


def test_venvs_interpreter_takes_pyenvs_newest_patch(tmp_path, monkeypatch):
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for name in ("3.9.2", "3.9.18", "3.9-dev", "3.10.13"):
        python = tmp_path / "versions" / name / "bin" / f"python{name[:4].rstrip('.-')}"
        python.parent.mkdir(parents=True)
        python.write_text("")
    assert venvs.interpreter("3.9") == tmp_path / "versions" / "3.9.18" / "bin" / "python3.9"
    assert venvs.interpreter("3.10") == tmp_path / "versions" / "3.10.13" / "bin" / "python3.10"
    assert venvs.interpreter("3.8") is None
    # No PYENV_ROOT and a HOME without .pyenv (CI's): the folder of the pyenv on PATH.
    monkeypatch.delenv("PYENV_ROOT")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "libexec").mkdir()
    (tmp_path / "libexec" / "pyenv").write_text("#!/bin/sh\n")
    (tmp_path / "libexec" / "pyenv").chmod(0o755)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pyenv").symlink_to("../libexec/pyenv")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert venvs.interpreter("3.9") == tmp_path / "versions" / "3.9.18" / "bin" / "python3.9"


def test_sample_is_what_ci_needs():
    sample = sorted(cell.id for cell in matrix_cells.cells() if cell.sample)
    assert sample == ["keras-2.2.4", "keras-3.0.5", "keras-3.15.1", "tf_keras-2.21.0"]
    assert min(matrix_cells.cells(), key=matrix_cells.priority).id == "keras-2.2.4"


def test_shims_live_only_in_the_venv_and_are_valid_python():
    for text in (matrix_cells.THEANO_SITECUSTOMIZE.format(venv="/v"), matrix_cells.ARGSPEC_SITECUSTOMIZE):
        compile(text, "sitecustomize.py", "exec")
    product = Path(__file__).resolve().parent.parent / "patcher"
    for path in product.rglob("*.py"):
        source = path.read_text()
        assert "scan_perform_ext" not in source and "collections.Iterable" not in source, path


def test_newest_per_minor():
    versions = ["2.9.0", "2.10.0", "2.10.1", "3.0.0", "3.0.5", "3.1.0"]
    assert matrix_cells.newest_per_minor(versions, (2, 10), (3, 0)) == ["2.10.1", "3.0.5"]


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
    assert matrix_own_tests.is_convlstm_test(path) is expected


def test_record_comparison(tmp_path):
    package = tmp_path / "keras"
    package.mkdir()
    (package / "a.py").write_text("a = 1\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(b"a = 1\n").digest()).rstrip(b"=").decode()
    info = tmp_path / "keras-9.9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: keras\nVersion: 9.9.9\n")
    (info / "RECORD").write_text(f"keras/a.py,sha256={digest},6\nkeras-9.9.9.dist-info/RECORD,,\n")
    record = matrix_run.record_of(tmp_path, "keras", "9.9.9")
    assert list(record) == ["keras/a.py"]
    assert matrix_run.record_mismatches(tmp_path, record) == []
    (package / "a.py").write_text("a = 2\n")
    assert matrix_run.record_mismatches(tmp_path, record) == ["keras/a.py"]


def test_markdown_from_results(tmp_path):
    result = {
        "id": "keras-2.2.4",
        "distribution": "keras",
        "version": "2.2.4",
        "backend": "theano",
        "generation": "old label",
        "kind": "run",
        "outcome": "run-verified",
        "seconds": 65.3,
        "runtime": {"theano": "1.0.5"},
        "verification": [{"backend": "theano", "passed": True, "checks": {}}],
        "own_tests": {"shipped": False},
        "record_identical": True,
    }
    matrix_results.write_json(tmp_path, {"keras-2.2.4": result})
    assert json.loads((tmp_path / "matrix.json").read_text())["cells"][0]["id"] == "keras-2.2.4"
    table = matrix_report.markdown(tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| keras 2.2.4"))
    assert "Theano 1.0.5" in row and "**run-verified**" in row and "keras 2.0-2.3" in row and "| yes |" in row


def test_shims_never_written_outside_the_venv(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLSTM_PATCH_ENV_CACHE", str(tmp_path / "venvs"))
    cell = next(cell for cell in matrix_cells.cells() if cell.sitecustomize)
    outside = tmp_path / "system-site-packages"
    outside.mkdir()
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho {outside}\n")
    fake.chmod(0o755)
    with pytest.raises(matrix_cells.StepFailed, match="outside"):
        matrix_run.Runner.write_sitecustomize(cell, fake)
    assert not (outside / "sitecustomize.py").exists()


# -- a shared cell's packages: the running interpreter's, never the base interpreter's --------

KERAS_STANDIN, BACKEND_STANDIN = "convlstm_marker_keras", "convlstm_marker_backend"

BUILD_CELL = f"""\
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import matrix_cells, matrix_run
matrix_cells.BACKEND_PACKAGES["standin"] = ["{BACKEND_STANDIN}==0.1"]
cell = matrix_cells.Cell("standin-1.0", "{KERAS_STANDIN}", "1.0", "standin", "run", "test", packages=["{KERAS_STANDIN}==1.0"], shared=True)
python = matrix_run.Runner(Path(sys.argv[2]), 60, own_tests=False).environment(cell, {{"steps": []}})
print(json.dumps({{"python": str(python), "venv": str(cell.venv)}}))
"""

INSPECT_CELL = """\
import importlib, json, sys, sysconfig
from importlib import metadata
first = {}
for dist in metadata.distributions(path=sys.path):  # what convlstm-patch does: the first per name
    first.setdefault(dist.metadata["Name"], (dist.version, str(dist.locate_file("").resolve())))
print(json.dumps({
    "modules": {name: importlib.import_module(name).__file__ for name in sys.argv[1:]},
    "first": {name: first.get(name) for name in sys.argv[1:]},
    "base_purelib_on_path": sysconfig.get_path("purelib", vars={"base": sys.base_prefix}) in sys.path,
}))
"""


def standin_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal wheel: one module saying its version, METADATA, WHEEL and RECORD."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: convlstm-patch tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
        f"{len(text.encode())}\n"
        for path, text in files.items()
    )
    files[f"{info}/RECORD"] = record + f"{info}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.mark.slow  # builds throwaway venvs
@pytest.mark.parametrize(
    "running_holds, backend_from",
    [
        # keras 3.0.5 beside the running venv's keras 3.15.1 and TensorFlow
        pytest.param({KERAS_STANDIN: "2.0", BACKEND_STANDIN: "0.1"}, "running", id="other-version-backend-shared"),
        # keras 3.15.1 where the running venv has 3.15.1 too but no TensorFlow
        pytest.param({KERAS_STANDIN: "1.0"}, "cell", id="same-version-backend-installed"),
    ],
)
def test_a_shared_cell_sees_the_running_venv_and_puts_its_own_keras_first(tmp_path, running_holds, backend_from):
    """Built from inside a venv (its base interpreter has neither stand-in): the cell
    imports the running venv's backend or installs its own, and its own Keras wins."""
    running = tmp_path / "running-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(running)], check=True)
    running_python = running / "bin" / "python"
    running_site = Path(
        subprocess.run(
            [str(running_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for name, version in running_holds.items():  # "installed": unpacked, as pip leaves a wheel
        with zipfile.ZipFile(standin_wheel(tmp_path / "held", name, version)) as archive:
            archive.extractall(running_site)
    index = tmp_path / "index"  # what pip may install: the cell's Keras and the backend, nothing from the network
    standin_wheel(index, KERAS_STANDIN, "1.0")
    standin_wheel(index, BACKEND_STANDIN, "0.1")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "PYTHON"))}
    env.update(
        CONVLSTM_PATCH_ENV_CACHE=str(tmp_path / "venvs"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(index),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    scripts = Path(matrix_cells.__file__).parent
    built = subprocess.run(
        [str(running_python), "-c", BUILD_CELL, str(scripts), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
        check=False,  # the assertion below shows its output
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    cell = json.loads(built.stdout.splitlines()[-1])
    venv = Path(cell["venv"])
    assert "include-system-site-packages = true" not in (venv / "pyvenv.cfg").read_text()

    inspected = subprocess.run(
        [cell["python"], "-c", INSPECT_CELL, KERAS_STANDIN, BACKEND_STANDIN],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert inspected.returncode == 0, inspected.stderr[-2000:]
    found = json.loads(inspected.stdout)
    assert not found["base_purelib_on_path"]
    cell_site = venvs.purelib(Path(cell["python"])).resolve()
    # The cell's own Keras: module and dist-info, though the running venv holds one too.
    assert Path(found["modules"][KERAS_STANDIN]).resolve().is_relative_to(cell_site)
    assert found["first"][KERAS_STANDIN] == ["1.0", str(cell_site)]
    backend_site = running_site.resolve() if backend_from == "running" else cell_site
    assert Path(found["modules"][BACKEND_STANDIN]).resolve().is_relative_to(backend_site)
    assert found["first"][BACKEND_STANDIN] == ["0.1", str(backend_site)]
    # pip in the cell left the running venv's packages as they were.
    for name, version in running_holds.items():
        assert (running_site / f"{name}-{version}.dist-info" / "RECORD").exists()
        assert (running_site / name / "__init__.py").read_text() == f"__version__ = {version!r}\n"


# -- layer sets per cell, the canary, what a cell records ---------------------------------------

PINS_ROOT = Path(__file__).resolve().parent.parent / "patches" / "pins"
RNN = ("convlstm", "lstm", "gru")


def test_every_cell_runs_the_layer_sets_its_lock_lists():
    for cell in matrix_cells.cells():
        if cell.canary:
            continue
        lock = json.loads((PINS_ROOT / cell.distribution / f"{cell.version}.json").read_text())
        assert [str(layer_set) for layer_set in cell.layer_sets] == lock["layer_sets"], cell.id
    cells = by_id()
    # LSTM/GRU beside the ConvLSTM files: Keras 3, tf_keras, keras 2.9-2.15.
    for cell in cells.values():
        if cell.generation in ("Keras 3", "tf_keras", "keras 2.12-2.15", "keras 2.9-2.11"):
            assert matrix_cells.layers_option(cell.layer_sets) == ["--layers", "convlstm,lstm,gru"], cell.id
    # Elsewhere (recurrent.py): ConvLSTM only; keras 2.4 has nothing to patch, apply says so.
    for name in ("keras-2.2.4", "keras-2.0.9", "keras-2.6.0", "keras-2.8.0"):
        assert matrix_cells.layers_option(cells[name].layer_sets) == ["--layers", "convlstm"], name
    assert matrix_cells.layers_option(cells["keras-2.4.3"].layer_sets) == []


def test_the_canary_is_keras_nightly_and_runs_only_when_named():
    everything = matrix_cells.cells()
    (canary,) = [cell for cell in everything if cell.canary]
    assert canary.id == "keras-nightly" and canary.kind == "run" and canary.shared and not canary.sample
    assert (canary.distribution, canary.package, canary.backend) == ("keras_nightly", "keras", "tensorflow")
    assert "--pre" in canary.packages and "keras-nightly" in canary.packages
    assert [str(layer_set) for layer_set in canary.layer_sets] == list(RNN)
    assert canary not in matrix_cells.select(everything, True, False, None)
    assert canary not in matrix_cells.select(everything, False, True, None)
    assert len(matrix_cells.select(everything, True, False, None)) == len(everything) - 1
    assert matrix_cells.select(everything, False, False, "keras-nightly, keras-2.2.4") == [
        canary,
        by_id()["keras-2.2.4"],
    ]
    assert "keras-nope" in matrix_cells.select(everything, False, False, "keras-nope")
    # A kept result is kept for a release, never for the canary.
    release = by_id()["keras-3.15.1"]
    results = {cell.id: {"outcome": "run-verified"} for cell in (canary, release)}
    assert matrix_cells.to_run([canary, release], results, rerun=False, rerun_failed=False) == [canary]
    assert matrix_cells.to_run([canary, release], results, rerun=True, rerun_failed=False) == [canary, release]


def kept_report(checks: dict[str, str], failed=()) -> dict:
    """A verification report as a result keeps it: each check with the layer set apply --json names."""
    return {
        "backend": "tensorflow",
        "passed": not failed,
        "checks": [{"name": n, "layer_set": s, "passed": n not in failed, "detail": "d"} for n, s in checks.items()],
        "failed": list(failed),
    }


CONVLSTM_PAIR = {"api": "convlstm", "numerics": "convlstm"}
RNN_PAIRS = {"lstm api": "lstm", "lstm fused": "lstm", "gru api": "gru", "gru fused": "gru"}


@pytest.mark.parametrize(
    "checks, failed, expected",
    [
        pytest.param(CONVLSTM_PAIR, [], ("convlstm",), id="convlstm-only"),
        pytest.param({**CONVLSTM_PAIR, **RNN_PAIRS}, [], RNN, id="all-three"),
        pytest.param({**CONVLSTM_PAIR, **RNN_PAIRS}, ["lstm fused"], ("convlstm", "gru"), id="one-fails"),
        pytest.param(RNN_PAIRS, [], ("lstm", "gru"), id="no-convlstm-checks"),
        # The set is the field's, whatever the check is called.
        pytest.param({"api": "gru", "fused": "lstm"}, ["fused"], ("gru",), id="field-not-name"),
    ],
)
def test_verified_sets_read_off_the_checks(checks, failed, expected):
    report = kept_report(checks, failed)
    assert tuple(map(str, matrix_results.verified_sets([report]))) == expected
    # Several reports (backends): a set counts only where every report verified it.
    other = kept_report({"api": "convlstm"})
    assert tuple(map(str, matrix_results.verified_sets([report, other]))) == tuple(
        s for s in expected if s == "convlstm"
    )


def test_verification_keeps_each_checks_layer_set_and_refuses_a_tool_without_it():
    check = {"name": "gru fused", "layer_set": "gru", "passed": False, "detail": "d", "value": None}
    report = {"distribution": "keras", "version": "3.15.1", "backend": "jax", "passed": False, "checks": [check]}
    (kept,) = matrix_results.verification_of([report])
    assert kept == {
        "backend": "jax",
        "passed": False,
        "checks": [{"name": "gru fused", "layer_set": "gru", "passed": False, "detail": "d"}],
        "failed": ["gru fused"],
    }
    del check["layer_set"]
    with pytest.raises(matrix_cells.StepFailed, match="names no layer_set"):
        matrix_results.verification_of([report])


def test_own_tests_follow_the_layer_sets():
    record = [
        "keras/src/layers/rnn/conv_lstm2d_test.py",
        "keras/src/layers/rnn/lstm_test.py",
        "keras/src/layers/rnn/gru_test.py",
        "keras/src/layers/rnn/bidirectional_test.py",
        "keras/src/layers/rnn/simple_rnn_test.py",
        "keras/src/backend/tensorflow/lstm_test.py",
        "keras/src/layers/rnn/lstm.py",
    ]
    sets = {
        name: ordered(LayerSet(s) for s in names)
        for name, names in {"convlstm": ["convlstm"], "all": RNN, "gru": ["convlstm", "gru"]}.items()
    }
    assert matrix_own_tests.own_test_files(record, sets["convlstm"]) == ["keras/src/layers/rnn/conv_lstm2d_test.py"]
    assert matrix_own_tests.own_test_files(record, sets["all"]) == sorted(record[:4])
    assert matrix_own_tests.own_test_files(record, sets["gru"]) == sorted([record[0], record[2], record[3]])


# A run cell against a stand-in for `python -m patcher` (status, apply, check, revert
# answer from a table); the cell's "venv" holds a real dist-info whose RECORD is compared.

CONVLSTM_CHECKS = ["api", "numerics", "inheritance", "defaults", "serialization"]
RNN_CHECKS = [f"{s} {name}" for s in ("lstm", "gru") for name in ("api", "numerics", "fused")]
# What apply --json says of each check: its layer set (the stand-in's table; names are never parsed).
CHECK_SETS = {**dict.fromkeys(CONVLSTM_CHECKS, "convlstm"), **{name: name.split()[0] for name in RNN_CHECKS}}


REAL_RUN = subprocess.run


class StandInTool:
    def __init__(
        self,
        site: Path,
        distribution: str,
        version: str,
        supported=RNN,
        checks=None,
        failed=(),
        apply_exit=0,
        check_exit=0,
    ):
        self.site, self.calls = site, []
        self.status = {
            "flavours": [
                {
                    "distribution": distribution,
                    "version": version,
                    "site": str(site),
                    "state": "pristine",
                    "layer_sets": {"supported": list(supported)},
                }
            ]
        }
        names = CONVLSTM_CHECKS + RNN_CHECKS if checks is None else checks
        report = {
            "distribution": distribution,
            "version": version,
            "backend": "tensorflow",
            "passed": not failed,
            "checks": [
                {"name": n, "layer_set": CHECK_SETS[n], "passed": n not in failed, "detail": "d", "value": None}
                for n in names
            ],
        }
        self.apply = (
            apply_exit,
            {
                "verification": [report],
                **({"error": {"message": "verification failed at check 'x'", "exit_code": 9}} if apply_exit else {}),
            },
        )
        status = {0: "ok", 10: "no-lock"}.get(check_exit, "drift")
        self.check = (
            check_exit,
            {"results": [{"status": status, "problems": [] if status == "ok" else ["no hash pins for it"]}]},
        )

    def __call__(self, command, **kwargs):
        if command[1:3] != ["-m", "patcher"]:  # platform's `uname -p`, ...
            return REAL_RUN(command, **kwargs)
        argv = command[3:]
        self.calls.append(argv)
        code, document = {"status": (0, self.status), "apply": self.apply, "check": self.check}.get(argv[0], (0, {}))
        return subprocess.CompletedProcess(command, code, json.dumps(document), "")


def run_standin(tmp_path, monkeypatch, cell_id: str, version: str, **answers):
    monkeypatch.setenv("CONVLSTM_PATCH_ENV_CACHE", str(tmp_path / "venvs"))
    cell = by_id()[cell_id]
    site = cell.venv / "lib" / "site-packages"
    wheel = standin_wheel(tmp_path / "wheels", cell.distribution, version)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    tool = StandInTool(site, cell.distribution, version, **answers)
    monkeypatch.setattr(matrix_run, "tool_revision", lambda: {"version": "0.1.0", "commit": "0123456789"})
    monkeypatch.setattr(matrix_run.subprocess, "run", tool)
    monkeypatch.setattr(matrix_run.Runner, "environment", lambda self, cell, result: cell.venv / "bin" / "python")
    monkeypatch.setattr(matrix_run, "runtime_versions", lambda python, env: {"tensorflow": "2.21.0"})
    result = matrix_run.Runner(tmp_path / "out", 60, own_tests=False).run_cell(cell)
    return result, tool.calls


def test_a_release_cell_applies_its_sets_and_records_them(tmp_path, monkeypatch):
    result, calls = run_standin(tmp_path, monkeypatch, "keras-3.15.1", "3.15.1")
    assert result["outcome"] == "run-verified", result.get("failure")
    assert [argv[0] for argv in calls] == ["status", "apply", "check", "revert"]
    apply = calls[1]
    assert apply[apply.index("--layers") + 1] == "convlstm,lstm,gru" and apply[apply.index("--only") + 1] == "keras"
    assert "--layers" not in calls[3]  # revert: every set patched
    assert result["layer_sets"] == result["verified_sets"] == list(RNN) == result["supported_sets"]
    assert result["record_identical"] is True and result["check"]["status"] == "ok"
    assert result["tool"] == {"version": "0.1.0", "commit": "0123456789"}
    saved = json.loads((tmp_path / "out" / "matrix.json").read_text())["cells"][0]
    assert saved["verified_sets"] == list(RNN)
    row = next(
        line for line in matrix_report.markdown(tmp_path / "out").splitlines() if line.startswith("| keras 3.15.1")
    )
    assert "| convlstm, lstm, gru |" in row and "TensorFlow: 11/11 passed" in row
    assert ", 0.1.0 @ 0123456789 |" in row


@pytest.mark.parametrize(
    "answers, failure",
    [
        pytest.param({"checks": CONVLSTM_CHECKS + RNN_CHECKS[:3]}, "verified no gru checks", id="a-set-unverified"),
        pytest.param(
            {"failed": ("lstm fused",), "apply_exit": 9}, "apply exited 9: verification failed", id="rolled-back"
        ),
        pytest.param(
            {"supported": ("convlstm",)},
            "supports convlstm; the cell runs convlstm, lstm, gru (its lock)",
            id="status-disagrees-with-lock",
        ),
        pytest.param({"check_exit": 10}, "check exited 10", id="no-lock-for-a-release"),
    ],
)
def test_a_release_cell_fails(tmp_path, monkeypatch, answers, failure):
    result, calls = run_standin(tmp_path, monkeypatch, "keras-3.15.1", "3.15.1", **answers)
    assert result["outcome"] == "failed" and failure in result["failure"], result.get("failure")
    if "apply" in [argv[0] for argv in calls]:  # once apply ran, revert and the RECORD comparison follow
        assert calls[-1][0] == "revert" and result["record_identical"] is True
    if answers.get("apply_exit"):
        assert result["verification"][0]["failed"] == ["lstm fused"]


def test_the_canary_records_the_version_pip_installed_and_accepts_no_lock(tmp_path, monkeypatch):
    result, calls = run_standin(tmp_path, monkeypatch, "keras-nightly", "3.16.0.dev2026102704", check_exit=10)
    assert result["outcome"] == "run-verified", result.get("failure")
    assert result["version"] == "3.16.0.dev2026102704" and result["canary"] is True
    assert result["check"] == {"exit": 10, "status": "no-lock", "problems": ["no hash pins for it"]}
    assert result["verified_sets"] == list(RNN)
    assert calls[1][calls[1].index("--only") + 1] == "keras"
    # A drift still fails it.
    result, _ = run_standin(tmp_path / "drift", monkeypatch, "keras-nightly", "3.16.0.dev2026102704", check_exit=1)
    assert result["outcome"] == "failed" and "check exited 1" in result["failure"]


def test_markdown_says_per_generation_whether_lstm_and_gru_ran(tmp_path):
    def result(cell_id, distribution, version, generation, checks, verified=None):
        report = kept_report({name: CHECK_SETS[name] for name in checks})
        return {
            "id": cell_id,
            "distribution": distribution,
            "version": version,
            "backend": "tensorflow",
            "generation": generation,
            "kind": "run",
            "outcome": "run-verified",
            "seconds": 1.0,
            "date": "2026-11-24 10:00 UTC",
            "verification": [report],
            **({"verified_sets": verified} if verified else {}),
        }

    rnn = CONVLSTM_CHECKS + RNN_CHECKS
    results = {
        "keras-3.0.5": result("keras-3.0.5", "keras", "3.0.5", "Keras 3", rnn, list(RNN)),
        # an older result: run before the matrix recorded its sets, ConvLSTM alone
        "keras-3.1.1": result("keras-3.1.1", "keras", "3.1.1", "Keras 3", CONVLSTM_CHECKS),
        "tf_keras-2.21.0": result("tf_keras-2.21.0", "tf_keras", "2.21.0", "tf_keras", rnn, list(RNN)),
        "keras-2.2.4": result("keras-2.2.4", "keras", "2.2.4", "keras 2.0-2.3 (multi-backend)", CONVLSTM_CHECKS),
    }
    matrix_results.write_json(tmp_path, results)
    rows = {
        line.split(" | ")[0]: line
        for line in matrix_report.markdown(tmp_path).split("## By generation")[1].splitlines()
    }
    assert "run-verified in 1 of 2 cells (keras-3.0.5)" in rows["| Keras 3"]
    assert "ConvLSTM only, run before LSTM/GRU joined the matrix: keras-3.1.1" in rows["| Keras 3"]
    assert "**run-verified** in all 1 cells" in rows["| tf_keras"]
    assert "not supported: ConvLSTM only" in rows["| keras 2.0-2.3 (multi-backend)"]
    row = next(line for line in matrix_report.markdown(tmp_path).splitlines() if line.startswith("| keras 3.1.1"))
    assert "| convlstm |" in row and "tool commit not recorded" in row


def test_tool_revision_names_the_checkout_commit():
    repo = Path(matrix_cells.__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=False)
    if head.returncode != 0:
        pytest.fail(f"the matrix runs from a git checkout; git says: {head.stderr.strip()}")
    revision = matrix_run.tool_revision()
    assert head.stdout.startswith(revision["commit"].removesuffix("-dirty")) and len(revision["commit"]) >= 10
    assert revision["version"] == __import__("patcher").__version__
