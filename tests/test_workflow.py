"""scripts/github-actions-check.yml, the example CI workflow README offers, run as GitHub would.

Every `run:` step is executed literally, in order, with bash (`-e -o pipefail`,
GitHub's default shell on Linux), in a project folder whose requirements.txt
names the Keras of the running interpreter on JAX (KERAS_BACKEND=jax, as a
project on JAX sets it; a tenth of TensorFlow's install), in a fresh venv
(setup-python's place on PATH). The one thing a user fills in, where pip gets
convlstm-patch (the job's CONVLSTM_PATCH), points at this checkout; the steps
that `uses:` an action (checkout, setup-python) are GitHub's own and are not run.
"""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import venvs  # scripts/venvs.py
import yaml
from helpers import ROOT
from matrix_cells import BACKEND_PACKAGES  # scripts/matrix_cells.py: the JAX release CI installs (pip has it)

WORKFLOW = ROOT / "scripts" / "github-actions-check.yml"


def workflow_job() -> dict:
    (job,) = yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
    return job


def test_the_install_step_takes_convlstm_patch_from_where_the_job_says():
    job = workflow_job()
    # Not the unpublished name: a placeholder the user fills in, which pip cannot mistake for a package.
    assert job["env"]["CONVLSTM_PATCH"].startswith("convlstm-patch @ git+https://")
    installs = [step["run"] for step in job["steps"] if "install" in step.get("run", "")]
    assert installs == ["pip install -r requirements.txt", 'pip install "$CONVLSTM_PATCH"']
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert (
        runs.index('pip install "$CONVLSTM_PATCH"')
        < runs.index("convlstm-patch check --strict")
        < runs.index("convlstm-patch apply")
    )


@pytest.mark.slow  # a fresh venv with its own Keras and JAX (pip's cache or a download), then apply with verification
def test_every_run_step_passes_against_the_checkout(tmp_path):
    job = workflow_job()
    project = tmp_path / "project"
    project.mkdir()
    # The project's dependencies: the Keras this machine has (so check --strict finds a lock), on JAX.
    (project / "requirements.txt").write_text(
        "\n".join([f"keras=={metadata.version('keras')}", *BACKEND_PACKAGES["jax"]]) + "\n"
    )
    python = venvs.create(tmp_path / "venv")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV", "CONVLSTM_PATCH"))
    }
    env.update(
        {key: str(value) for key, value in job.get("env", {}).items()},
        CONVLSTM_PATCH=str(ROOT),  # the user's pinned URL or wheel; here the checkout
        PATH=f"{python.parent}{os.pathsep}{env['PATH']}",
        VIRTUAL_ENV=str(python.parent.parent),
        KERAS_BACKEND="jax",
    )
    ran = []
    for step in job["steps"]:
        if "run" not in step:
            assert step["uses"].startswith(("actions/checkout@", "actions/setup-python@")), step
            continue
        completed = subprocess.run(
            ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", step["run"]],
            cwd=project,
            env={**env, **{key: str(value) for key, value in step.get("env", {}).items()}},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert completed.returncode == 0, f"{step['run']}: exit {completed.returncode}\n{completed.stderr[-3000:]}"
        ran.append((step["run"], completed))
    assert [command for command, _ in ran][-2:] == ["convlstm-patch check --strict", "convlstm-patch apply"]
    applied = ran[-1][1]
    assert f"keras-{metadata.version('keras')}: patched" in applied.stdout, applied.stdout
    assert "[jax]: verified (5 checks passed)" in applied.stdout + applied.stderr, (applied.stdout, applied.stderr)
    # What the steps installed and patched is the venv's, never the running interpreter's.
    tool = subprocess.run(
        [str(python), "-c", "import patcher, keras; print(patcher.__file__); print(keras.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    ).stdout.split()
    assert all(Path(path).resolve().is_relative_to((tmp_path / "venv").resolve()) for path in tool), tool
