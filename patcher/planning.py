"""Compute, in memory, what the patch makes of a flavour's files."""

from __future__ import annotations

from dataclasses import dataclass

from patcher import errors
from patcher.environment import Flavour, TargetFile


@dataclass(frozen=True)
class PlannedFile:
    target: TargetFile
    original: bytes
    patched: bytes
    warnings: tuple[str, ...]


def plan(flavour: Flavour, originals: dict[str, bytes]) -> list[PlannedFile]:
    """Transform every file; raise before anything is written if one fails."""
    from patcher.transform import TransformError, transform_source  # libcst: slow import

    planned = []
    for target in flavour.files:
        original = originals[target.relative]
        try:
            source = original.decode("utf-8")
            result = transform_source(source, target.classes, layer_sets=(target.layer_set,))
            compile(result.code, str(target.path), "exec", dont_inherit=True)
        except (UnicodeDecodeError, TransformError, SyntaxError) as error:
            raise errors.TransformFailed(
                f"cannot patch {target.relative} of {flavour.key}: {error}. "
                "This Keras version is not supported yet; please report it with `convlstm-patch status` output"
            ) from None
        planned.append(PlannedFile(target, original, result.code.encode("utf-8"), result.warnings))
    return planned
