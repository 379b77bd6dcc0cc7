"""The patch as data: the five parameters and the Keras layouts (patches/*.toml).

Installed, the data lives in the package as ``patcher/patches``; in a source
checkout it is the top-level ``patches/`` folder beside ``patcher/``.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python < 3.11
    import tomli as tomllib


def data_dir() -> Path:
    installed = Path(__file__).with_name("patches")
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "patches"


def _load(name: str) -> dict:
    with open(data_dir() / name, "rb") as handle:
        return tomllib.load(handle)


@dataclass(frozen=True)
class Parameter:
    name: str
    inherits: str
    gate: str
    doc: str


@dataclass(frozen=True)
class Layout:
    name: str
    label: str
    distributions: tuple[str, ...]
    # relative path template -> {class name: role} patched in that file
    files: tuple[tuple[str, dict[str, str]], ...]

    def paths_for(self, package: str) -> list[tuple[str, dict[str, str]]]:
        return [(path.format(package=package), classes) for path, classes in self.files]


@functools.lru_cache(maxsize=None)
def parameters() -> tuple[Parameter, ...]:
    return tuple(Parameter(**entry) for entry in _load("parameters.toml")["parameter"])


@functools.lru_cache(maxsize=None)
def layouts() -> tuple[Layout, ...]:
    return tuple(
        Layout(
            name=entry["name"],
            label=entry["label"],
            distributions=tuple(entry["distributions"]),
            files=tuple((path, dict(classes)) for path, classes in entry["files"].items()),
        )
        for entry in _load("layouts.toml")["layout"]
    )
