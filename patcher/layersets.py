"""The layer sets a patch covers (`--layers`): one registry entry each.

A layer set is a family of Keras layers that gains per-gate activations
together. Everything the tool needs to know about one lives here or is looked
up from here: its name (in the manifest, the hash pins and on the command
line), what its files gain (the marker comment), whether its layers have
fused kernels to guard, and the probe that verifies it. Its parameters are in
``patches/parameters.toml`` (``[layer_sets]``) and its files, per Keras
generation, in ``patches/layouts.toml``; a file may belong to several sets.
Adding a set is one entry here and in those two tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from patcher.enums import TextEnum


class LayerSet(TextEnum):
    CONVLSTM = "convlstm"
    LSTM = "lstm"
    GRU = "gru"


@dataclass(frozen=True)
class LayerSetInfo:
    gains: str  # what its files gain, for the marker comment
    fused: bool  # its layers have fused kernels (cuDNN, standard_lstm) that must not see per-gate activations
    probe: str  # the script in patcher/probe/ that verifies it
    # A wrapper file (a layout file whose classes are all "wrapper", like
    # Bidirectional) belongs to this set only in versions where it mentions
    # one of these: where it can hand the set's layers to a fused kernel.
    wrapper_reaches: tuple[str, ...] = ()


REGISTRY: dict[LayerSet, LayerSetInfo] = {
    LayerSet.CONVLSTM: LayerSetInfo("ConvLSTM takes five activations", fused=False, probe="runner.py"),
    LayerSet.LSTM: LayerSetInfo(
        "LSTM takes five activations", fused=True, probe="rnn_runner.py", wrapper_reaches=("bidirectional_lstm",)
    ),
    LayerSet.GRU: LayerSetInfo(
        "GRU takes separate update and reset gate activations",
        fused=True,
        probe="rnn_runner.py",
        wrapper_reaches=("bidirectional_gru",),
    ),
}

# `apply` always patches ConvLSTM, the tool's purpose; further sets are opt-in.
BASE = LayerSet.CONVLSTM
# The sets whose stock layers have fused kernels (patches/fused.toml) a per-gate layer must avoid.
FUSED_SETS = frozenset(layer_set for layer_set, info in REGISTRY.items() if info.fused)


def ordered(sets: Iterable[LayerSet]) -> tuple[LayerSet, ...]:
    """Layer sets in their declared order (convlstm, lstm, gru), each once."""
    chosen = set(sets)
    return tuple(member for member in LayerSet if member in chosen)


def names(sets: Iterable[LayerSet]) -> str:
    """``"convlstm, lstm"``, for messages."""
    return ", ".join(map(str, ordered(sets))) or "none"


def parse(text: str) -> frozenset[LayerSet]:
    """``"convlstm,lstm"`` -> {CONVLSTM, LSTM}; ValueError names a wrong entry."""
    given = [name.strip().lower() for name in text.split(",") if name.strip()]
    known = ", ".join(member.value for member in LayerSet)
    if not given:
        raise ValueError(f"give at least one of {known}")
    wrong = [name for name in given if name not in {member.value for member in LayerSet}]
    if wrong:
        raise ValueError(f"unknown layer set {wrong[0]!r}; choose from {known}")
    return frozenset(LayerSet(name) for name in given)


def from_names(values: object) -> tuple[LayerSet, ...]:
    """Layer sets stored in our own files (manifest, chosen sets): a non-empty list of
    known names, each once. ValueError says what is wrong (the caller names the file)."""
    if not isinstance(values, list) or not values or not all(isinstance(value, str) for value in values):
        raise ValueError("layer_sets must be a non-empty list of names")
    if len(set(values)) != len(values):
        raise ValueError("layer_sets names a set twice")
    try:
        return tuple(LayerSet(value) for value in values)
    except ValueError:
        raise ValueError(f"layer_sets names an unknown set ({', '.join(values)})") from None
