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
# Layer sets whose stock layers have fused kernels (patches/fused.toml) that a per-gate layer must avoid.
FUSED_SETS = frozenset({LayerSet.LSTM, LayerSet.GRU})


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


class EntryKind(TextEnum):
    """What a use of a fused-kernel entry point does (patches/fused.toml)."""

    KERNEL = "kernel"  # runs the fused code
    PREDICATE = "predicate"  # only decides whether to
    FLAG = "flag"  # an attribute that remembers the decision


@dataclass(frozen=True)
class EntryPoint:
    name: str
    kind: EntryKind
    through_backend: bool  # reached only through a module named `backend` (Keras 3)
    prefix: bool = False  # every name starting with `name`
    sets: frozenset[LayerSet] = frozenset()  # empty: shared, decided by where it is used

    def matches(self, parts: tuple[str, ...]) -> bool:
        """Does the dotted name ``parts`` (``("keras", "src", "backend", "lstm")``) name this entry point?"""
        last = parts[-1]
        named = last.startswith(self.name) if self.prefix else last == self.name
        return named and (not self.through_backend or "backend" in parts[:-1])


@dataclass(frozen=True)
class Exemption:
    """A class or function whose uses of entry points need no guard, and why."""

    scope: str
    reason: str
    path: str = ""  # the file (a suffix of its path in the package); empty: any file


@dataclass(frozen=True)
class FusedKernels:
    entries: tuple[EntryPoint, ...]
    kernel_definitions: tuple[Exemption, ...]  # code that is part of a kernel
    allowed: tuple[Exemption, ...]  # fused-only layers without activations


@functools.lru_cache(maxsize=None)
def fused_kernels() -> FusedKernels:
    """The fused LSTM/GRU kernels' entry points and the exemptions (patches/fused.toml)."""
    data = _load("fused.toml")
    return FusedKernels(
        entries=tuple(
            EntryPoint(
                name=entry["name"],
                kind=EntryKind(entry["kind"]),
                through_backend=entry["through"] == "backend",
                prefix=entry.get("prefix", False),
                sets=frozenset(LayerSet(name) for name in entry.get("sets", ())),
            )
            for entry in data["entry"]
        ),
        kernel_definitions=tuple(Exemption(**entry) for entry in data["kernel_definition"]),
        allowed=tuple(Exemption(**entry) for entry in data["allowed"]),
    )
