"""A conda environment holding keras, made the way conda makes one, without conda's servers.

Used by tests/keras/test_conda.py (``slow``); run by hand to look at one:
``python scripts/conda_env.py FOLDER [KERAS_VERSION]``.

No conda channel is reachable here (only PyPI), so the package is built from
PyPI's sdist the way conda-forge's keras recipe builds it, and installed by
rattler, the conda installer written in Rust (the one pixi and mamba 2 use),
from a local channel into a prefix that has a package cache beside it:

    FOLDER/channel/                        a local channel, indexed by rattler
    FOLDER/pkgs/                           the package cache (conda's pkgs/)
    FOLDER/envs/keras/                     the environment (conda's envs/NAME)
        conda-meta/keras-V-B.json          what was installed, file by file
        lib/pythonX.Y/site-packages/keras  hard links into pkgs/

What each step copies, and from where, is in docs/conda.md. Two stand-ins,
because their conda packages cannot be downloaded here: the interpreter is a
venv made at the prefix (its ``bin/python``), recorded by a ``python``
package with no files so that the installer knows where a noarch package's
``site-packages/`` goes, as the real one tells it; and keras's dependencies,
TensorFlow included, come from the running interpreter's site-packages
through a ``.pth`` file (scripts/venvs.py), after the prefix's own.
"""

from __future__ import annotations

import asyncio
import bz2
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import venvs
import wheels

BUILD = "pyh0_0"  # a noarch python build string has this shape (conda-forge's: pyhd8ed1ab_0)
PYTHON_BUILD = "stub_0"


class CondaEnvError(RuntimeError):
    """The environment could not be built."""


@dataclass(frozen=True)
class CondaEnv:
    root: Path  # holds channel/, pkgs/, envs/
    prefix: Path  # the environment
    python: Path  # its interpreter
    site: Path  # its site-packages
    record: Path  # conda-meta/keras-V-B.json
    package: str  # the conda package's name
    version: str

    @property
    def cache(self) -> Path:
        return self.root / "pkgs"


def build(root: Path, version: str, shared: list[str] | None = None) -> CondaEnv:
    """Build the channel, then install keras ``version`` into ``root/envs/keras`` with rattler."""
    import rattler

    root = root.resolve()
    channel = root / "channel"
    prefix = root / "envs" / "keras"
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    shared = venvs.running_site_packages() if shared is None else shared
    venvs.create(prefix, shared)  # bin/python, lib/pythonX.Y/site-packages, the .pth
    with _build_folder(root) as work:
        keras_files = _keras_files(_sdist(version), work)
    _write_package(channel / "noarch", "keras", version, BUILD, keras_files, noarch=True, depends=["python >=3.9"])
    _write_package(channel / _subdir(), "python", python_version, PYTHON_BUILD, {}, noarch=False, depends=[])
    (channel / "noarch" / "repodata.json").unlink(missing_ok=True)

    asyncio.run(rattler.index.index_fs(channel, write_zst=False, write_shards=False, force=True))
    env = CondaEnv(root, prefix, prefix / "bin" / "python", Path(), Path(), "keras", version)
    _install(env, python_version, reinstall=set())
    site = venvs.purelib(env.python)
    (record,) = (prefix / "conda-meta").glob(f"keras-{version}-{BUILD}.json")
    env = CondaEnv(root, prefix, env.python, site, record, "keras", version)
    _link_as_conda(prefix, record)
    return env


def reinstall(env: CondaEnv) -> None:
    """What `conda install --force-reinstall -p PREFIX keras=VERSION` does: unlink the
    package's files and link them again from the package cache (rattler's reinstall)."""
    (python_record,) = (env.prefix / "conda-meta").glob("python-*.json")
    python_version = json.loads(python_record.read_text())["version"]
    _install(env, python_version, reinstall={env.package})
    _link_as_conda(env.prefix, env.record)


def _install(env: CondaEnv, python_version: str, reinstall: set[str]) -> None:
    import rattler

    async def solve_and_install() -> None:
        records = await rattler.solve(
            sources=[rattler.Channel((env.root / "channel").as_uri())],
            specs=[f"{env.package} =={env.version}", f"python =={python_version}"],
            platforms=[_subdir(), "noarch"],
            virtual_packages=[],
        )
        await rattler.install(
            records, target_prefix=env.prefix, cache_dir=env.cache, reinstall_packages=reinstall, show_progress=False
        )

    asyncio.run(solve_and_install())


def _link_as_conda(prefix: Path, record: Path) -> None:
    """The two things conda does when it links a noarch python package that rattler does not.

    - Bytecode: conda compiles the package's .py files in the prefix
      (CompileMultiPycAction: ``python -Wi -m compileall -q -l -i LIST -j 0``) and
      records each .pyc as ``{"_path": ..., "path_type": "pyc_file"}``.
    - ``sha256_in_prefix``: conda records it for every file it links, equal to
      ``sha256`` for a file without a prefix placeholder (LinkPathAction.verify);
      `conda doctor` compares the files with it (rattler writes it only for files
      it rewrote).
    """
    data = json.loads(record.read_text())
    python = prefix / "bin" / "python"
    tag = subprocess.run(
        [str(python), "-c", "import sys; print(sys.implementation.cache_tag)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    sources = [entry["_path"] for entry in data["paths_data"]["paths"] if entry["_path"].endswith(".py")]
    listing = record.with_suffix(".compile")
    listing.write_text("".join(f"{prefix / source}\n" for source in sources))
    try:
        command = [str(python), "-Wi", "-m", "compileall", "-q", "-l", "-i", str(listing), "-j", "0"]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    finally:
        listing.unlink()
    if completed.returncode != 0:
        raise CondaEnvError(f"compileall in {prefix} failed: {(completed.stderr or completed.stdout)[-500:]}")
    for entry in data["paths_data"]["paths"]:
        if entry.get("path_type") == "hardlink" and "sha256_in_prefix" not in entry:
            entry["sha256_in_prefix"] = entry["sha256"]
    compiled = []
    for source in sources:
        folder, name = source.rsplit("/", 1)
        compiled.append(f"{folder}/__pycache__/{name[: -len('.py')]}.{tag}.pyc")
    data["files"] = data["files"] + compiled
    data["paths_data"]["paths"] += [{"_path": path, "path_type": "pyc_file"} for path in compiled]
    record.write_text(json.dumps(data, indent=2, sort_keys=True))


def _subdir() -> str:
    import rattler

    return str(rattler.Subdir.current())


class _build_folder:
    """conda-build's work folder: made fresh, removed afterwards."""

    def __init__(self, root: Path) -> None:
        self.path = root / "build"

    def __enter__(self) -> Path:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _sdist(version: str) -> Path:
    """keras's sdist from PyPI, the source conda-forge's recipe builds (cached with the wheels)."""
    cache = wheels.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"keras-{version}.tar.gz"
    if not archive.exists():
        command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "--no-deps",
                   "--no-binary", ":all:", "-d", str(cache), f"keras=={version}"]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if completed.returncode != 0 or not archive.exists():
            raise CondaEnvError(
                f"pip download keras=={version} (sdist): {(completed.stderr or completed.stdout)[-500:]}"
            )
    return archive


def _keras_files(sdist: Path, work: Path) -> dict[str, bytes]:
    """The package's files, as conda-forge's recipe makes them.

    Its build script is ``$PYTHON -m pip install . -vv --no-deps --no-build-isolation``
    in the unpacked sdist; conda-build then rewrites every ``*.dist-info/INSTALLER``
    to ``conda`` (conda_build/post.py) and, for ``noarch: python``, keeps no bytecode
    and moves ``lib/pythonX.Y/site-packages/`` to ``site-packages/``.
    """
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    (source,) = [path for path in work.iterdir() if path.is_dir()]
    target = work / "site-packages"
    # With build isolation, unlike the recipe: its host environment has a current
    # setuptools, which keras's pyproject.toml needs (older ones cannot read its
    # version through the remapped package folders); pip brings one the same way.
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", ".", "--no-deps",
               "--no-compile", "--target", str(target)]  # fmt: skip
    completed = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=900, check=False)
    if completed.returncode != 0:
        raise CondaEnvError(f"pip install . (keras sdist) failed: {(completed.stderr or completed.stdout)[-500:]}")
    files = {}
    for path in sorted(target.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            relative = path.relative_to(target).as_posix()
            files[f"site-packages/{relative}"] = path.read_bytes()
    for relative in files:
        if relative.endswith(".dist-info/INSTALLER"):
            files[relative] = b"conda"
    return files


def _write_package(subdir: Path, name: str, version: str, build: str, files: dict[str, bytes], noarch: bool,
                   depends: list[str]) -> Path:  # fmt: skip
    """A .tar.bz2 conda package: the files and info/ (index.json, paths.json, files, link.json)."""
    subdir.mkdir(parents=True, exist_ok=True)
    index = {
        "name": name, "version": version, "build": build, "build_number": 0, "depends": depends,
        "license": "Apache-2.0" if name == "keras" else "PSF-2.0", "subdir": subdir.name,
        "timestamp": int(time.time() * 1000),
    }  # fmt: skip
    if noarch:
        index.update(noarch="python", arch=None, platform=None)
    paths = {
        "paths": [
            {
                "_path": relative,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_in_bytes": len(data),
            }
            for relative, data in files.items()
        ],
        "paths_version": 1,
    }
    info = {
        "info/index.json": json.dumps(index, indent=2, sort_keys=True).encode(),
        "info/paths.json": json.dumps(paths, indent=2, sort_keys=True).encode(),
        "info/files": "".join(f"{relative}\n" for relative in files).encode(),
    }
    if noarch:
        info["info/link.json"] = json.dumps({"noarch": {"type": "python"}, "package_metadata_version": 1}).encode()
    archive = subdir / f"{name}-{version}-{build}.tar.bz2"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative, data in {**info, **files}.items():
            member = tarfile.TarInfo(relative)
            member.size, member.mode, member.mtime = len(data), 0o644, 0
            tar.addfile(member, io.BytesIO(data))
    archive.write_bytes(bz2.compress(buffer.getvalue()))
    return archive


def source_tree_build(version: str, site: Path) -> Path:
    """keras 3.0.x as Anaconda's `defaults` channel builds it, installed into ``site``.

    Its recipe runs ``pip install . --no-deps`` in the GitHub source tag, whose setup.py
    installs the source tree as it is: ``keras/layers/rnn/conv_lstm.py`` importing
    ``from keras import ...``, no ``keras/src/`` and no generated API. The tag cannot be
    downloaded here; PyPI's wheel holds the same modules under ``keras/src/`` with
    ``keras.src`` in their imports (compared for 3.0.0 and 3.0.5: docs/conda.md), so the
    tree is made from the wheel by moving them up and renaming the imports back, and
    given the dist-info pip writes (RECORD with every file's sha256).
    """
    import re
    import zipfile

    failure = wheels.download([("keras", version)], wheels.cache_dir()).get(("keras", version))
    if failure:
        raise CondaEnvError(failure)
    archive = wheels.cached(wheels.cache_dir())[("keras", version)]
    rows = []
    with zipfile.ZipFile(archive) as wheel:
        for name in wheel.namelist():
            if not name.startswith("keras/src/") or name.endswith("/"):
                continue
            relative = "keras/" + name[len("keras/src/") :]
            data = wheel.read(name)
            if relative.endswith(".py"):
                text = re.sub(r"\bkeras\.src\b", "keras", data.decode("utf-8"))
                # The wheel's build adds a blank line at the end of every module (an empty one gets "\n").
                data = (text.rstrip("\n") + "\n" if text.strip() else "").encode("utf-8")
            path = site / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            rows.append(f"{relative},sha256={wheels.record_digest(data)},{len(data)}")
    info = site / f"keras-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: keras\nVersion: {version}\n")
    (info / "INSTALLER").write_text("conda")
    rows += [f"{info.name}/METADATA,,", f"{info.name}/INSTALLER,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    return site


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python scripts/conda_env.py FOLDER [KERAS_VERSION]", file=sys.stderr)
        return 2
    env = build(Path(argv[0]), argv[1] if len(argv) > 1 else "3.15.0")
    print(f"{env.prefix}: python {env.python}, record {env.record}, cache {env.cache}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main(sys.argv[1:]))
