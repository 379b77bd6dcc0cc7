"""The tests at this level need no installed Keras and import neither Keras nor
TensorFlow: the transforms, the state core on a fake Keras (tests/fake_keras.py),
the fused-kernel audit's data, the probe's compatibility, the locks and the
matrix's logic. Those that need an installed Keras live in tests/keras/, whose
conftest.py makes the pristine copy of it they work on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

KERAS_TESTS = Path(__file__).parent / "keras"
# scripts/ (venvs.py, matrix.py, wheels.py): importable by every test
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
HEAVY = ("keras", "tensorflow", "tf_keras", "libcst.tool")


@pytest.fixture(scope="session", autouse=True)
def pure_tests_import_no_keras(request):
    """A run of only these tests must not import Keras or TensorFlow: its last test errors if
    one did. (A fixture, not a session hook: under pytest-xdist the tests run in workers, and
    an error at a fixture's teardown reaches the run's exit status from there.)"""
    pure = not any(KERAS_TESTS in Path(item.path).parents for item in request.session.items)
    yield
    imported = [name for name in HEAVY if name in sys.modules]
    if pure and imported:
        pytest.fail(f"tests outside tests/keras imported {', '.join(imported)}; they must not")
