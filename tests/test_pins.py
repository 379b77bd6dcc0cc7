"""The committed pins (patches/pins) against the released Keras archives.

Every pinned release is downloaded (once per machine, by scripts/wheels.py,
into $CONVLSTM_PATCH_WHEEL_CACHE or ~/.cache/convlstm-patch/wheels: never into
the repository), transformed in memory, and compared with its pins. Without
network these tests skip, saying why, unless CI is set: then they fail.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

import update_pins
import wheels

from patcher.hashing import sha256_hex
from patcher.layersets import LayerSet
from patcher.pins import load_pins, pins_path
from patcher.spec import layouts, parameters

PINS_ROOT = update_pins.PINS_ROOT
COMMITTED = [(name, version) for name in wheels.FLOORS for version in wheels.known_versions(name, PINS_ROOT)]


def names(layer_set) -> tuple[bytes, ...]:
    """The parameters a layer set adds: every patched file of the set has them all."""
    return tuple(parameter.name.encode() for parameter in parameters(layer_set))


def unavailable(reason: str) -> None:
    """Skip, or fail under CI, where a missing download must never pass silently."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason} (CI is set: failing instead of skipping)")
    pytest.skip(reason)


def selected(request) -> list[tuple[str, str]]:
    """The releases whose tests this session runs (all, unless -k or an id narrowed them)."""
    pairs = {
        item.callspec.params["pair"]
        for item in request.session.items
        if item.path == Path(__file__) and "pair" in getattr(getattr(item, "callspec", None), "params", {})
    }
    return [pair for pair in COMMITTED if pair in pairs]


@pytest.fixture(scope="module")
def results(request) -> dict:
    """(distribution, version) -> update_pins.Computed, or the reason it could not be made."""
    releases = selected(request)
    cache = wheels.cache_dir()
    missing = [pair for pair in releases if pair not in wheels.cached(cache)] if cache.is_dir() else releases
    if missing:  # can we download at all? One small release tells, before trying them all
        with tempfile.TemporaryDirectory() as tmp:
            probe = wheels.download_one("keras", "2.4.3", Path(tmp))  # 36 kB
        if probe:
            unavailable(f"cannot fill the wheel cache {cache} ({len(missing)} releases missing): {probe}")
    failures = wheels.download(releases, cache)
    found = wheels.cached(cache)
    computed = update_pins.compute_all({pair: found[pair] for pair in releases if pair not in failures})
    return {**{pair: f"download failed: {reason}" for pair, reason in failures.items()}, **computed}


def test_locks_exist():
    assert len(COMMITTED) >= 88, f"expected pins per release in {PINS_ROOT}; run python scripts/update_pins.py"


@pytest.mark.slow  # downloads every release's wheel / the index's listing
@pytest.mark.parametrize("pair", COMMITTED, ids=[f"{name}-{version}" for name, version in COMMITTED])
def test_lock_matches_release(results, pair):
    outcome = results[pair]
    if isinstance(outcome, str):
        pytest.fail(f"{pair[0]} {pair[1]}: {outcome}")
    committed = pins_path(*pair, root=PINS_ROOT).read_text(encoding="utf-8")
    assert update_pins.dump_pins(outcome.pins) == committed, (
        f"the pins of {pair[0]} {pair[1]} is out of date: run python scripts/update_pins.py --versions "
        f"{pair[0]}=={pair[1]}"
    )
    assert not outcome.warnings
    pins = load_pins(*pair, root=PINS_ROOT)
    assert (pins.distribution, pins.version) == pair
    # (update_pins.compute refuses an archive whose files differ from its RECORD.)
    wrappers = {
        file.relative
        for layout in layouts()
        for package in ("keras", "tf_keras")
        for file in layout.files(package)
        if set(file.classes.values()) == {"wrapper"}
    }  # guard fused kernels only: they take no parameters
    for relative, outputs in outcome.patched.items():
        for key, data in outputs.items():
            compile(data, relative, "exec", dont_inherit=True)
            assert sha256_hex(data) != pins.files[relative].pristine
            for layer_set in key.split("+"):
                assert relative in wrappers or all(name in data for name in names(LayerSet(layer_set))), (relative, key)


def test_unsupported_are_the_keras_2_4_shims():
    """keras 2.4 only re-exports TensorFlow's layers; every other release has ConvLSTM source we patch."""
    unsupported = [pair for pair in COMMITTED if not load_pins(*pair, root=PINS_ROOT).supported]
    assert unsupported == [("keras", f"2.4.{patch}") for patch in range(4)]
    for pair in COMMITTED:
        pins = load_pins(*pair, root=PINS_ROOT)
        assert bool(pins.files) == pins.supported, pair


@pytest.mark.slow  # downloads every release's wheel / the index's listing
def test_every_release_has_a_lock():
    """A new Keras release turns this red until its pins are generated (and the patch checked)."""
    missing = []
    for name in wheels.FLOORS:
        try:
            listed = wheels.listed_versions(name)
        except RuntimeError as error:
            unavailable(f"cannot list the releases on the index: {error}")
        missing += [f"{name}=={version}" for version in listed if (name, version) not in COMMITTED]
    listing = " ".join(missing)
    assert not missing, f"no hash pins for {listing}: run python scripts/update_pins.py --versions {listing}"


@pytest.mark.parametrize(
    ("filename", "key"),
    [
        ("keras-3.15.1-py3-none-any.whl", ("keras", "3.15.1")),
        ("Keras-2.4.3-py2.py3-none-any.whl", ("keras", "2.4.3")),
        ("tf_keras-2.21.0-py3-none-any.whl", ("tf_keras", "2.21.0")),
        ("Keras-2.0.0.tar.gz", ("keras", "2.0.0")),
        ("notes.txt", None),
    ],
)
def test_archive_key(filename, key):
    assert wheels.archive_key(Path(filename)) == key


NEWEST_KERAS = max((pair for pair in COMMITTED if pair[0] == "keras"), key=lambda pair: wheels.version_key(pair[1]))


@pytest.fixture(scope="module")
def newest_keras_wheel() -> Path:
    cache = wheels.cache_dir()
    failure = wheels.download([NEWEST_KERAS], cache).get(NEWEST_KERAS)
    if failure:
        unavailable(f"cannot fill the wheel cache {cache}: {failure}")
    return wheels.cached(cache)[NEWEST_KERAS]


def doctored(wheel: Path, folder: Path, member: str, old: str, new: str, record: bool = True) -> Path:
    """A copy of ``wheel`` (dist-info and ConvLSTM sources only) with ``old`` replaced in ``member``."""
    import base64
    import hashlib
    import zipfile

    folder.mkdir()
    copy = folder / wheel.name
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(copy, "w") as target:
        data = source.read(member)
        changed = data.replace(old.encode(), new.encode())
        assert changed != data, f"{old!r} not in {member}"
        digest = lambda blob: base64.urlsafe_b64encode(hashlib.sha256(blob).digest()).rstrip(b"=")
        for name in source.namelist():
            blob = source.read(name)
            if name == member:
                blob = changed
            elif name.endswith(".dist-info/RECORD") and record:
                blob = blob.replace(digest(data), digest(changed))
            if name in update_pins.CANDIDATES or ".dist-info/" in name:
                target.writestr(name, blob)
    return copy


RNN = "keras/src/layers/rnn"


@pytest.mark.slow  # downloads every release's wheel / the index's listing
@pytest.mark.parametrize(
    ("member", "old", "new", "record", "status", "detail"),
    [
        pytest.param(
            f"{RNN}/conv_lstm.py",
            "o = self.recurrent_activation(x_o + h_o)",
            "o = x_o + h_o",
            True,
            "FAILED",
            f"TransformFailed: cannot patch {RNN}/conv_lstm.py",
            id="transform-fails",
        ),
        pytest.param(
            f"{RNN}/conv_lstm1d.py",
            "recurrent_activation: Activation",
            "recurrent_activation - Activation",
            True,
            "written (keras3, 7 files, layer sets convlstm/lstm/gru); WARNING",
            f"{RNN}/conv_lstm1d.py: class ConvLSTM1D: docstring",
            id="warns",
        ),
        pytest.param(
            f"{RNN}/conv_lstm2d.py",
            "Args:",
            "Arguments:",
            False,
            "FAILED",
            f"PinsError: {RNN}/conv_lstm2d.py: sha256 differs from the archive's RECORD",
            id="not-the-record",
        ),
        pytest.param(
            f"{RNN}/conv_lstm2d.py",
            "class ConvLSTM2D(",
            "class ConvLSTM2D (",
            True,
            "FAILED",
            "defines ConvLSTM but matches no layout of patches/layouts.toml",
            id="no-layout",
        ),
    ],
)
def test_update_reports_failures_and_warnings(
    newest_keras_wheel, tmp_path, capsys, member, old, new, record, status, detail
):
    cache = doctored(newest_keras_wheel, tmp_path / "cache", member, old, new, record).parent
    code = update_pins.run([NEWEST_KERAS], cache, check=False, jobs=1, root=tmp_path / "pins")
    output = capsys.readouterr().out
    assert code == 1, output
    assert f"{NEWEST_KERAS[0]} {NEWEST_KERAS[1]}: {status}" in output and detail in output, output


def test_lstm_and_gru_are_locked_for_keras_3_and_tf_keras():
    """Issue 13: Keras 3 and tf_keras (so keras 2.13-2.15 too) offer --layers lstm,gru."""
    for pair in COMMITTED:
        pins = load_pins(*pair, root=PINS_ROOT)
        generation = pair[0] == "tf_keras" or pair[1].startswith(("3.", "2.13.", "2.14.", "2.15."))
        if generation:
            assert pins.layer_sets == ("convlstm", "lstm", "gru"), pair
        assert pins.layer_sets[0] == "convlstm" if pins.supported else True
