"""convlstm-patch with the simulation's stand-ins (tests/simulation.py): the transform appends a
line, the probe passes; everything else is the real tool. For tests on the fake Keras that need
a real process (another user through setpriv, a pipe that closes).

    python simulated_tool.py apply --keras-root SITE ...
"""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

import simulation

simulation.install_stand_ins()
from patcher.cli import main

main()
