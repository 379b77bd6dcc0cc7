"""A matrix cell's own tests: the tests of the patched layers that the version's wheel ships,
found among its RECORD paths and run with the venv's pytest."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

import wheels

from patcher.layersets import BASE, LayerSet

OWN_TEST_TIMEOUT = 900.0
# Besides each set's own layers, the wheel's tests of the wrapper its files
# include (Bidirectional, which reaches the fused LSTM/GRU kernels).
OWN_TEST_FILES = {
    LayerSet.LSTM: ("lstm_test.py", "bidirectional_test.py"),
    LayerSet.GRU: ("gru_test.py", "bidirectional_test.py"),
}


def is_convlstm_test(path: str) -> bool:
    name = Path(path).name
    return name.endswith("_test.py") and ("conv_lstm" in name or name == "convolutional_recurrent_test.py")


def own_test_files(record: dict | list, layer_sets: tuple[LayerSet, ...]) -> list[str]:
    """The wheel's own tests of the cell's layer sets (RECORD paths): ConvLSTM's, and for
    LSTM/GRU their layers' and Bidirectional's, among the layer tests (`layers/` folders)."""
    names = {name for layer_set in layer_sets for name in OWN_TEST_FILES.get(layer_set, ())}
    return sorted(
        path
        for path in record
        if (BASE in layer_sets and is_convlstm_test(path))
        or (Path(path).name in names and "layers" in Path(path).parts)
    )


def run_pytest(python: Path, site: Path, tests: list[str], env: dict, timeout: float) -> dict:
    """The tests' summary line, the failed ones (class::name) and the seconds they took."""
    started = time.monotonic()
    report = Path(tempfile.mkstemp(prefix="matrix-junit-", suffix=".xml")[1])
    command = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    try:
        completed = subprocess.run(
            [*command, *[str(site / test) for test in tests]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tempfile.gettempdir(),
            env={**os.environ, **env},
            check=False,  # failures are read from the JUnit report
        )
        summary = wheels.last_line(completed.stdout)
        failed = junit_failures(report)
    except subprocess.TimeoutExpired:
        summary, failed = f"timed out after {timeout:.0f} s", ["(timeout)"]
    finally:
        report.unlink(missing_ok=True)
    return {"summary": summary, "failed": failed, "seconds": round(time.monotonic() - started, 1)}


def junit_failures(path: Path) -> list[str]:
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return ["(no report)"]
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname')}::{case.get('name')}")
    return failed
