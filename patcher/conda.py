"""conda environments: the conda package that installed a Keras, and the hashes conda recorded.

conda, not pip, puts a conda package's files back (`conda install --force-reinstall`), so every
remedy names conda there; conda-meta's sha256 serve where RECORD has none. docs/conda.md says
which conda source each detail comes from.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from patcher import fsops


@dataclass(frozen=True)
class CondaPackage:
    """The conda package a flavour was installed from: conda, not pip, puts its files back."""

    name: str  # conda's name for it (keras, tf-keras), from its record
    version: str
    build: str
    prefix: Path | None  # the environment: the folder holding conda-meta/
    record: Path | None  # conda-meta/<name>-<version>-<build>.json; None: INSTALLER says conda, no record lists it

    @property
    def reinstall_command(self) -> str:
        # -p: the environment this flavour is in, which need not be the active one (--python).
        where = f" -p {quoted(self.prefix)}" if self.prefix is not None else ""
        return f"conda install --force-reinstall{where} {self.name}={self.version}"


def quoted(path: Path) -> str:
    """A path as a shell word (POSIX quoting; Windows paths with spaces get double quotes)."""
    text = str(path)
    if os.name == "nt":
        return f'"{text}"' if " " in text else text
    return shlex.quote(text)


# -- conda ---------------------------------------------------------------------
#
# conda records every package it links in <prefix>/conda-meta/<name>-<version>-<build>.json:
# `files` (prefix-relative paths) and `paths_data.paths[]` with each file's sha256 (and, in
# current conda, `sha256_in_prefix`: the hash after prefix replacement, which is what is on
# disk). docs/conda.md says which conda source each detail comes from.

CONDA_META = "conda-meta"
# How far above site-packages the prefix can be: <prefix>/lib/pythonX.Y/site-packages
# (POSIX), <prefix>/Lib/site-packages (Windows).
_PREFIX_DEPTH = 3


def conda_package(dist: metadata.Distribution, info: str, site: Path) -> tuple[CondaPackage | None, dict[str, str]]:
    """The conda package that installed ``dist`` and the sha256 its record gives each file
    (site-relative paths); (None, {}) for a distribution conda did not install.

    A record owns the distribution when its `files` list the distribution's metadata folder:
    a pip-installed keras in a conda environment (`pip install keras` there) is pip's. The
    records named like the distribution are read first; all of them only when INSTALLER says
    conda and none of those matched (`status` stays instant).
    """
    installer = (_read_text(dist, "INSTALLER") or "").strip()
    prefix = next((folder for folder in list(site.parents)[:_PREFIX_DEPTH] if (folder / CONDA_META).is_dir()), None)
    if prefix is not None:
        site_prefix = site.relative_to(prefix).as_posix()
        owned = f'"{site_prefix}/{info}/'
        records = sorted((prefix / CONDA_META).glob("*.json"))
        names = _conda_names(dist.metadata["Name"])
        likely = [path for path in records if path.name.startswith(tuple(f"{name}-" for name in names))]
        rest = [path for path in records if path not in likely] if installer == "conda" else []
        for path in likely + rest:
            data_bytes = _read_quietly(path)
            text = data_bytes.decode("utf-8", "replace") if data_bytes else ""
            if owned not in text:
                continue
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            package = CondaPackage(
                str(data.get("name", names[0])), str(data.get("version", dist.version)), str(data.get("build", "")),
                prefix, path,
            )  # fmt: skip
            return package, _conda_hashes(data, site_prefix)
    if installer == "conda":  # a conda-packed or copied environment: no record, still conda's files
        return CondaPackage(_conda_names(dist.metadata["Name"])[-1], dist.version, "", prefix, None), {}
    return None, {}


def _conda_names(project: str) -> tuple[str, ...]:
    """The names conda packages of a PyPI project go by: the PyPI name lower-cased, with `_` or `-`."""
    lower = project.lower()
    return tuple(dict.fromkeys((lower, lower.replace("-", "_"), lower.replace("_", "-"))))


def _conda_hashes(data: dict, site_prefix: str) -> dict[str, str]:
    """site-relative path -> the sha256 conda recorded for it: the one in the prefix when it has one."""
    paths = data.get("paths_data", {}).get("paths", []) if isinstance(data.get("paths_data"), dict) else []
    hashes = {}
    start = f"{site_prefix}/"
    for entry in paths if isinstance(paths, list) else []:
        if not isinstance(entry, dict) or not str(entry.get("_path", "")).startswith(start):
            continue
        sha256 = entry.get("sha256_in_prefix") or entry.get("sha256")
        if isinstance(sha256, str):
            hashes[entry["_path"][len(start) :]] = sha256
    return hashes


def _read_text(dist: metadata.Distribution, name: str) -> str | None:
    try:
        return dist.read_text(name)
    except (OSError, UnicodeDecodeError):
        return None


def _read_quietly(path: Path) -> bytes | None:
    """A record's bytes; None when it is missing, not a regular file or unreadable."""
    try:
        return fsops.read_file(path)
    except fsops.Unreadable:
        return None
