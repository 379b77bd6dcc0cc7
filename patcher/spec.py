"""The patch as data: the parameters, the Keras layouts and the fused kernels (patches/*.toml).

Installed, the data lives in the package as ``patcher/patches``; in a source
checkout it is the top-level ``patches/`` folder beside ``patcher/``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from patcher.enums import TextEnum
from patcher.layersets import BASE, LayerSet, ordered

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python < 3.11
    import tomli as tomllib  # type: ignore[import-not-found]  # installed only below 3.11


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
class LayoutFile:
    """One file a layout patches, for one package: its classes and the layer sets it belongs to."""

    relative: str  # as in RECORD, e.g. keras/src/layers/rnn/conv_lstm.py
    classes: dict[str, str]  # class name -> role ("cell", "layer" or "wrapper"), over all its sets
    layer_sets: frozenset[LayerSet]


@dataclass(frozen=True)
class Layout:
    name: str
    label: str
    packages: tuple[str, ...]  # the import packages (keras, tf_keras) this layout is for
    # layer set -> ((relative path template, {class name: role}), ...)
    sets: tuple[tuple[LayerSet, tuple[tuple[str, dict[str, str]], ...]], ...]
    multi_backend: bool = False  # Keras 3: KERAS_BACKEND picks the backend (verify --backend)

    @property
    def known_sets(self) -> tuple[LayerSet, ...]:
        return ordered(layer_set for layer_set, _ in self.sets)

    def files(self, package: str, layer_sets: Iterable[LayerSet] | None = None) -> tuple[LayoutFile, ...]:
        """The files of these layer sets (default: all), each once with every set it belongs to."""
        wanted = set(self.known_sets if layer_sets is None else layer_sets)
        merged: dict[str, tuple[dict[str, str], set[LayerSet]]] = {}
        for layer_set, files in self.sets:
            for template, classes in files:
                relative = template.format(package=package)
                entry = merged.setdefault(relative, ({}, set()))
                entry[0].update(classes)
                entry[1].add(layer_set)
        return tuple(
            LayoutFile(relative, classes, frozenset(sets))
            for relative, (classes, sets) in merged.items()
            if sets & wanted
        )

    def base_files(self, package: str) -> tuple[LayoutFile, ...]:
        """The files that tell this layout apart: those of the base set (ConvLSTM)."""
        return self.files(package, (BASE,))


@functools.cache
def parameters(layer_set: LayerSet = LayerSet.CONVLSTM) -> tuple[Parameter, ...]:
    """The parameters a layer set adds, in the order they are appended."""
    data = _load("parameters.toml")
    by_name = {entry["name"]: Parameter(**entry) for entry in data["parameter"]}
    return tuple(by_name[name] for name in data["layer_sets"][str(layer_set)])


@functools.cache
def layouts() -> tuple[Layout, ...]:
    return tuple(
        Layout(
            name=entry["name"],
            label=entry["label"],
            packages=tuple(entry["packages"]),
            multi_backend=entry.get("multi_backend", False),
            sets=tuple(
                (LayerSet(name), tuple((path, dict(classes)) for path, classes in files.items()))
                for name, files in entry["sets"].items()
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
    per_gate_loop: bool = False  # a Keras 3 layer's call of it goes to its per-gate loop when overriding

    def matches(self, parts: tuple[str, ...]) -> bool:
        """Does the dotted name ``parts`` (``("keras", "src", "backend", "lstm")``) name this entry point?"""
        last = parts[-1]
        named = last.startswith(self.name) if self.prefix else last == self.name
        return named and (not self.through_backend or "backend" in parts[:-1])

    def has_per_gate_loop(self, layer_set: LayerSet) -> bool:
        """Does a layer of ``layer_set`` calling this kernel have a per-gate loop to call instead?"""
        return self.kind == EntryKind.KERNEL and self.per_gate_loop and layer_set in self.sets


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


@functools.cache
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
                per_gate_loop=entry.get("per_gate_loop", False),
            )
            for entry in data["entry"]
        ),
        kernel_definitions=tuple(Exemption(**entry) for entry in data["kernel_definition"]),
        allowed=tuple(Exemption(**entry) for entry in data["allowed"]),
    )
