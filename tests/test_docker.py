"""README's Docker recipe, built for real with podman (marked slow).

The Dockerfile and the commands that build and run it are read from README.md
(the ```dockerfile block and the block after it), so README and this test
cannot drift apart. The build context is what a user has: a folder holding the
Dockerfile and a ``convlstm-patch`` checkout (here the repository's tracked
files, ``git ls-files``). README's ``docker`` becomes podman with what only
this machine needs (a store of the test's own, the base image made locally:
tests/podman_helpers.py; the host's network and pip configuration for the
build; no network for runs). Then, in the image, as its runtime user (uid
1000, who cannot write the environment): README's run command, ``status``,
``check``, ``apply`` (already patched), and a ConvLSTM2D with
``activation_i="relu"`` against the NumPy reference.

Those are marked slow (7 to 9 minutes on a busy 2-core machine: the build takes 3.5,
deleting the 2.5 GB image store 1.5, making the base image another 1.5 to 3 when not cached);
they skip, saying why, without root or podman; under CI
(``CONVLSTM_PATCH_REQUIRE_PODMAN=1``) they install podman first and fail
instead. One fast test reads the recipe alone: everything it pip-installs from
a local path is COPYed in first (the bug README's recipe once had).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT
from podman_helpers import BASE, Podman, build_options, import_base, podman_or_skip

README = ROOT / "README.md"
LAYER_SCRIPT = Path(__file__).parent / "scripts" / "docker_layer.py"
RUNTIME_UID = 1000


@dataclass(frozen=True)
class Recipe:
    """README's Docker recipe: the Dockerfile, then the commands (shlex-split) that build and run it."""

    dockerfile: str
    build: list[str]
    runs: list[list[str]]

    @property
    def image(self) -> str:
        """The name README's build command gives the image (``-t NAME``)."""
        for flag, value in zip(self.build, self.build[1:]):
            if flag in ("-t", "--tag"):
                return value
        raise AssertionError(f"README's build command names no image (-t): {shlex.join(self.build)}")


def readme_recipe() -> Recipe:
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), re.DOTALL | re.MULTILINE)
    kinds = [kind for kind, _ in blocks]
    assert kinds.count("dockerfile") == 1, "README should hold one ```dockerfile block"
    position = kinds.index("dockerfile")
    assert position + 1 < len(blocks), "README's Dockerfile should be followed by a block of docker commands"
    commands = [shlex.split(line, comments=True) for line in blocks[position + 1][1].splitlines()]
    build, *runs = [command for command in commands if command]
    assert build[:2] == ["docker", "build"], f"the block after the Dockerfile should start with docker build: {build}"
    assert runs and all(run[:2] == ["docker", "run"] for run in runs), f"then docker run: {runs}"
    return Recipe(blocks[position][1], build, runs)


def as_podman(command: list[str], *options: str) -> list[str]:
    """README's ``docker SUBCOMMAND ARGS`` as podman's ``SUBCOMMAND OPTIONS ARGS``."""
    _docker, subcommand, *arguments = command
    return [subcommand, *options, *arguments]


def build_context(folder: Path, dockerfile: str) -> Path:
    """What a user has: the Dockerfile beside a ``convlstm-patch`` checkout (tracked files only)."""
    listing = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True)
    if listing.returncode != 0:
        pytest.fail(f"the Docker test copies the checkout's tracked files: git ls-files failed: {listing.stderr}")
    checkout = folder / "convlstm-patch"
    for name in filter(None, listing.stdout.split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not copied
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


@dataclass(frozen=True)
class Image:
    podman: Podman
    recipe: Recipe
    build_output: str

    def run(self, *command: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """``docker run --rm IMAGE COMMAND``, as the image's user, without network."""
        return self.podman.run("run", "--rm", "--network", "none", *options, self.recipe.image, *command)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Image:
    podman_or_skip()
    recipe = readme_recipe()
    bases = [line.split()[1] for line in recipe.dockerfile.splitlines() if line.startswith("FROM ")]
    assert bases[:1] == [BASE], f"the test can make only {BASE} locally; README's Dockerfile starts from {bases}"
    folder = tmp_path_factory.mktemp("docker")
    podman = Podman(folder / "podman")
    try:
        import_base(podman)
        context = build_context(folder / "project", recipe.dockerfile)
        build = as_podman(recipe.build, "--pull=never", *build_options(folder))
        completed = podman.run(*build, cwd=context, timeout=3600)
        output = completed.stdout + completed.stderr
        if completed.returncode != 0:
            pytest.fail(f"README's Dockerfile did not build (exit {completed.returncode}):\n{output[-3000:]}")
        yield Image(podman, recipe, output)
    finally:
        podman.remove()


def test_readme_recipe_copies_what_it_installs():
    """Fast, without podman: every local path README's Dockerfile pip-installs was COPYed in before."""
    recipe = readme_recipe()
    assert recipe.image and recipe.build[-1] == ".", recipe.build  # built from the folder holding the checkout
    copied: list[str] = []
    for line in recipe.dockerfile.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["COPY"]:
            copied.append(words[-1].rstrip("/"))
        if words[:3] == ["RUN", "pip", "install"]:
            arguments = words[3 : (words + ["&&"]).index("&&")]
            local = [word for word in arguments if word.startswith((".", "/"))]
            assert local, f"README's Dockerfile installs no local checkout: {line}"
            for path in local:
                assert path.rstrip("/") in copied, f"README's Dockerfile installs {path} before copying it in: {line}"


@pytest.mark.slow
def test_apply_verified_as_root_at_build_time(image):
    verified = re.search(r"keras-\S+ \[tensorflow\]: verified \(\d+ checks passed\)", image.build_output)
    assert verified, image.build_output[-2000:]
    assert re.search(r"keras-\S+: ok \(patched\)", image.build_output)  # the recipe's last RUN, as USER 1000


@pytest.mark.slow
def test_readme_run_commands(image):
    for command in image.recipe.runs:
        completed = image.podman.run(*as_podman(command, "--network", "none"))
        assert completed.returncode == 0, f"{shlex.join(command)}: {completed.stdout}{completed.stderr}"


@pytest.mark.slow
def test_status_as_the_runtime_user(image):
    completed = image.run("convlstm-patch", "status", "--json")
    assert completed.returncode == 0, completed.stderr
    (flavour,) = json.loads(completed.stdout)["flavours"]
    assert flavour["distribution"] == "keras" and flavour["state"] == "patched", flavour


@pytest.mark.slow
def test_check_as_the_runtime_user(image):
    completed = image.run("convlstm-patch", "check")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert re.fullmatch(r"keras-3\.\S+: ok \(patched\)\n", completed.stdout), completed.stdout


@pytest.mark.slow
def test_apply_again_as_the_runtime_user_changes_nothing(image):
    completed = image.run("convlstm-patch", "apply")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "already patched" in completed.stdout


@pytest.mark.slow
def test_patched_layer_computes_as_the_runtime_user(image):
    completed = image.run(
        "python3", "/docker_layer.py",
        options=("--volume", f"{LAYER_SCRIPT}:/docker_layer.py:ro", "--env", "TF_CPP_MIN_LOG_LEVEL=3"),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result["uid"] == RUNTIME_UID and result["can_write_keras"] is False, result
    assert result["activation_i"] == "relu", result
    assert result["error"] < 1e-4, result  # matches the reference with relu for the candidate...
    assert result["relu_vs_tanh"] > 1e-2, result  # ...which differs from stock's tanh there
