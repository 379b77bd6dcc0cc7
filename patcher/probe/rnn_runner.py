"""Verify patched LSTM / GRU layers: run in a fresh process of the target interpreter.

    python rnn_runner.py --package keras \
        --layer-set lstm=keras.src.layers.rnn.lstm [--pristine lstm=PATH] \
        --layer-set gru=keras.src.layers.rnn.gru [--pristine gru=PATH]

Prints progress lines on stderr and one JSON document on stdout (behind answer.py's
marker), as runner.py does: {"backend", "checks": [{"name",
"layer_set", "passed", "detail", "value"}]}, each check named "<set> <check>" (e.g.
"lstm numerics") with its set as layer_set. Never raises: a failing check is
reported, not a traceback. The checks are rnn_probe.py's.

Runs in the user's interpreter: keep it valid Python 3.6 (tests/test_probe_compat.py).
"""

import argparse
import os
import runpy
import sys


def pairs(values):
    """{SET: VALUE} from SET=VALUE arguments."""
    found = {}
    for value in values or []:
        name, _, rest = value.partition("=")
        found[name] = rest
    return found


def main(argv=None):
    # runner.py, loaded rather than run, makes this folder the package the probe's modules live in.
    probe_module = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py"))["probe_module"]
    common, rnn = probe_module("common"), probe_module("rnn_probe")
    parser = argparse.ArgumentParser()
    parser.add_argument("--package", required=True)
    parser.add_argument("--layer-set", action="append", required=True, help="SET=MODULE")
    parser.add_argument("--pristine", action="append", help="SET=PATH of the backed-up module")
    parser.add_argument("--site", help="the folder holding the package: searched first")
    args = parser.parse_args(argv)
    modules = pairs(args.layer_set)
    start = rnn.start(args.package, modules, pairs(args.pristine))
    return common.serve(args.package, args.site, rnn.CHECKS, list(modules), start)


if __name__ == "__main__":
    sys.exit(main())
