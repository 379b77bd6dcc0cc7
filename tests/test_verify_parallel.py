"""Verification runs the probes of several flavours side by side, and each distinct backend once.

The probes here are tests/scripts/fake_probe.py (patched in for the real
runner.py and rnn_runner.py), which only sleeps and records when it ran, on a
fake keras and tf_keras (tests/fake_keras.py): no Keras, no TensorFlow, a few
seconds per test. Overlaps are read from the times the fake probes logged
themselves. The backend Keras 3 picks is compared with Keras's own
keras/src/backend/config.py, run on its own in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import pytest
from helpers import cli
from process_helpers import alive, gone_soon, read_events, sleeps

import patcher.verification
from patcher.environment import find_flavours
from patcher.layersets import LayerSet
from patcher.verification import MAX_PARALLEL, Verifiable, VerifyOptions, default_backend, verify_all

CONVLSTM, WITH_LSTM = (LayerSet.CONVLSTM,), (LayerSet.CONVLSTM, LayerSet.LSTM)


@pytest.fixture
def site(fake_site: Path) -> Path:
    """A fake keras 3.99.0 and tf_keras 2.99.0 (tests/conftest.py)."""
    return fake_site


@pytest.fixture(autouse=True)
def two_cores(monkeypatch):
    """Two probes at a time, as on a 2-core machine (a test that needs more says so)."""
    monkeypatch.setattr(patcher.verification, "_usable_cores", lambda: 2)


def items(site: Path, layer_sets=CONVLSTM, only: str | None = None) -> list[Verifiable]:
    return [Verifiable(flavour, layer_sets, None) for flavour in find_flavours([str(site)], only=only)]


def most_at_once(runs) -> int:
    """The most probes that ran at one moment, from their own start and end times."""
    edges = sorted([(run["start"], 1) for run in runs] + [(run["end"], -1) for run in runs])
    count = most = 0
    for _, step in edges:  # an end sorts before a start at the same time
        count += step
        most = max(most, count)
    return most


def test_flavours_are_probed_side_by_side_and_reported_in_their_order(site, events, monkeypatch):
    sleeps(monkeypatch, keras=3, tf_keras=1)  # the first flavour ends last
    flavours = items(site)
    assert [item.flavour.distribution for item in flavours] == ["keras", "tf_keras"]
    progress = []
    reports = verify_all(flavours, VerifyOptions(on_progress=progress.append))
    assert [report.flavour.distribution for report in reports] == ["keras", "tf_keras"]
    assert all(report.passed for report in reports)
    assert [report.backend for report in reports] == ["tensorflow", "tensorflow"]  # as each probe reported it
    runs = {run["package"]: run for run in read_events(events).values()}
    keras, tf_keras = runs["keras"], runs["tf_keras"]
    assert keras["start"] < tf_keras["end"] and tf_keras["start"] < keras["end"], runs  # they overlapped
    assert tf_keras["end"] < keras["end"]
    # Each line labelled with its flavour, whichever probe printed it when.
    keys = [item.flavour.key for item in flavours]
    expected = [
        f"{key}: {line}"
        for key, package in zip(keys, ("keras", "tf_keras"))
        for line in (f"importing {package}", "check fake")
    ]
    assert sorted(progress) == sorted(expected), progress
    assert [line for line in progress if line.startswith(keys[1])] == expected[2:]  # a flavour's lines in order


def test_one_flavours_convlstm_and_rnn_probes_run_side_by_side_checks_in_probe_order(site, events, monkeypatch):
    sleeps(monkeypatch, **{"keras convlstm": 3, "keras rnn": 1})  # the LSTM/GRU probe ends first
    (report,) = verify_all(items(site, WITH_LSTM, only="keras"), VerifyOptions())
    assert [check.name for check in report.checks] == ["fake", "fake rnn"]
    runs = {run["kind"]: run for run in read_events(events).values()}
    convlstm, rnn = runs["convlstm"], runs["rnn"]
    assert convlstm["start"] < rnn["end"] < convlstm["end"]  # they overlapped


def test_a_hung_rnn_probe_fails_each_of_its_layer_sets(site, events, monkeypatch):
    """A probe that does not answer fails a "run" check of every layer set it checks, each carrying
    its set (what scripts/matrix.py reads); the checks of the probe that answered are kept."""
    sleeps(monkeypatch, **{"keras rnn": 120})
    layer_sets = (LayerSet.CONVLSTM, LayerSet.LSTM, LayerSet.GRU)
    (report,) = verify_all(items(site, layer_sets, only="keras"), VerifyOptions(timeout=4))
    assert [(check.name, check.layer_set, check.passed) for check in report.checks] == [
        ("fake", LayerSet.CONVLSTM, True),
        ("lstm run", LayerSet.LSTM, False),
        ("gru run", LayerSet.GRU, False),
    ]


def test_no_more_probes_at_once_than_allowed(site, events, monkeypatch):
    sleeps(monkeypatch, keras=1, tf_keras=1)
    reports = verify_all(items(site, WITH_LSTM), VerifyOptions(backends=("jax",)))
    assert [(report.flavour.distribution, report.backend) for report in reports] == [
        ("keras", "tensorflow"),
        ("keras", "jax"),
        ("tf_keras", "tensorflow"),
    ]
    assert all([check.name for check in report.checks] == ["fake", "fake rnn"] for report in reports)
    runs = list(read_events(events).values())
    assert len(runs) == 6
    assert most_at_once(runs) == 2


def test_by_default_one_probe_per_usable_core_and_never_more_than_max_parallel(site, events, monkeypatch):
    sleeps(monkeypatch, keras=1, tf_keras=1)
    monkeypatch.setattr(patcher.verification, "_usable_cores", lambda: 64)
    verify_all(items(site, WITH_LSTM), VerifyOptions(backends=("jax", "torch")))
    runs = list(read_events(events).values())
    assert len(runs) == 8
    assert most_at_once(runs) == MAX_PARALLEL
    log_size = len(read_events(events))
    monkeypatch.setattr(patcher.verification, "_usable_cores", lambda: 1)
    verify_all(items(site, WITH_LSTM, only="tf_keras"), VerifyOptions())
    (convlstm, rnn) = sorted(list(read_events(events).values())[log_size:], key=lambda run: run["start"])
    assert convlstm["end"] <= rnn["start"]  # one core: one after the other


def test_a_hung_probe_is_killed_at_its_own_timeout_and_fails_only_its_report(site, events, monkeypatch):
    # Two at a time: keras hangs; keras [jax] ends after 4 s and tf_keras starts then, so it still
    # runs when keras is killed (8 s), and ends (10 s) before its own timeout (12 s).
    sleeps(monkeypatch, keras=120, **{"keras/jax": 4, "tf_keras": 6})
    started = time.monotonic()
    reports = verify_all(items(site), VerifyOptions(backends=("jax",), timeout=8))
    assert time.monotonic() - started < 60
    keras, keras_jax, tf_keras = reports
    assert not keras.passed
    assert [(check.name, check.detail) for check in keras.checks] == [("run", "verification did not finish within 8 s")]
    assert [check.layer_set for check in keras.checks] == [LayerSet.CONVLSTM]
    assert keras_jax.passed and keras_jax.backend == "jax"
    assert tf_keras.passed and [check.name for check in tf_keras.checks] == ["fake"]
    runs = {(run["package"], run["backend"]): (pid, run) for pid, run in read_events(events).items()}
    hung_pid, hung = runs["keras", "tensorflow"]
    assert hung["end"] is None and not alive(hung_pid)
    late = runs["tf_keras", "tensorflow"][1]
    assert late["start"] < hung["start"] + 8 < late["end"]  # it ran on while the hung probe was killed


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_a_killed_probe_takes_what_it_started_with_it(site, events, monkeypatch):
    """The kill reaches the probe's whole process group (POSIX): nothing it started is left."""
    monkeypatch.setenv("FAKE_PROBE_CHILD", "1")
    sleeps(monkeypatch, keras=120)
    (report,) = verify_all(items(site, only="keras"), VerifyOptions(timeout=3))
    assert report.checks[0].detail == "verification did not finish within 3 s"
    ((pid, run),) = read_events(events).items()
    assert len(run["children"]) == 1
    assert gone_soon([pid, *run["children"]]) == []


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_what_a_probe_started_and_left_running_ends_with_the_probe(site, events, monkeypatch):
    """A probe that answers and exits while something it started runs on (its pipes closed,
    as a daemon's): that is killed too, not left behind."""
    monkeypatch.setenv("FAKE_PROBE_CHILD", "1")
    (report,) = verify_all(items(site, only="keras"), VerifyOptions(timeout=30))
    assert [check.passed for check in report.checks] == [True]
    (run,) = read_events(events).values()
    assert run["end"] is not None and len(run["children"]) == 1
    assert gone_soon(run["children"]) == []


@pytest.mark.parametrize(
    "answer, detail",
    [
        pytest.param(
            {"checks": [{"name": "fake", "passed": "false", "detail": "", "layer_set": "convlstm"}]},
            "verification process crashed (exit code 0)",
            id="passed-not-a-boolean",
        ),
        pytest.param(
            {"checks": [{"name": "fake", "passed": True, "detail": "", "layer_set": "lstm"}]},
            "the probe's answer has no check of it",
            id="no-check-of-the-set-asked-for",
        ),
        pytest.param({"checks": []}, "the probe's answer has no check of it", id="no-checks"),
    ],
)
def test_a_malformed_probe_answer_fails_closed(site, events, monkeypatch, answer, detail):
    """A probe answer that is not one, or says nothing of a layer set it was asked to check, fails
    that set; it is never a pass."""
    monkeypatch.setenv("FAKE_PROBE_ANSWER", json.dumps(answer))
    (report,) = verify_all(items(site, only="keras"), VerifyOptions(timeout=30))
    failed = [check for check in report.checks if not check.passed]
    assert [(check.name, check.layer_set, check.detail) for check in failed] == [("run", LayerSet.CONVLSTM, detail)]


@pytest.mark.skipif(sys.platform == "win32", reason="a SIGINT to itself is a POSIX way to press Ctrl-C")
def test_ctrl_c_kills_every_probe_and_what_they_started(site, events, monkeypatch):
    monkeypatch.setenv("FAKE_PROBE_CHILD", "1")
    sleeps(monkeypatch, keras=60, tf_keras=60)
    # What a terminal's Ctrl-C does to the tool's process (the probes have sessions of their own).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt_when_both_run() -> None:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if sum(run["start"] is not None for run in read_events(events).values()) == 2:
                os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt in the main thread
                return
            time.sleep(0.05)

    interrupter = threading.Thread(target=interrupt_when_both_run)
    interrupter.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            verify_all(items(site), VerifyOptions(timeout=50))
    finally:
        interrupter.join()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 45
    runs = read_events(events)
    assert sorted(run["package"] for run in runs.values()) == ["keras", "tf_keras"]
    assert all(run["end"] is None for run in runs.values())
    pids = [pid for pid, run in runs.items() for pid in (pid, *run["children"])]
    assert len(pids) == 4
    assert gone_soon(pids) == []


def test_a_probe_that_cannot_start_fails_its_report_and_the_others_run(site, events, monkeypatch):
    (report_keras, report_tf_keras) = verify_all(
        items(site), VerifyOptions(python=str(Path(sys.executable).parent / "no-such-python"))
    )
    assert report_keras.checks[0].name == "run" and "could not start" in report_keras.checks[0].detail
    assert not report_tf_keras.passed
    assert read_events(events) == {}


# -- each distinct backend once ------------------------------------------------------


def keras_json(folder: Path, config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "keras.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return folder


def test_the_backend_of_the_default_run_is_not_verified_again(site, events, taken_as_patched):
    """KERAS_BACKEND=tensorflow and --backend tensorflow: one probe, one result line."""
    result = cli("verify", "--keras-root", str(site), "--only", "keras", "--backend", "tensorflow", "--json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["reports"]
    assert [report["backend"] for report in reports] == ["tensorflow"]
    assert [run["backend"] for run in read_events(events).values()] == ["tensorflow"]


def test_another_backend_is_verified_besides_the_default(site, events, taken_as_patched):
    result = cli("verify", "--keras-root", str(site), "--only", "keras", "--backend", "jax", "--json")
    assert result.exit_code == 0, result.output
    assert [report["backend"] for report in json.loads(result.stdout)["reports"]] == ["tensorflow", "jax"]


def test_a_backend_named_in_keras_json_is_not_verified_again(site, events, monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_HOME", str(keras_json(tmp_path / "home", {"backend": "jax"})))
    reports = verify_all(items(site, only="keras"), VerifyOptions(backends=("jax", "torch")))
    assert [report.backend for report in reports] == [None, "torch"]  # the fake reports only KERAS_BACKEND
    assert sorted(str(run["backend"]) for run in read_events(events).values()) == ["None", "torch"]


def test_tf_keras_is_verified_once_whatever_the_backends(site, events):
    reports = verify_all(items(site, only="tf_keras"), VerifyOptions(backends=("jax", "torch")))
    assert len(reports) == 1
    assert [run["backend"] for run in read_events(events).values()] == ["tensorflow"]  # KERAS_BACKEND as it was


def test_a_backend_reported_twice_is_shown_once(site, events, monkeypatch):
    """The safety net: when the default run's backend could not be told beforehand."""
    monkeypatch.setattr(patcher.verification, "default_backend", lambda env: None)
    reports = verify_all(items(site, only="keras"), VerifyOptions(backends=("tensorflow", "torch")))
    assert [report.backend for report in reports] == ["tensorflow", "torch"]
    assert len(read_events(events)) == 3  # both ran; the repeat is dropped from the reports


KERAS_CONFIG_ALONE = """
# keras/src/backend/config.py on its own: the Keras modules it imports are stubs.
import sys, types
stub = lambda name, **attributes: sys.modules.setdefault(name, types.ModuleType(name)).__dict__.update(attributes)
stub("keras.src.api_export", keras_export=lambda *args, **kwargs: (lambda function: function))
stub("keras.src.backend.common.global_state", set_global_attribute=lambda name, value: None)
for name in ("keras", "keras.src", "keras.src.backend", "keras.src.backend.common"):
    stub(name, __path__=[])
namespace = {"__name__": "keras_config"}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), namespace)
print(namespace["backend"]())
"""


def keras_config_file() -> Path:
    """The installed Keras 3's config.py, found from its RECORD (Keras is not imported here)."""
    try:
        path = Path(metadata.distribution("keras").locate_file("keras/src/backend/config.py"))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        pytest.skip("no Keras 3 installed to compare with")
    return path


@pytest.mark.parametrize(
    "environment, home_config, keras_home_config, expected",
    [
        pytest.param({"KERAS_BACKEND": "jax"}, None, {"backend": "torch"}, "jax", id="variable-wins"),
        pytest.param({"KERAS_BACKEND": ""}, None, {"backend": "torch"}, "torch", id="empty-variable-ignored"),
        pytest.param({}, {"backend": "jax"}, {"backend": "torch"}, "torch", id="keras-home-wins-over-home"),
        pytest.param({}, None, "{not json", "tensorflow", id="invalid-json-ignored"),
        pytest.param({}, None, {"floatx": "float32"}, "tensorflow", id="no-backend-key"),
        pytest.param({"KERAS_HOME": None}, {"backend": "jax"}, None, "jax", id="home-keras-json"),
        pytest.param({"KERAS_HOME": None}, None, None, "tensorflow", id="no-keras-json"),
    ],
)
def test_default_backend_is_the_one_keras_picks(
    tmp_path, monkeypatch, environment, home_config, keras_home_config, expected
):
    config = keras_config_file()
    home = tmp_path / "user"
    home.mkdir()
    if home_config is not None:
        keras_json(home / ".keras", home_config)
    keras_home = tmp_path / "keras-home"
    if keras_home_config is not None:
        keras_json(keras_home, keras_home_config)
    env = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND", "KERAS_HOME")}
    env.update({"HOME": str(home), "KERAS_HOME": str(keras_home), **environment})
    env = {key: value for key, value in env.items() if value is not None}
    monkeypatch.setenv("HOME", str(home))  # default_backend finds ~ as Keras does, through HOME
    ours = default_backend(env)  # first: Keras writes a keras.json where there is none
    keras = subprocess.run(
        [sys.executable, "-c", KERAS_CONFIG_ALONE, str(config)], env=env, capture_output=True, text=True, timeout=60
    )
    assert keras.returncode == 0, keras.stderr
    assert keras.stdout.strip() == expected  # the case is what Keras itself picks
    assert ours == expected


# -- a probe outlives no convlstm-patch ------------------------------------------------

PARENT = """
import subprocess, sys, time
probe = subprocess.Popen([sys.executable, *sys.argv[1:]], start_new_session=True)
print(probe.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize(
    "probe, arguments",
    [
        pytest.param(patcher.verification.PROBE, ["--cell-module", "keras.cell"], id="convlstm"),
        pytest.param(patcher.verification.RNN_PROBE, ["--layer-set", "lstm=keras.cell"], id="lstm-gru"),
    ],
)
def test_a_probe_ends_when_convlstm_patch_is_killed(tmp_path, probe, arguments):
    """Probes run in sessions of their own (so Ctrl-C can kill what they started); a SIGKILL of
    the tool must not leave one importing Keras, or hanging, for nobody."""
    site = tmp_path / "site-packages"
    (site / "keras").mkdir(parents=True)
    (site / "keras" / "__init__.py").write_text("import time\ntime.sleep(120)\n")  # a probe stuck in `import keras`
    command = [str(probe), "--package", "keras", "--site", str(site), *arguments]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, *command], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    time.sleep(1.5)  # the probe is past its start, stuck importing
    assert gone_soon([pid], seconds=0) == [pid], "the probe should still be running while its parent is"
    parent.kill()
    parent.wait()
    assert gone_soon([pid], seconds=10) == [], "the probe outlived the killed convlstm-patch"
