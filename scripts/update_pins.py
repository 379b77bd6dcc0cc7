"""Regenerate patches/pins/<distribution>/<version>.json from the released wheels.

For every final release of keras (2.0.0 up) and tf_keras (2.14.1 up) on the
index, or only those given with --versions: download the archive once into a
cache outside the repository (pip download --no-deps), unpack its dist-info
and ConvLSTM (and LSTM/GRU) sources into a temporary folder, run the
transform, and write the pins (with the layer sets whose transform fits): each file's pristine sha256 (checked against the wheel's RECORD),
the sha256 of our output for every combination of the layer sets that patch each file. With --check nothing is
written and all pins that is missing or differs is listed.

Exit status 1 when a version fails to download or transform, the transform
warns, or (--check) a version's pins are missing or out of date.

    python scripts/update_pins.py                       # every release
    python scripts/update_pins.py --versions keras==3.15.1 tf-keras==2.21.0
    python scripts/update_pins.py --check               # CI: are the pins current?
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "scripts"):  # the checkout's patcher, and wheels.py beside us
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import wheels

from patcher.environment import PACKAGES, find_flavours
from patcher.hashing import sha256_hex
from patcher.layersets import BASE, ordered
from patcher.pins import PinnedFile, Pins, pins_dir, pins_path, sets_key
from patcher.spec import layouts

PINS_ROOT = pins_dir()  # the checkout's patches/pins (ROOT is first on the path)
# Every file any layout patches, for either package and any layer set: what we unpack.
CANDIDATES = {file.relative for layout in layouts() for package in PACKAGES for file in layout.files(package)}


class PinsError(Exception):
    """An archive we cannot make pins from."""


@dataclass(frozen=True)
class Computed:
    pins: Pins
    patched: dict  # relative path -> {sets_key: patched bytes}
    warnings: tuple[str, ...] = ()


def dump_pins(pins: Pins) -> str:
    """Stable text (sorted keys, one file per line block) so diffs of pins read well."""
    return json.dumps(asdict(pins), indent=2, sort_keys=True) + "\n"


def compute(archive: Path) -> Computed:
    """Transform one archive's sources in memory, for every layer set whose transform fits
    (ConvLSTM's must) and every combination of them a shared file can see."""
    from patcher.errors import TransformFailed
    from patcher.planning import patch_sources

    with tempfile.TemporaryDirectory(prefix="convlstm-pins-") as tmp:
        wheels.extract(archive, Path(tmp), CANDIDATES)
        flavours = find_flavours([tmp])
        if len(flavours) != 1:
            raise PinsError(f"{archive.name}: found {len(flavours)} keras/tf_keras distributions, expected 1")
        (flavour,) = flavours
        if flavour.layout is None:
            defining = wheels.layer_sources_containing(archive, "class ConvLSTM")
            if defining:
                raise PinsError(f"{defining[0]} defines ConvLSTM but matches no layout of patches/layouts.toml")
            return Computed(Pins(flavour.distribution, flavour.version, None, {}, ()), {})
        originals = {target.relative: target.path.read_bytes() for target in flavour.files}
    for target in flavour.files:
        if target.record_sha256 != sha256_hex(originals[target.relative]):
            raise PinsError(f"{target.relative}: sha256 differs from the archive's RECORD ({target.record_sha256})")
    fitting, warnings = [], []
    for layer_set in flavour.supported_sets:
        try:
            _, said = patch_sources(
                flavour, [(t, originals[t.relative], (layer_set,)) for t in flavour.files_of((layer_set,))]
            )
        except TransformFailed:
            if layer_set == BASE:
                raise
            continue  # this release's source of that set has another shape: the set is not offered for it
        fitting.append(layer_set)
        warnings += said
    files, patched = {}, {}
    for target in flavour.files_of(fitting):
        sets = ordered(set(target.layer_sets) & set(fitting))
        combinations = [combo for size in range(1, len(sets) + 1) for combo in itertools.combinations(sets, size)]
        outputs = {
            sets_key(combo): patch_sources(flavour, [(target, originals[target.relative], combo)])[0][target.relative]
            for combo in combinations
        }
        for data in outputs.values():
            compile(data, target.relative, "exec", dont_inherit=True)
        patched[target.relative] = outputs
        files[target.relative] = PinnedFile(
            sha256_hex(originals[target.relative]), {key: sha256_hex(data) for key, data in outputs.items()}
        )
    pins = Pins(flavour.distribution, flavour.version, flavour.layout.name, files, tuple(map(str, fitting)))
    return Computed(pins, patched, tuple(dict.fromkeys(warnings)))


def _attempt(archive: Path) -> Computed | str:
    try:
        return compute(archive)
    except Exception as error:  # noqa: BLE001 - report every version, whatever breaks
        return f"{type(error).__name__}: {error}"


def compute_all(found: dict[tuple[str, str], Path], jobs: int | None = None) -> dict[tuple[str, str], Computed | str]:
    """compute() of every archive, in worker processes (libcst is CPU-bound); a failure is its reason."""
    pairs = list(found)
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(pairs) < 2:
        return {pair: _attempt(found[pair]) for pair in pairs}
    # spawn, not fork: the caller (pytest) may have TensorFlow's threads running
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(pairs)), mp_context=context) as pool:
        return dict(zip(pairs, pool.map(_attempt, [found[pair] for pair in pairs], chunksize=4)))


def releases(requested: list[str] | None) -> list[tuple[str, str]]:
    """(distribution, version) pairs: the --versions given, else every listed release."""
    if requested:
        pairs = []
        for item in requested:
            name, sep, version = item.partition("==")
            if not sep or wheels.canonical(name) not in wheels.FLOORS or not version:
                raise ValueError(f"--versions: expected keras==X or tf-keras==X, got {item!r}")
            pairs.append((wheels.canonical(name), version))
        return pairs
    return [(name, version) for name in wheels.FLOORS for version in wheels.listed_versions(name)]


def archives(pairs: list[tuple[str, str]], cache: Path, jobs: int = 4) -> tuple[dict, dict]:
    """Download what is missing; ({release: archive path}, {release: failure reason})."""
    failures = wheels.download(pairs, cache, jobs)
    have = wheels.cached(cache)
    return {pair: have[pair] for pair in pairs if pair in have and pair not in failures}, failures


def describe(pins: Pins) -> str:
    if not pins.supported:
        return "unsupported (no ConvLSTM source of its own)"
    return f"{pins.layout}, {len(pins.files)} files, layer sets {'/'.join(pins.layer_sets)}"


def run(pairs: list[tuple[str, str]], cache: Path, check: bool, jobs: int, root: Path = PINS_ROOT) -> int:
    found, failures = archives(pairs, cache, jobs)
    results = compute_all(found)
    counts = dict.fromkeys(("ok", "written", "missing", "differs", "FAILED", "warned"), 0)
    for pair in pairs:
        label = f"{pair[0]} {pair[1]}"
        if pair in failures:
            counts["FAILED"] += 1
            print(f"{label}: FAILED {failures[pair]}")
            continue
        computed = results[pair]
        if isinstance(computed, str):
            counts["FAILED"] += 1
            print(f"{label}: FAILED {computed}")
            continue
        path = pins_path(*pair, root=root)
        text = dump_pins(computed.pins)
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            status = "ok"
        elif check:
            status = "missing" if current is None else "differs"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            status = "written"
        counts[status] += 1
        line = f"{label}: {status} ({describe(computed.pins)})"
        if computed.warnings:
            counts["warned"] += 1
            line += "; WARNING " + "; ".join(computed.warnings)
        print(line)
    summary = ", ".join(f"{count} {name}" for name, count in counts.items() if count or name == "FAILED")
    print(f"{len(pairs)} versions: {summary}")
    bad = counts["FAILED"] + counts["warned"] + counts["missing"] + counts["differs"]
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"Archives are cached in $CONVLSTM_PATCH_WHEEL_CACHE (now {wheels.cache_dir()}).",
    )
    parser.add_argument(
        "--versions", nargs="+", metavar="DIST==VERSION", help="only these, e.g. keras==3.15.1 tf-keras==2.21.0"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any pins are missing or differ")
    parser.add_argument("--cache", type=Path, default=None, help="archive cache folder (overrides the variable)")
    parser.add_argument("--jobs", type=int, default=4, help="parallel downloads (default 4)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        pairs = releases(args.versions)
    except ValueError as error:
        parser.error(str(error))
    except RuntimeError as error:
        print(f"cannot list the releases: {error}", file=sys.stderr)
        return 2
    status = run(pairs, args.cache or wheels.cache_dir(), args.check, args.jobs)
    print(f"done in {time.monotonic() - started:.1f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
