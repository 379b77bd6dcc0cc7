"""End a probe whose convlstm-patch is gone.

convlstm-patch starts each probe in a session of its own, so that on Ctrl-C or
a timeout it can kill the probe with everything the probe started. The price:
a signal the tool cannot catch (SIGKILL, the OOM killer) no longer reaches the
probe through the terminal's process group. So the probe watches its parent
and ends itself when the parent has gone (it is then re-parented: getppid()
changes), instead of importing TensorFlow for nobody, or hanging forever.

Runs in the user's interpreter: keep it valid Python 3.5.
"""

import os
import threading
import time


def exit_with_parent(interval=0.5):
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(70)  # EX_SOFTWARE; nobody reads it: the parent is gone

    thread = threading.Thread(target=watch, name="convlstm-patch-exit-with-parent")
    thread.daemon = True
    thread.start()
