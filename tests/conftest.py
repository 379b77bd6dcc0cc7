"""The tests at this level need no installed Keras and import neither Keras nor
TensorFlow: the transforms, the state core on a fake Keras (tests/fake_keras.py),
the fused-kernel audit's data, the probe's compatibility, the locks and the
matrix's logic. Those that need an installed Keras live in tests/keras/, whose
conftest.py makes the pristine copy of it they work on."""

from __future__ import annotations



import sys
from pathlib import Path

KERAS_TESTS = Path(__file__).parent / "keras"
HEAVY = ("keras", "tensorflow", "tf_keras", "libcst.tool")


def pytest_sessionfinish(session, exitstatus) -> None:
    """A run of only these tests must not have imported Keras or TensorFlow: fail it if it did."""
    items = getattr(session, "items", [])
    if not items or any(KERAS_TESTS in Path(item.path).parents for item in items):
        return
    imported = [name for name in HEAVY if name in sys.modules]
    if imported:
        session.config.get_terminal_writer().line(
            f"tests outside tests/keras imported {', '.join(imported)}; they must not", red=True
        )
        session.exitstatus = 1
