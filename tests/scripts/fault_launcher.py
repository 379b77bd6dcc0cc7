"""Run the convlstm-patch CLI, SIGKILLing itself before its k-th file operation.

    FAULT_AT=k python fault_launcher.py apply --keras-root DIR ...

Every call that changes the file system (os.replace, os.rename, os.link,
os.unlink, os.rmdir, os.mkdir, os.fsync, os.chmod, and the swap of two names,
patcher.fsops._exchange) counts as one operation. FAULT_AT=0 never kills
and prints the number of operations on stderr as `operations: N`, so the
tests know which k to try.
"""

import atexit
import os
import signal
import sys

FAULT_AT = int(os.environ.get("FAULT_AT", "0"))
count = 0


class Counted:
    """A file operation that counts itself. An object, not a function: pathlib on Python 3.9
    keeps os.mkdir & co. as class attributes, where a function would be bound as a method."""

    def __init__(self, function):
        self.function = function

    def __call__(self, *args, **kwargs):
        global count
        count += 1
        if count == FAULT_AT:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.function(*args, **kwargs)


for name in ("replace", "rename", "link", "unlink", "rmdir", "mkdir", "fsync", "chmod"):
    setattr(os, name, Counted(getattr(os, name)))

import patcher.fsops

patcher.fsops._exchange = Counted(patcher.fsops._exchange)
atexit.register(lambda: print(f"operations: {count}", file=sys.stderr))

from patcher.cli import main

main()
