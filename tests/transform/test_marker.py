"""marker: the comment on line 1 (2 after a shebang or coding line).

`test_noop`: snippets the transformer must leave as they are; `test_fix`:
before and after (each after is also checked to be a fixed point).
"""

import pytest
from transform_helpers import MARKER, visit

from patcher.layersets import LayerSet
from patcher.marker import marker_text
from patcher.transform.marker import MarkerTransformer


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(f"{MARKER}\nimport os\n", id="present"),
        pytest.param(
            "# -*- coding: utf-8 -*-\n"
            "# Patched by convlstm-patch 0.1.0: ConvLSTM takes five activations. Undo: convlstm-patch revert\n"
            "import os\n",
            id="present-from-an-older-convlstm-patch-that-named-its-version",
        ),
    ],
)
def test_noop(code):
    assert visit(MarkerTransformer(), code) == code


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param("import os\n", f"{MARKER}\nimport os\n", id="first-line"),
        pytest.param(
            "# Copyright 2024 Someone.\n\nimport os\n",
            f"{MARKER}\n# Copyright 2024 Someone.\n\nimport os\n",
            id="before-licence-comment",
        ),
        pytest.param('"""Module."""\nimport os\n', f'{MARKER}\n"""Module."""\nimport os\n', id="before-docstring"),
        pytest.param(
            "# -*- coding: utf-8 -*-\nimport os\n",
            f"# -*- coding: utf-8 -*-\n{MARKER}\nimport os\n",
            id="after-coding",
        ),
        pytest.param(
            "#!/usr/bin/env python\nimport os\n",
            f"#!/usr/bin/env python\n{MARKER}\nimport os\n",
            id="after-shebang",
        ),
        pytest.param(
            "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n\nimport os\n",
            f"#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n{MARKER}\n\nimport os\n",
            id="after-shebang-and-coding",
        ),
    ],
)
def test_fix(before, after):
    assert visit(MarkerTransformer(), before) == after
    assert visit(MarkerTransformer(), after) == after


def test_marker_keeps_coding_declaration_within_two_lines():
    # PEP 263: a coding line after one blank line still counts, but only
    # on line 1 or 2.
    code = visit(MarkerTransformer(), "\n# -*- coding: latin-1 -*-\nimport os\n")
    lines = code.splitlines()
    assert MARKER in lines
    assert "# -*- coding: latin-1 -*-" in lines[:2]


LSTM, GRU = LayerSet.LSTM, LayerSet.GRU
BOTH = marker_text([LSTM, GRU])


@pytest.mark.parametrize(
    ("before", "layer_sets", "after"),
    [
        pytest.param("import os\n", [GRU, LSTM], f"{BOTH}\nimport os\n", id="several-sets-in-order"),
        pytest.param(marker_text([LSTM]) + "\nimport os\n", [GRU], f"{BOTH}\nimport os\n", id="a-set-added"),
        pytest.param(f"{BOTH}\nimport os\n", [GRU], f"{BOTH}\nimport os\n", id="set-already-named"),
    ],
)
def test_layer_sets(before, layer_sets, after):
    assert visit(MarkerTransformer(layer_sets), before) == after
    assert visit(MarkerTransformer(layer_sets), after) == after
