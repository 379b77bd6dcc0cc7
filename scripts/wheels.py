"""The released Keras archives the hash pins are computed from: list, download, unpack.

Used by scripts/update_pins.py and tests/test_pins.py. Archives are cached
outside the repository ($CONVLSTM_PATCH_WHEEL_CACHE, else
~/.cache/convlstm-patch/wheels): they are third-party code, never committed,
and a cache shared by every checkout on a machine is filled only once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

# distribution -> oldest release we pin (older keras predates ConvLSTM2D's
# current shape; tf_keras starts at 2.14.1 on PyPI)
FLOORS = {"keras": (2, 0, 0), "tf_keras": (2, 14, 1)}
PIP_NAMES = {"keras": "keras", "tf_keras": "tf-keras"}
FINAL = re.compile(r"\d+(\.\d+)*")
PINS = Path(__file__).resolve().parent.parent / "patches" / "pins"  # this checkout's


def canonical(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def known_versions(distribution: str, root: Path | None = None) -> list[str]:
    """The versions patches/pins/ (or ``root``) holds pins of, oldest first."""
    folder = (root or PINS) / distribution
    return sorted((path.stem for path in folder.glob("*.json")), key=version_key)


def cache_dir() -> Path:
    configured = os.environ.get("CONVLSTM_PATCH_WHEEL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "convlstm-patch" / "wheels"


def _pip(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def last_line(text: str) -> str:
    """A command's output as a one-line reason: its last non-blank line (at most 400 characters)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:400] if lines else "no output"


def listed_versions(distribution: str) -> list[str]:
    """Final releases on the index, oldest first, from the floor up (RuntimeError if pip cannot tell)."""
    try:
        completed = _pip("index", "versions", PIP_NAMES[distribution], timeout=300)
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"pip index versions {PIP_NAMES[distribution]}: {error}") from None
    match = re.search(r"^Available versions:(.*)$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or not match:
        reason = last_line(completed.stderr or completed.stdout)
        raise RuntimeError(f"pip index versions {PIP_NAMES[distribution]} failed: {reason}")
    versions = {item.strip() for item in match.group(1).split(",")}
    finals = [v for v in versions if FINAL.fullmatch(v) and version_key(v) >= FLOORS[distribution]]
    return sorted(finals, key=version_key)


def archive_key(path: Path) -> tuple[str, str] | None:
    """(distribution, version) of a wheel or sdist file name, None for anything else."""
    name = path.name
    if name.endswith(".whl"):
        parts = name[: -len(".whl")].split("-")
        return (canonical(parts[0]), parts[1]) if len(parts) >= 5 else None
    if name.endswith(".tar.gz") and "-" in name:
        project, version = name[: -len(".tar.gz")].rsplit("-", 1)
        return canonical(project), version
    return None


def cached(cache: Path) -> dict[tuple[str, str], Path]:
    """The archives in the cache; a wheel wins over an sdist of the same release."""
    found: dict[tuple[str, str], Path] = {}
    for path in sorted(cache.glob("*")):
        key = archive_key(path)
        if key and key[0] in FLOORS and (key not in found or path.name.endswith(".whl")):
            found[key] = path
    return found


def download_one(distribution: str, version: str, dest: Path) -> str | None:
    """``pip download --no-deps`` one release into ``dest``; the failure reason, or None."""
    spec = f"{PIP_NAMES[distribution]}=={version}"
    try:
        completed = _pip("download", "--no-deps", "--no-build-isolation", "--progress-bar=off", "-d", str(dest), spec)
    except (OSError, subprocess.SubprocessError) as error:
        return f"pip download {spec}: {error}"
    if completed.returncode != 0:
        return f"pip download {spec} failed: {last_line(completed.stderr or completed.stdout)}"
    return None


def download(releases: list[tuple[str, str]], cache: Path, jobs: int = 4) -> dict[tuple[str, str], str]:
    """Fetch every release not cached yet, a few at a time; the failures with their reason."""
    cache.mkdir(parents=True, exist_ok=True)
    have = cached(cache)
    missing = [release for release in releases if release not in have]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = pool.map(lambda release: download_one(*release, cache), missing)
        failures = {release: reason for release, reason in zip(missing, results) if reason}
    have = cached(cache)
    for release in missing:
        if release not in failures and release not in have:
            failures[release] = f"pip download {release[0]}=={release[1]} left no archive named for it in {cache}"
    return failures


def _safe(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"unsafe member name {name!r}")
    return path


def _write(dest: Path, relative: PurePosixPath, data: bytes) -> None:
    target = dest.joinpath(*relative.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def extract(archive: Path, dest: Path, wanted: set[str]) -> None:
    """Unpack the dist-info and the ``wanted`` package files (RECORD paths) into ``dest``.

    An sdist has no dist-info: one is made up (METADATA from PKG-INFO, RECORD
    with the sha256 of the extracted files), so both kinds read the same way.
    """
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as wheel:
            for name in wheel.namelist():
                path = _safe(name)
                if name in wanted or (len(path.parts) == 2 and path.parts[0].endswith(".dist-info")):
                    _write(dest, path, wheel.read(name))
        return
    with tarfile.open(archive, "r:gz") as sdist:
        files: dict[str, bytes] = {}
        metadata = None
        for member in sdist.getmembers():
            path = _safe(member.name)
            if not member.isfile() or len(path.parts) < 2:
                continue
            relative = PurePosixPath(*path.parts[1:])  # drop the top folder "Keras-2.0.0/"
            if str(relative) in wanted:
                files[str(relative)] = sdist.extractfile(member).read()
            elif str(relative) == "PKG-INFO":
                metadata = HeaderParser().parsestr(sdist.extractfile(member).read().decode("utf-8"))
    if metadata is None:
        raise ValueError(f"{archive.name}: sdist without PKG-INFO")
    name, version = canonical(metadata["Name"]), metadata["Version"]
    info = f"{name}-{version}.dist-info"
    record = [f"{rel},sha256={record_digest(data)},{len(data)}" for rel, data in sorted(files.items())]
    record += [f"{info}/METADATA,,", f"{info}/RECORD,,"]
    for rel, data in files.items():
        _write(dest, PurePosixPath(rel), data)
    _write(dest, PurePosixPath(info, "METADATA"), f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode())
    _write(dest, PurePosixPath(info, "RECORD"), ("\n".join(record) + "\n").encode())


def record_digest(data: bytes) -> str:
    """sha256 as RECORD spells it (urlsafe base64 without padding; patcher.hashing reads it back)."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def layer_sources_containing(archive: Path, text: str) -> list[str]:
    """Members ``*/layers/*.py`` of the archive whose source contains ``text`` (to tell a shim from a new layout)."""
    needle = text.encode("utf-8")
    found = []
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as wheel:
            for name in wheel.namelist():
                if "/layers/" in name and name.endswith(".py") and needle in wheel.read(name):
                    found.append(name)
        return found
    with tarfile.open(archive, "r:gz") as sdist:
        for member in sdist.getmembers():
            is_layer_source = member.isfile() and "/layers/" in member.name and member.name.endswith(".py")
            if is_layer_source and needle in sdist.extractfile(member).read():
                found.append(member.name.split("/", 1)[1])
    return found
