"""Pristine copies of the running environment's Keras, whatever state it is in.

Tests and benchmarks never touch the environment they run in, and they need
Keras's stock ConvLSTM (and LSTM/GRU) sources even when that environment is patched:
README's first command patches it. Each target file's bytes come from what
the project itself knows to be pristine, checked against the sha256 that pip
wrote in RECORD:

1. the live file, when it matches RECORD;
2. else the environment's backup (``.convlstm-patch/backups``), read as
   ``revert`` reads it (the manifest must be valid) and matching RECORD;
3. else the released wheel of the same version, from the download cache
   (``scripts/wheels.py``), matching RECORD.

A distribution that is not installed (e.g. no tf_keras) is unpacked whole from
its wheel: tf_keras in the release line of the installed TensorFlow.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wheels

from patcher import bytecode
from patcher.environment import Flavour, find_flavours
from patcher.hashing import sha256_hex
from patcher.store import backup_copy, read_manifest


class NoPristineSource(RuntimeError):
    """No source of the stock bytes could be found or checked."""


@dataclass(frozen=True)
class PristineCopy:
    distribution: str
    version: str
    # where the target files' bytes came from: "installed", "backup", "wheel"
    # (per file when they differ), or "wheel" for an uninstalled distribution
    sources: dict[str, str]


def copy_pristine(distribution: str, dest: Path, path: list[str] | None = None) -> PristineCopy:
    """Copy ``distribution`` (package and dist-info) from ``path`` (default sys.path) into ``dest``, pristine."""
    # Every layer set's files (ConvLSTM, LSTM, GRU): any of them may be patched.
    found = find_flavours(list(sys.path if path is None else path), only=distribution)
    if not found:
        return _unpack_uninstalled(distribution, dest)
    (flavour,) = found
    _copy_tree(flavour, dest)
    sources = {}
    for target in flavour.files:
        copy = dest / target.relative
        if target.record_sha256 is None:
            raise NoPristineSource(
                f"{flavour.key} has no RECORD hash for {target.relative}: cannot tell pristine bytes"
            )
        if sha256_hex(copy.read_bytes()) == target.record_sha256:
            sources[target.relative] = "installed"
            continue
        data, source = _from_backup(flavour, target.relative, target.record_sha256)
        if data is None:
            data, source = (
                _from_wheel(flavour.distribution, flavour.version, target.relative, target.record_sha256),
                "wheel",
            )
        copy.write_bytes(data)
        bytecode.remove(copy)
        sources[target.relative] = source
    return PristineCopy(flavour.distribution, flavour.version, sources)


def _copy_tree(flavour: Flavour, dest: Path) -> None:
    dist = next(metadata.distributions(name=flavour.project, path=[str(flavour.site)]))
    info = Path(str(dist._path))  # the dist-info folder
    shutil.copytree(flavour.site / flavour.package, dest / flavour.package, symlinks=False)
    shutil.copytree(info, dest / info.name, symlinks=False)


def _from_backup(flavour: Flavour, relative: str, expected: str) -> tuple[bytes | None, str]:
    try:
        manifest = read_manifest(flavour)
    except Exception:  # noqa: BLE001 - an invalid manifest is simply not a source (the wheel is)
        return None, ""
    if manifest is None or manifest.file(relative) is None:
        return None, ""
    try:
        data = backup_copy(flavour, relative).read_bytes()
    except OSError:
        return None, ""
    return (data, "backup") if sha256_hex(data) == expected else (None, "")


def _wheel(distribution: str, version: str) -> Path:
    cache = wheels.cache_dir()
    failures = wheels.download([(distribution, version)], cache, jobs=1)
    archive = wheels.cached(cache).get((distribution, version))
    if archive is None or not archive.name.endswith(".whl"):
        reason = failures.get((distribution, version), "no wheel of that release")
        raise NoPristineSource(f"no pristine source for {distribution} {version}: {reason}")
    return archive


def _from_wheel(distribution: str, version: str, relative: str, expected: str) -> bytes:
    with zipfile.ZipFile(_wheel(distribution, version)) as archive:
        data = archive.read(relative)
    if sha256_hex(data) != expected:
        raise NoPristineSource(f"{relative} in the {distribution} {version} wheel does not match RECORD")
    return data


def _unpack_uninstalled(distribution: str, dest: Path) -> PristineCopy:
    if distribution != "tf_keras":
        raise NoPristineSource(f'{distribution} is not installed; install it (`pip install ".[test]"`)')
    try:
        tensorflow = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        try:
            tensorflow = metadata.version("tensorflow-cpu")
        except metadata.PackageNotFoundError:
            raise NoPristineSource("tf_keras is not installed and neither is TensorFlow, which it needs") from None
    line = ".".join(tensorflow.split(".")[:2])
    versions = [v for v in wheels.listed_versions("tf_keras") if v.startswith(line + ".")]
    if not versions:
        raise NoPristineSource(
            f"tf_keras is not installed and PyPI has no tf_keras {line}.x for TensorFlow {tensorflow}"
        )
    version = versions[-1]
    with zipfile.ZipFile(_wheel("tf_keras", version)) as archive:
        for name in archive.namelist():
            if name.startswith(("tf_keras/", f"tf_keras-{version}.dist-info/")):
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    return PristineCopy("tf_keras", version, {"*": "wheel"})
