"""Run the transformers over one file and check that every edit landed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import libcst as cst

from patcher import __version__
from patcher.layersets import LayerSet
from patcher.spec import Parameter, parameters
from patcher.transform.cell_call import GateActivationsTransformer
from patcher.transform.cell_init import ResolveActivationsTransformer
from patcher.transform.config import ConfigTransformer
from patcher.transform.docstrings import DocstringTransformer
from patcher.transform.forwarding import ForwardArgumentsTransformer
from patcher.transform.fused_guard import FusedGuardTransformer
from patcher.transform.marker import MarkerTransformer
from patcher.transform.properties import PropertiesTransformer
from patcher.transform.signature import AddParametersTransformer

TRANSFORMERS = (
    AddParametersTransformer,
    ForwardArgumentsTransformer,
    ResolveActivationsTransformer,
    GateActivationsTransformer,
    ConfigTransformer,
    PropertiesTransformer,
    DocstringTransformer,
)
# LSTM and GRU layers also have fused kernels to keep per-gate activations out of.
FUSED_SETS = frozenset({LayerSet.LSTM, LayerSet.GRU})


class TransformError(Exception):
    """The source does not have the structure the patch expects."""


@dataclass(frozen=True)
class TransformResult:
    code: str
    warnings: tuple[str, ...]


def transform_source(
    source: str, targets: dict[str, str], version: str = __version__, layer_sets: Iterable[LayerSet] = (LayerSet.CONVLSTM,)
) -> TransformResult:
    """Patch one Keras file's source; ``targets`` maps each class to patch to its role."""
    layer_sets = tuple(layer_sets)
    if len(layer_sets) != 1:
        raise TransformError(f"one file for several layer sets ({', '.join(map(str, layer_sets))}) is not supported yet")
    (layer_set,) = layer_sets
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        raise TransformError(f"does not parse as Python (line {error.raw_line})") from None
    params = parameters(layer_set)
    fused = layer_set in FUSED_SETS
    edits: Counter[tuple[str, str]] = Counter()
    for transformer_class in TRANSFORMERS + ((FusedGuardTransformer,) if fused else ()):
        transformer = transformer_class(targets, params)
        module = module.visit(transformer)
        edits.update(transformer.edits)
    module = module.visit(MarkerTransformer(version, layer_set))
    warnings = tuple(_require_edits(targets, params, edits, fused))
    return TransformResult(code=module.code, warnings=warnings)


def _require_edits(
    targets: dict[str, str], params: tuple[Parameter, ...], edits: Counter, fused: bool = False
) -> list[str]:
    """Raise for a missing essential edit; return warnings for cosmetic ones."""
    count = len(params)
    warnings = []
    for name, role in targets.items():
        required = {"signature": count}
        if role == "cell":
            required.update({"resolve": 1, "config": 1})
            required.update({f"gate {param.gate}": 1 for param in params})
        else:
            required["forwarding"] = count
            if fused:
                required["fused guard"] = 1
        for kind, minimum in required.items():
            if edits[(name, kind)] < minimum:
                raise TransformError(f"class {name}: found no place for the {kind} edit")
        if not edits[(name, "docstring")]:
            warnings.append(f"class {name}: docstring has no `recurrent_activation:` entry; left as is")
    return warnings
