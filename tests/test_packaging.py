"""The built wheel carries every module and data file the installed tool needs.

Tests import patcher from the checkout, so only this test notices a package
or data file that setup.cfg forgot.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile

from helpers import ROOT


def test_wheel_contains_every_module_and_data_file(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("convlstm_patch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(path.relative_to(ROOT)) for path in (ROOT / "patcher").rglob("*.py")}
    expected |= {
        "patcher/patches/" + str(path.relative_to(ROOT / "patches"))
        for path in (ROOT / "patches").rglob("*")
        if path.suffix in (".toml", ".json")
    }
    assert expected - names == set()
    assert any(name.endswith("entry_points.txt") for name in names)
