"""How a process convlstm-patch starts in the target interpreter hands back its answer.

The answer is one JSON document on a line of its own, behind a marker, so it is
found among whatever else the interpreter prints on stdout: a sitecustomize or
.pth banner at start-up, a library's message at exit. The probes print it with
:func:`emit` (loaded from this file: they import nothing from convlstm-patch);
`--python`'s discovery prints the same line from its ``-c`` code; the tool
reads both with :func:`find`.

Runs in the user's interpreter: keep it valid Python 3.5.
"""

import json
import sys

MARKER = "@convlstm-patch-answer@ "


def emit(document):
    """Print ``document`` behind the marker, on a line of its own even after a banner that did not end its line."""
    sys.stdout.write("\n" + MARKER + json.dumps(document) + "\n")
    sys.stdout.flush()


def find(output):
    """The document :func:`emit` printed in ``output`` (text), or None when there is none."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            try:
                return json.loads(line[len(MARKER) :])
            except ValueError:
                return None
    return None
