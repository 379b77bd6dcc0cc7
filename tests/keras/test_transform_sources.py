"""The transforms on the real ConvLSTM sources of the installed keras and tf_keras.

The sources are read at test time from the session's pristine copy of the
installed distributions (tests/conftest.py; never from copies in the
repository), so these tests follow whatever Keras CI installs, patched or not.
"""

import ast
import functools
import re
import sys
from importlib import metadata
from pathlib import PurePosixPath

import pytest
from helpers import removed_lines

from patcher.environment import find_flavours
from patcher.layersets import LayerSet
from patcher.marker import MARKER_PREFIX
from patcher.snapshot import State, read
from patcher.spec import parameters
from patcher.transform import transform_source

NAMES = tuple(param.name for param in parameters())
GATE_PREFIXES = (
    "i = self.recurrent_activation(",
    "f = self.recurrent_activation(",
    "c = f * c_tm1 + i * self.activation(",
    "o = self.recurrent_activation(",
    "h = o * self.activation(c)",
)
DISTRIBUTIONS = ("keras", "tf_keras")

FLAVOURS = {flavour.distribution: flavour for flavour in find_flavours(sys.path)}
FILES = [(flavour, target) for flavour in FLAVOURS.values() for target in flavour.files_of({LayerSet.CONVLSTM})]


def file_id(flavour, target):
    return f"{flavour.distribution}-{PurePosixPath(target.relative).name}"


FILE_PARAMS = [pytest.param(flavour, target, id=file_id(flavour, target)) for flavour, target in FILES]
CLASS_PARAMS = [
    pytest.param(flavour, target, class_name, role, id=f"{file_id(flavour, target)}-{class_name}")
    for flavour, target in FILES
    for class_name, role in target.classes.items()
]


@functools.cache
def check_pristine(distribution):
    state = read([FLAVOURS[distribution]]).flavours[0].overall()
    if state != State.PRISTINE:
        pytest.fail(
            f"the session's copy of {distribution} is {state!r}, not pristine: "
            "scripts/pristine.py should have restored its stock sources (a bug in the test setup)"
        )


@functools.cache
def pristine_source(distribution, relative):
    check_pristine(distribution)
    path = metadata.distribution(distribution).locate_file(relative)
    return path.read_text(encoding="utf-8")


@functools.cache
def patched(distribution, relative):
    classes = next(target.classes for target in FLAVOURS[distribution].files if target.relative == relative)
    return transform_source(pristine_source(distribution, relative), classes)


def class_node(code, class_name):
    tree = ast.parse(code)
    return next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == class_name)


def method_node(cls, *names):
    """The first of `names` that the class defines."""
    methods = {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)}
    return next(methods[name] for name in names if name in methods)


def named_parameters(function):
    """(name, default) of every parameter that can be passed by keyword, in order."""
    args = function.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    return [*zip((a.arg for a in positional), defaults), *zip((a.arg for a in args.kwonlyargs), args.kw_defaults)]


def is_none(node):
    return isinstance(node, ast.Constant) and node.value is None


def test_both_flavours_are_installed_with_a_known_layout():
    for distribution in DISTRIBUTIONS:
        assert distribution in FLAVOURS, f"{distribution} is not installed"
        assert FLAVOURS[distribution].layout is not None, f"no layout matches {FLAVOURS[distribution].key}"


@pytest.mark.parametrize("flavour, target", FILE_PARAMS)
def test_transform_succeeds_without_warnings(flavour, target):
    result = patched(flavour.distribution, target.relative)
    assert result.warnings == ()
    compile(result.code, target.relative, "exec")
    # Below a coding line or shebang, if any (as `state` looks for it).
    assert any(line.startswith(MARKER_PREFIX) for line in result.code.splitlines()[:3])


@pytest.mark.parametrize("flavour, target", FILE_PARAMS)
def test_transform_is_idempotent(flavour, target):
    code = patched(flavour.distribution, target.relative).code
    assert transform_source(code, target.classes).code == code


@pytest.mark.parametrize("flavour, target", FILE_PARAMS)
def test_only_gate_lines_change(flavour, target):
    original = pristine_source(flavour.distribution, target.relative).splitlines()
    removed = removed_lines(original, patched(flavour.distribution, target.relative).code.splitlines())
    unexpected = [line for line in removed if not line.startswith(GATE_PREFIXES)]
    assert unexpected == [], "original lines changed that are not gate equations"
    # Only a cell's file computes the gates, each once.
    expected = len(GATE_PREFIXES) if "cell" in target.classes.values() else 0
    assert len(removed) == expected
    assert sorted(removed) == sorted(set(removed))


@pytest.mark.parametrize("flavour, target, class_name, role", CLASS_PARAMS)
def test_init_takes_the_five_before_kwargs(flavour, target, class_name, role):
    code = patched(flavour.distribution, target.relative).code
    init = method_node(class_node(code, class_name), "__init__")
    parameters = named_parameters(init)
    assert [name for name, _ in parameters[-len(NAMES) :]] == list(NAMES)
    assert all(is_none(default) for _, default in parameters[-len(NAMES) :])
    assert init.args.kwarg is not None and init.args.kwarg.arg == "kwargs"


@pytest.mark.parametrize("flavour, target, class_name, role", CLASS_PARAMS)
def test_activations_are_used(flavour, target, class_name, role):
    cls = class_node(patched(flavour.distribution, target.relative).code, class_name)
    if role == "cell":
        called = {
            node.func.attr
            for node in ast.walk(method_node(cls, "call", "step"))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
        }
        assert set(NAMES) <= called
        assert not {"activation", "recurrent_activation"} & called
    else:
        # The layer hands each one on, to its cell or its base class.
        forwarded = {
            keyword.arg
            for node in ast.walk(method_node(cls, "__init__"))
            if isinstance(node, ast.Call)
            for keyword in node.keywords
            if isinstance(keyword.value, ast.Name) and keyword.value.id == keyword.arg
        }
        assert set(NAMES) <= forwarded


@pytest.mark.parametrize("flavour, target, class_name, role", CLASS_PARAMS)
def test_docstring_documents_the_five_after_recurrent_activation(flavour, target, class_name, role):
    docstring = ast.get_docstring(class_node(patched(flavour.distribution, target.relative).code, class_name))
    positions = []
    for name in ("recurrent_activation", *NAMES):
        match = re.search(rf"^\s*{name}:", docstring, re.MULTILINE)
        assert match, f"{class_name} docstring has no `{name}:` entry"
        positions.append(match.start())
    assert positions == sorted(positions)
