"""The patch as data: the five parameters and the Keras layouts (patches/*.toml).

Installed, the data lives in the package as ``patcher/patches``; in a source
checkout it is the top-level ``patches/`` folder beside ``patcher/``.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

from patcher.enums import TextEnum

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python < 3.11
    import tomli as tomllib


def data_dir() -> Path:
    installed = Path(__file__).with_name("patches")
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "patches"


class LayerSet(TextEnum):
    """The layers a patch covers, chosen with `apply --layers` (default: ConvLSTM only)."""

    CONVLSTM = "convlstm"
    LSTM = "lstm"
    GRU = "gru"


DEFAULT_LAYER_SETS = frozenset({LayerSet.CONVLSTM})


def parse_layer_sets(text: str) -> frozenset[LayerSet]:
    """``"convlstm,lstm"`` -> {CONVLSTM, LSTM}; ValueError names a wrong entry."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("give at least one of " + ", ".join(member.value for member in LayerSet))
    try:
        return frozenset(LayerSet(name) for name in names)
    except ValueError:
        wrong = next(name for name in names if name not in {member.value for member in LayerSet})
        raise ValueError(
            f"unknown layer set {wrong!r}; choose from " + ", ".join(member.value for member in LayerSet)
        ) from None


def ordered(sets) -> list[LayerSet]:
    """Layer sets in their declared order (convlstm, lstm, gru)."""
    chosen = set(sets)
    return [member for member in LayerSet if member in chosen]


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
    # relative path template -> {class name: role} patched in that file (ConvLSTM)
    files: tuple[tuple[str, dict[str, str]], ...]
    # further layer sets this layout can patch: set -> files as above
    layer_sets: tuple[tuple[LayerSet, tuple[tuple[str, dict[str, str]], ...]], ...] = ()

    def paths_for(
        self, package: str, layer_set: LayerSet = LayerSet.CONVLSTM
    ) -> list[tuple[str, dict[str, str]]]:
        files = self.files if layer_set == LayerSet.CONVLSTM else dict(self.layer_sets).get(layer_set, ())
        return [(path.format(package=package), classes) for path, classes in files]

    @property
    def known_sets(self) -> list[LayerSet]:
        return [LayerSet.CONVLSTM, *(layer_set for layer_set, _ in self.layer_sets)]


@functools.lru_cache(maxsize=None)
def parameters(layer_set: LayerSet = LayerSet.CONVLSTM) -> tuple[Parameter, ...]:
    """The parameters a layer set adds, in the order they are appended."""
    data = _load("parameters.toml")
    by_name = {entry["name"]: Parameter(**entry) for entry in data["parameter"]}
    return tuple(by_name[name] for name in data["layer_sets"][str(layer_set)])


@functools.lru_cache(maxsize=None)
def layouts() -> tuple[Layout, ...]:
    return tuple(
        Layout(
            name=entry["name"],
            label=entry["label"],
            distributions=tuple(entry["distributions"]),
            files=tuple((path, dict(classes)) for path, classes in entry["files"].items()),
            layer_sets=tuple(
                (LayerSet(name), tuple((path, dict(classes)) for path, classes in files.items()))
                for name, files in entry.get("layer_sets", {}).items()
            ),
        )
        for entry in _load("layouts.toml")["layout"]
    )
