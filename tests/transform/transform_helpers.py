"""What the transformer tests share: the five names in their order, the target
classes, and running one transformer over a snippet.

The snippets only imitate the shape of Keras's ConvLSTM classes; they are not
Keras source. Every expected output is also checked to be a fixed point, since
`apply` must be safe to run on an already patched file.
"""

import ast
import re
import textwrap

import libcst as cst

from patcher.marker import marker_text
from patcher.spec import parameters

# The order every expected output is written in (test_parameters.py holds
# parameters.toml to it).
NAMES = ("activation_i", "activation_o", "recurrent_activation_f", "recurrent_activation_i", "recurrent_activation_o")
TARGETS = {"Cell": "cell", "Layer": "layer"}
MARKER = marker_text()


def dedent(code):
    return textwrap.dedent(code).lstrip("\n")


def visit(transformer, code):
    return cst.parse_module(code).visit(transformer).code


def apply(transformer_class, code, targets=TARGETS, params=None):
    transformer = transformer_class(targets, params or parameters())
    return visit(transformer, dedent(code)), transformer.edits


def assert_transforms(transformer_class, before, after, targets=TARGETS, params=None):
    code, _ = apply(transformer_class, before, targets, params)
    assert code == dedent(after)
    again, _ = apply(transformer_class, after, targets, params)
    assert again == dedent(after), "not idempotent"


def assert_unchanged(transformer_class, code, targets=TARGETS, params=None):
    """A no-op case: the transformer leaves ``code`` exactly as it is."""
    again, _ = apply(transformer_class, code, targets, params)
    assert again == dedent(code), "changed a snippet it must leave alone"


def class_docstring(code, class_name):
    tree = ast.parse(code)
    return next(ast.get_docstring(node) for node in tree.body if getattr(node, "name", None) == class_name)


def assert_documented_after_anchor(docstring):
    positions = [
        re.search(rf"^\s*{name}:", docstring, re.MULTILINE).start() for name in ("recurrent_activation", *NAMES)
    ]
    assert positions == sorted(positions), docstring
