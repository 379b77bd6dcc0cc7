"""A stand-in for patcher/probe/runner.py and rnn_runner.py that only takes time.

    FAKE_PROBE_LOG=events.jsonl FAKE_PROBE_SLEEP='{"keras": 2}' python fake_probe.py --package keras ...

Appends a "start" and (unless killed first) an "end" event, each with its pid,
time, --package, --site, KERAS_BACKEND and kind, to FAKE_PROBE_LOG; sleeps as
long as FAKE_PROBE_SLEEP says for "PACKAGE/KERAS_BACKEND", else "PACKAGE KIND"
(KIND: rnn when called as the LSTM/GRU probe, with --layer-set, else convlstm),
else "PACKAGE" (default 0); then prints progress lines on stderr and a passing
document on stdout, as the real probes do (patcher/probe/answer.py): one check,
"fake" or "fake rnn".
The backend it reports is KERAS_BACKEND, or null (it reads no keras.json).
With FAKE_PROBE_CHILD set it first starts a child of its own that sleeps for
ten minutes, and logs a "child" event with the child's pid: a probe that left
a process behind (what TensorFlow or a compiler might do).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from patcher.probe import answer

package = sys.argv[sys.argv.index("--package") + 1]
site = sys.argv[sys.argv.index("--site") + 1] if "--site" in sys.argv else None
backend = os.environ.get("KERAS_BACKEND") or None
kind = "rnn" if "--layer-set" in sys.argv else "convlstm"
layer_sets = [sys.argv[i + 1].split("=")[0] for i, arg in enumerate(sys.argv[:-1]) if arg == "--layer-set"] or [kind]


def log(event: str, pid: int | None = None) -> None:
    line = json.dumps(
        {
            "event": event,
            "pid": pid or os.getpid(),
            "probe": os.getpid(),
            "time": time.time(),
            "package": package,
            "site": site,
            "backend": backend,
            "kind": kind,
        }
    )
    with open(os.environ["FAKE_PROBE_LOG"], "a") as handle:
        handle.write(line + "\n")


if os.environ.get("FAKE_PROBE_CHILD"):
    # It says when it is up (its start-up, a sitecustomize included, has run), then sleeps.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    child.stdout.readline()
    log("child", child.pid)
log("start")
print(f"importing {package}", file=sys.stderr, flush=True)
seconds = json.loads(os.environ.get("FAKE_PROBE_SLEEP", "{}"))
keys = [f"{package}/{backend}", f"{package} {kind}", package]
time.sleep(next((seconds[key] for key in keys if key in seconds), 0))
print("check fake", file=sys.stderr, flush=True)
log("end")
if os.environ.get("FAKE_PROBE_ANSWER"):  # a malformed answer, as JSON
    answer.emit(json.loads(os.environ["FAKE_PROBE_ANSWER"]))
    sys.exit(0)
answer.emit(
    {
        "backend": backend,
        "checks": [
            {"name": "fake rnn" if kind == "rnn" else "fake", "passed": True, "detail": "slept", "layer_set": layer_set}
            for layer_set in layer_sets
        ],
    }
)
