"""The tests at this level need no installed Keras and import neither Keras nor
TensorFlow: the transforms, the state core on a fake Keras (tests/fake_keras.py),
the fused-kernel audit's data, the probe's compatibility, the locks and the
matrix's logic. Those that need an installed Keras live in tests/keras/, whose
conftest.py makes the pristine copy of it they work on. The fixtures here serve both
folders: a fake Keras, and the fake probe in place of the real ones."""

from __future__ import annotations

import os
import shutil
import signal
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


@pytest.fixture
def fake_site(tmp_path: Path) -> Path:
    """A site-packages folder with a fake keras 3.99.0 and a fake tf_keras 2.99.0 (tests/fake_keras.py)."""
    import fake_keras

    folder = fake_keras.install(tmp_path / "site-packages")
    return fake_keras.install(folder, "2.99.0", name="tf_keras")


@pytest.fixture
def events(tmp_path: Path, monkeypatch):
    """Verification runs the fake probe (tests/scripts/fake_probe.py) for both probes, which logs
    its runs to the returned file (read it with process_helpers.read_events)."""
    from process_helpers import FAKE_PROBE, alive, read_events

    import patcher.verification

    log = tmp_path / "probe-events.jsonl"
    log.touch()
    # The LSTM/GRU probe is found by its file name (the layer-set registry names it).
    rnn_probe = tmp_path / "fake-rnn" / patcher.verification.RNN_PROBE.name
    rnn_probe.parent.mkdir()
    shutil.copy(FAKE_PROBE, rnn_probe)
    monkeypatch.setattr(patcher.verification, "PROBE", FAKE_PROBE)
    monkeypatch.setattr(patcher.verification, "RNN_PROBE", rnn_probe)
    monkeypatch.setenv("FAKE_PROBE_LOG", str(log))
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    yield log
    # Whatever a failing test left behind: its own logged processes, killed by pid.
    leftovers = [pid for probe, run in read_events(log).items() for pid in (probe, *run["children"]) if alive(pid)]
    for pid in leftovers:
        os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))


@pytest.fixture
def taken_as_patched(monkeypatch):
    """The fake Keras has stub classes no transform applies to, so it stays pristine, and `verify`
    refuses a Keras nobody patched before starting a probe: let it run the probes anyway."""
    import patcher.commands

    monkeypatch.setattr(patcher.commands, "_require_something_patched", lambda snap: None)


@pytest.fixture
def stand_ins():
    """The simulation's stand-ins for what needs Keras (tests/simulation.py), in this process and
    the processes it forks; put back afterwards."""
    import simulation

    from patcher import checking, planning, verification

    saved = (planning.patch_sources, checking.patch_sources, planning.require_guarded, verification.verify_all)
    simulation.install_stand_ins()
    yield simulation
    planning.patch_sources, checking.patch_sources, planning.require_guarded, verification.verify_all = saved
    simulation.Probe.fails = simulation.Probe.fills_the_disk = False
