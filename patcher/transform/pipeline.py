"""Run the transformers over one file and check that every edit landed."""

from __future__ import annotations

import ast
import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import libcst as cst

from patcher.layersets import FUSED_SETS, LayerSet, ordered
from patcher.spec import Parameter, parameters
from patcher.transform.base import ClassScopedTransformer
from patcher.transform.cell_call import GateActivationsTransformer
from patcher.transform.cell_init import ResolveActivationsTransformer
from patcher.transform.config import ConfigTransformer
from patcher.transform.docstrings import DocstringTransformer
from patcher.transform.forwarding import ForwardArgumentsTransformer
from patcher.transform.fused_guard import FusedGuardTransformer
from patcher.transform.marker import MarkerTransformer
from patcher.transform.per_gate_loop import PerGateLoopTransformer
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
    PerGateLoopTransformer,
)
# Roles whose classes take the parameters (the rest, "wrapper", only guard fused kernels).
PARAMETER_ROLES = frozenset({"cell", "layer"})


class TransformError(Exception):
    """The source does not have the structure the patch expects."""


@dataclass(frozen=True)
class TransformResult:
    code: str
    warnings: tuple[str, ...]


def transform_source(
    source: str,
    targets: dict[str, str],
    layer_sets: Iterable[LayerSet] = (LayerSet.CONVLSTM,),
) -> TransformResult:
    """Patch one Keras file's source for ``layer_sets``; ``targets`` maps each class to patch to its role.

    A file may serve several layer sets (Bidirectional's guards LSTM's and
    GRU's fused branches): it gets the union of their edits. A class that
    takes parameters ("cell", "layer") belongs to one set, so such a file has one.
    """
    return _transform(source, tuple(sorted(targets.items())), ordered(layer_sets))


# The transform is a pure function of its inputs and costs about 0.3 s a file in
# libcst: a process that meets the same bytes again (`check` after `apply`, a
# revert re-transforming a shared file, the test suite's many copies of one
# Keras) reuses the result. Failures (TransformError) are not cached.
@functools.lru_cache(maxsize=64)
def _transform(source: str, target_items: tuple[tuple[str, str], ...], sets: tuple[LayerSet, ...]) -> TransformResult:
    targets = dict(target_items)
    takes_parameters = {name: role for name, role in targets.items() if role in PARAMETER_ROLES}
    if not sets or (takes_parameters and len(sets) > 1):
        raise ValueError(f"a file with cells or layers is patched for exactly one layer set, not {sets}")
    try:
        module = cst.parse_module(source)
        tree = ast.parse(source) if FUSED_SETS.intersection(sets) else None
    except cst.ParserSyntaxError as error:
        raise TransformError(f"does not parse as Python (line {error.raw_line})") from None
    except SyntaxError as error:
        raise TransformError(f"does not parse as Python (line {error.lineno})") from None
    params = parameters(sets[0])
    # The guards first: they find their branches by counting methods and `if`s
    # in ``tree``, which the properties added below would shift.
    guard_edits: dict[LayerSet, Counter[tuple[str, str]]] = {}
    for layer_set in sets:
        if layer_set in FUSED_SETS:
            guard = FusedGuardTransformer(targets, parameters(layer_set), layer_set, tree)
            module = module.visit(guard)
            guard_edits[layer_set] = guard.edits
    edits: Counter[tuple[str, str]] = Counter()
    if takes_parameters:
        for transformer_class in TRANSFORMERS:
            transformer: ClassScopedTransformer
            if transformer_class is ResolveActivationsTransformer:
                transformer = transformer_class(takes_parameters, params, overriding=sets[0] in FUSED_SETS)
            else:
                transformer = transformer_class(takes_parameters, params)
            module = module.visit(transformer)
            edits.update(transformer.edits)
    module = module.visit(MarkerTransformer(sets))
    warnings = tuple(_require_edits(targets, params, edits, guard_edits))
    return TransformResult(code=module.code, warnings=warnings)


def _require_edits(
    targets: dict[str, str],
    params: tuple[Parameter, ...],
    edits: Counter,
    guard_edits: dict[LayerSet, Counter],
) -> list[str]:
    """Raise for a missing essential edit; return warnings for cosmetic ones.

    ``guard_edits``: the fused guards' edits of each fused layer set.
    """
    count = len(params)
    warnings = []
    for name, role in targets.items():
        if role not in PARAMETER_ROLES:
            for layer_set, counted in guard_edits.items():
                if counted[(name, "fused guard")] < 1:
                    raise TransformError(f"class {name}: found no place for the fused guard ({layer_set}) edit")
            continue
        required = {"signature": count}
        if role == "cell":
            required.update({"resolve": 1, "config": 1})
            required.update({f"gate {param.gate}": 1 for param in params})
        else:
            required["forwarding"] = count
        for kind, minimum in required.items():
            if edits[(name, kind)] < minimum:
                raise TransformError(f"class {name}: found no place for the {kind} edit")
        if role == "layer" and any(counted[(name, "fused guard")] < 1 for counted in guard_edits.values()):
            raise TransformError(f"class {name}: found no place for the fused guard edit")
        if (
            any(counted[(name, "per-gate call")] for counted in guard_edits.values())
            and not edits[(name, "per-gate loop")]
        ):
            raise TransformError(f"class {name}: found no place for the per-gate loop edit")
        if not edits[(name, "docstring")]:
            warnings.append(f"class {name}: docstring has no `recurrent_activation:` entry; left as is")
    return warnings
