"""The matrix's results: what a cell's run records, and OUT/matrix.json that keeps them.

A result is a dict per cell (JSON as it is written). Its verification keeps, per
report of `apply --json`, every check with the layer set the tool says it belongs
to (each check's "layer_set" field), so the sets a cell verified are read off
the tool's own words.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from matrix_cells import StepFailed, cells

from patcher.layersets import BASE, LayerSet, ordered


def load_results(out: Path) -> dict:
    try:
        document = json.loads((out / "matrix.json").read_text())
        return {cell["id"]: cell for cell in document["cells"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_json(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    order = {cell.id: index for index, cell in enumerate(cells())}
    document = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "cells": sorted(results.values(), key=lambda cell: order.get(cell["id"], len(order))),
    }
    meta = out / "run.json"
    if meta.exists():
        document["run"] = json.loads(meta.read_text())
    temporary = out / "matrix.json.tmp"
    temporary.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    temporary.replace(out / "matrix.json")


def verification_of(reports: list[dict]) -> list[dict]:
    """apply --json's verification reports as a result keeps them: each check's name, layer set,
    outcome and detail, and the names of the failed ones."""
    kept = []
    for report in reports:
        if any("layer_set" not in check for check in report["checks"]):
            raise StepFailed("apply --json names no layer_set for its checks: a convlstm-patch older than the matrix")
        checks = [{key: check[key] for key in ("name", "layer_set", "passed", "detail")} for check in report["checks"]]
        failed = [check["name"] for check in checks if not check["passed"]]
        kept.append({"backend": report["backend"], "passed": report["passed"], "checks": checks, "failed": failed})
    return kept


def verified_sets(reports: list[dict]) -> tuple[LayerSet, ...]:
    """The layer sets every report has checks of, all passed (reports as verification_of keeps them)."""
    verified: set[LayerSet] | None = None
    for report in reports:
        present = {LayerSet(check["layer_set"]) for check in report["checks"]}
        failed = {LayerSet(check["layer_set"]) for check in report["checks"] if not check["passed"]}
        verified = present - failed if verified is None else verified & (present - failed)
    return ordered(verified or ())


def result_verified_sets(cell: dict) -> list[str]:
    """The sets a result run-verified. A result without the record predates LSTM/GRU in the
    matrix, when every cell ran ConvLSTM alone."""
    if cell.get("outcome") != "run-verified":
        return []
    return cell.get("verified_sets", [str(BASE)])


def check_of(completed: subprocess.CompletedProcess) -> dict:
    """What `check --json` said: its exit, each flavour's status, and the problems it named."""
    try:
        results = json.loads(completed.stdout).get("results", [])
    except ValueError:
        results = []
    return {
        "exit": completed.returncode,
        "status": ", ".join(str(result.get("status")) for result in results) or "?",
        "problems": [problem for result in results for problem in result.get("problems", [])],
    }
