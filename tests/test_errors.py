"""Every exit code the core can give is a row of README's exit-code table, and every row is one it gives."""

import re
import subprocess
import sys
from pathlib import Path

from patcher import errors

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_codes() -> set[int]:
    table = README.read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([0-9, ]+) \|", table, flags=re.MULTILINE)
    return {int(code) for row in rows for code in row.split(",")}


def test_readme_documents_exactly_the_exit_codes_errors_give():
    signals = {143, 129}  # Interrupted by SIGTERM / SIGHUP: 128 + the signal's number
    assert documented_codes() == {0} | {int(code) for code in errors.ExitCode} | signals


def test_each_kind_of_error_exits_with_its_code_and_prints_only_its_message():
    for kind, code in (
        (errors.KerasNotFound, 3),
        (errors.WriteFailed, 7),
        (errors.CheckFailed, 1),
        (errors.UnsafePath, 12),
    ):
        error = kind("what happened; what to do")
        assert isinstance(error, errors.PatchError)
        assert (error.exit_code, str(error)) == (code, "what happened; what to do")


def test_a_control_character_in_a_path_neither_splits_the_error_line_nor_reaches_the_terminal(tmp_path):
    """Line breaks (also those str.splitlines knows: \\v, \\f, \\x85, \\u2028), an escape sequence
    that would erase the line and a bidi override are shown as escapes."""
    folder = tmp_path / "a\nb\rc\x0bd\x0ce\x85f\u2028g\x1b[2Kh\u202ei"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "patcher", "status", "--keras-root", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == errors.ExitCode.KERAS_NOT_FOUND, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("Error: "), done.stderr
    assert "a\\nb\\rc\\x0bd\\x0ce\\x85f\\u2028g\\x1b[2Kh\\u202ei" in done.stderr, done.stderr


def test_a_keras_root_the_system_cannot_look_up_is_exit_3_not_a_bug(tmp_path):
    """A name over the file system's limit (ENAMETOOLONG) is a --keras-root that is not a folder."""
    done = subprocess.run(
        [sys.executable, "-m", "patcher", "status", "--keras-root", str(tmp_path / ("a" * 300))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == errors.ExitCode.KERAS_NOT_FOUND, done.stderr
    assert "is not a folder (File name too long)" in done.stderr and "unexpected" not in done.stderr
