"""A real podman for tests/test_docker.py: README's Dockerfile built and run, no imitation.

No image registry is needed: the base image README's Dockerfile names
(``python:3.11-slim``, Debian bookworm's Python 3.11) is made here with
debootstrap from the Debian mirror apt uses, kept as a tarball in
``$CONVLSTM_PATCH_IMAGE_CACHE`` (``~/.cache/convlstm-patch/images``) and
imported under that name into a store of podman's own for the test run, so
``FROM`` resolves locally (``--pull=never``). The store is thrown away after
the run; the machine's own podman images are never touched.

Builds reach the package index as pip outside does: the machine's pip
configuration (``pip config list``: files and ``PIP_*`` variables) goes into
the build as ``/etc/pip.conf``, with the files it names (CA bundle,
constraints, local mirrors) mounted read-only at the same paths, and the
build shares the host's network. None of this is in README's recipe.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from helpers import ROOT

REQUIRE = "CONVLSTM_PATCH_REQUIRE_PODMAN"  # set by CI: podman missing is a failure, not a skip
SETUP = ROOT / "scripts" / "podman_setup.sh"
TOOLS = ("podman", "runc", "debootstrap")
IMAGE_CACHE = Path(os.environ.get("CONVLSTM_PATCH_IMAGE_CACHE", Path.home() / ".cache" / "convlstm-patch" / "images"))

# What README's FROM may name: the base made here is Debian bookworm's Python
# 3.11, as the official python:3.11-slim image (which is also bookworm).
BASE = "python:3.11-slim"
BASE_TAG = "docker.io/library/python:3.11-slim"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# Bump when the steps that shape the base change: the cached tarball's key.
BASE_RECIPE = 1
BASE_CONFIG = (
    "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV=LANG=C.UTF-8",
    'CMD=["python3"]',
)

# crun refuses to start containers under hybrid cgroups (v1 with a v2 mount);
# runc does. No systemd or journald in a CI container: cgroupfs, file events.
CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{tmp}"
"""

# pip options that say where packages come from and what pip may take from
# there; the rest (cache, progress bar, ...) stays the image's own.
INDEX_OPTIONS = (
    "index-url", "extra-index-url", "find-links", "no-index", "trusted-host", "cert", "client-cert",
    "proxy", "timeout", "default-timeout", "retries", "constraint",
)  # fmt: skip
PATH_OPTIONS = ("find-links", "cert", "client-cert", "constraint", "index-url", "extra-index-url")


def podman_or_skip() -> None:
    """Skip (fail under CI) unless podman, runc and debootstrap are here and we are root.

    Under CI (``CONVLSTM_PATCH_REQUIRE_PODMAN=1``), scripts/podman_setup.sh
    installs them first; elsewhere the test does not install system packages.
    """
    required = bool(os.environ.get(REQUIRE))
    if required:
        completed = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=1800)
        if completed.returncode != 0:
            pytest.fail(f"{SETUP.name} could not install {', '.join(TOOLS)}: {completed.stderr[-1500:]}")
    missing = [tool for tool in TOOLS if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (rootful podman, debootstrap)"
    elif missing:
        reason = (
            f"{', '.join(missing)} not installed: scripts/podman_setup.sh installs {', '.join(TOOLS)} (as root, Debian)"
        )
    if reason and required:
        pytest.fail(f"{REQUIRE} is set but the Docker test cannot run: {reason}")
    if reason:
        pytest.skip(reason)


@dataclass
class Podman:
    """podman with a store, run folder and containers.conf of its own, under ``folder``."""

    folder: Path
    env: dict[str, str] = field(init=False)
    runroot: Path = field(init=False)

    def __post_init__(self) -> None:
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        # podman refuses a run root longer than 50 characters (pytest-xdist's tmp paths are longer)
        self.runroot = Path(tempfile.mkdtemp(prefix="podman-run-", dir="/tmp"))
        conf = self.folder / "containers.conf"
        conf.write_text(CONTAINERS_CONF.format(tmp=self.folder / "tmp"))
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.env["PATH"] = self.env.get("PATH", "") + ":/usr/sbin:/sbin"  # runc lives in /usr/sbin

    def command(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.folder / "store"), "--runroot", str(self.runroot), *args]

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        command = self.command(*args)
        return subprocess.run(command, capture_output=True, text=True, env=self.env, cwd=cwd, timeout=timeout)

    def remove(self) -> None:
        """Delete the store and everything in it (about 2.5 GB after a build).

        With no container left nothing is mounted and the folder can simply be
        deleted; should something still be mounted, podman unmounts it first.
        """
        self.run("rm", "--all", "--force")
        try:
            shutil.rmtree(self.folder)
        except OSError:  # something still mounted: let podman unmount it
            self.run("rmi", "--all", "--force")
            shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


# -- the base image ------------------------------------------------------------


def debian_mirror(suite: str = SUITE) -> str:
    """The URI apt uses for ``suite`` (one-line and deb822 sources), else deb.debian.org."""
    sources = Path("/etc/apt")
    for path in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields = dict(
                    line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
                )
                fields = {key.strip(): value.split() for key, value in fields.items()}
                if "deb" in fields.get("Types", []) and suite in fields.get("Suites", []) and fields.get("URIs"):
                    return fields["URIs"][0]
        else:
            for line in text.splitlines():
                words = [word for word in line.split("#", 1)[0].split() if not word.startswith("[") and "=" not in word]
                if words[:1] == ["deb"] and len(words) >= 3 and words[2] == suite:
                    return words[1]
    return "http://deb.debian.org/debian"


def base_tarball() -> Path:
    """The base image's root file system as a tarball: made once with debootstrap, then cached.

    The key names everything that shapes it (suite, packages, mirror, the
    steps below); delete the file to get a fresh Debian.
    """
    mirror = debian_mirror()
    key_source = json.dumps([SUITE, PACKAGES, mirror, BASE_RECIPE, BASE_CONFIG])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:12]
    tarball = IMAGE_CACHE / f"debian-{SUITE}-python3-{key}.tar"
    if tarball.exists():
        return tarball
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="base-", dir=IMAGE_CACHE))
    try:
        rootfs = work / "rootfs"
        include = ",".join(PACKAGES)
        debootstrap = ["debootstrap", "--variant=minbase", f"--include={include}", SUITE, str(rootfs), mirror]
        completed = subprocess.run(debootstrap, capture_output=True, text=True, timeout=1800)
        if completed.returncode != 0:
            pytest.fail(f"debootstrap failed: {(completed.stdout + completed.stderr)[-2000:]}")
        # As the official python images: pip installs as root without a
        # venv (no PEP 668 marker), `python` runs Python, no apt lists.
        (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink()
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        for folder in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for entry in (rootfs / folder).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = work / "base.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True)
        os.replace(partial, tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def import_base(podman: Podman) -> None:
    """Import the cached base under README's FROM name into ``podman``'s store."""
    changes = [argument for change in BASE_CONFIG for argument in ("--change", change)]
    completed = podman.run("import", *changes, str(base_tarball()), BASE_TAG)
    assert completed.returncode == 0, completed.stderr[-2000:]


# -- pip's configuration, passed into the build -------------------------------


def machine_pip_config() -> dict[str, str]:
    """The index options pip outside uses: ``pip config list``, ``:env:`` over ``install`` over ``global``."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    sections: dict[str, dict[str, str]] = {}
    for line in listing.splitlines():
        name, _, value = line.partition("=")
        section, _, option = name.rpartition(".")
        sections.setdefault(section, {})[option] = ast.literal_eval(value)
    merged: dict[str, str] = {}
    for section in ("global", "install", ":env:"):
        merged.update(sections.get(section, {}))
    return {option: value for option, value in merged.items() if option in INDEX_OPTIONS}


def build_options(folder: Path) -> list[str]:
    """``podman build`` options: host network, the merged pip.conf and every local path it names, read-only."""
    options = machine_pip_config()
    mounts: set[Path] = set()
    for option in PATH_OPTIONS:
        for word in options.get(option, "").split():
            url = urlparse(word)
            if url.scheme == "file":
                # A file index's pages link to its files beside simple/ (../../files/x.whl).
                mounts.add(Path(unquote(url.path)).parent)
            elif not url.scheme and word.startswith("/") and Path(word).exists():
                mounts.add(Path(word))
    arguments = ["--network", "host"]
    if options:
        config = configparser.ConfigParser(interpolation=None)
        config["global"] = {option: value.replace("\n", " ") for option, value in options.items()}
        with open(folder / "pip.conf", "w") as file:
            config.write(file)
        arguments += ["--volume", f"{folder / 'pip.conf'}:/etc/pip.conf:ro"]
    for path in sorted(mounts):
        arguments += ["--volume", f"{path}:{path}:ro"]
    return arguments
