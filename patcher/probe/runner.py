"""Verify patched ConvLSTM layers: run in a fresh process of the target interpreter.

    python runner.py --package keras --cell-module keras.src.layers.rnn.conv_lstm \
        [--pristine PATH_TO_BACKED_UP_CELL_MODULE]

Prints one progress line per check on stderr and a JSON document on stdout (behind
answer.py's marker): {"backend", "checks": [{"name",
"layer_set", "passed", "detail", "value"}]}, every layer_set "convlstm" (common.py).
Never raises: a failing check is reported, not a traceback. The checks are
convlstm_probe.py's.

Runs in the user's interpreter, back to Python 3.5: keep it valid Python 3.6
(tests/test_probe_compat.py). convlstm-patch itself is not importable there, so
this folder is imported as the package _convlstm_patch_probe (its modules import
each other relatively).
"""

import argparse
import importlib
import os
import sys
import types

PACKAGE = "_convlstm_patch_probe"


def probe_module(name):
    """A module of this folder, imported as part of PACKAGE (made here on first use)."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
        sys.modules[PACKAGE] = package
    return importlib.import_module(PACKAGE + "." + name)


def main(argv=None):
    common, convlstm = probe_module("common"), probe_module("convlstm_probe")
    parser = argparse.ArgumentParser()
    parser.add_argument("--package", required=True)
    parser.add_argument("--cell-module", required=True)
    parser.add_argument("--pristine")
    parser.add_argument("--site", help="the folder holding the package: searched first")
    args = parser.parse_args(argv)
    start = convlstm.start(args.package, args.cell_module, args.pristine)
    return common.serve(args.package, args.site, convlstm.CHECKS, [common.CONVLSTM], start)


if __name__ == "__main__":
    sys.exit(main())
