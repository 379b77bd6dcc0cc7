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


def test_a_line_break_in_a_path_does_not_split_the_error_line(tmp_path):
    folder = tmp_path / "a\nb\rc"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "patcher", "status", "--keras-root", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == errors.ExitCode.KERAS_NOT_FOUND, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: "), done.stderr
    assert "a\\nb\\rc" in done.stderr
