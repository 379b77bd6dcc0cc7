"""Run the convlstm-patch CLI, filling the disk right after a given file is written.

    FILL_AFTER=conv_lstm.py FILL_FILE=/small-disk/filler python hostile_launcher.py apply ...

Right after the first os.replace (or swap of two names, patcher.fsops._exchange)
whose destination ends with FILL_AFTER,
FILL_FILE is written until the file system has no space left (ENOSPC), so
the tool's next write meets a really full disk. The tests delete FILL_FILE.
"""

import errno
import os
import sys

FILL_AFTER = os.environ["FILL_AFTER"]
FILL_FILE = os.environ["FILL_FILE"]
real_replace = os.replace
filled = False


def fill_disk() -> None:
    with open(FILL_FILE, "ab", buffering=0) as handle:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
    print(f"filled: {FILL_FILE}", file=sys.stderr)


def replace(source, destination, **kwargs):
    global filled
    real_replace(source, destination, **kwargs)
    if not filled and str(destination).endswith(FILL_AFTER):
        filled = True
        fill_disk()


def exchange(first, second):
    global filled
    swapped = real_exchange(first, second)
    if swapped and not filled and str(second).endswith(FILL_AFTER):
        filled = True
        fill_disk()
    return swapped


os.replace = replace
import patcher.fsops

real_exchange = patcher.fsops._exchange
patcher.fsops._exchange = exchange

from patcher.cli import main

main()
