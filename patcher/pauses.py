"""Named points where a test can hold a run, so races are reproduced, not waited for.

With ``CONVLSTM_PATCH_PAUSE_AT=<point>[,<point>...]`` and
``CONVLSTM_PATCH_PAUSE_DIR=<folder>`` set, a run that reaches one of those
points creates ``<folder>/<point>.reached`` (holding its pid) and waits until
``<folder>/<point>.go`` exists, at most five minutes. Without them (users,
always) ``pause`` returns at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

DISCOVERED = "discovered"  # a writer found the flavours and read them without the lock; it takes the lock next
LOCKED = "locked"  # the environment's lock is held; nothing is read yet
WRITTEN = "written"  # the files are written, the journal is still there (verification comes next)
BEFORE_BACKUP_DELETE = "before-backup-delete"  # committed; a backup (or some of its copies) is about to go

WAIT = 300.0  # seconds


def pause(point: str) -> None:
    wanted = os.environ.get("CONVLSTM_PATCH_PAUSE_AT")
    folder = os.environ.get("CONVLSTM_PATCH_PAUSE_DIR")
    if not wanted or not folder or point not in wanted.split(","):
        return
    Path(folder, f"{point}.reached").write_text(str(os.getpid()))
    release = Path(folder, f"{point}.go")
    deadline = time.monotonic() + WAIT
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
