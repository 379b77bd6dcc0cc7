"""A fake installed Keras for the core's unit tests: no Keras, TensorFlow or libcst needed.

The files define the classes the Keras 3 layout names (so discovery finds the
layout and every layer set), with a line of text per file to tell versions of
it apart, and a dist-info whose RECORD holds their sha256 as pip writes it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

FILES = {
    "keras/src/layers/rnn/conv_lstm.py": ("ConvLSTMCell", "ConvLSTM"),
    "keras/src/layers/rnn/conv_lstm1d.py": ("ConvLSTM1D",),
    "keras/src/layers/rnn/conv_lstm2d.py": ("ConvLSTM2D",),
    "keras/src/layers/rnn/conv_lstm3d.py": ("ConvLSTM3D",),
    "keras/src/layers/rnn/lstm.py": ("LSTMCell", "LSTM"),
    "keras/src/layers/rnn/gru.py": ("GRUCell", "GRU"),
    # Mentions backend.bidirectional_lstm/gru: part of both RNN sets (as keras 3.15+).
    "keras/src/layers/rnn/bidirectional.py": ("Bidirectional",),
}
CONVLSTM = [relative for relative in FILES if "conv_lstm" in relative]
# tf_keras (the Keras 2 "src" layout): its ConvLSTM cell lives in base_conv_lstm.py, no Bidirectional set.
TF_KERAS_FILES = {
    "tf_keras/src/layers/rnn/base_conv_lstm.py": ("ConvLSTMCell", "ConvLSTM"),
    "tf_keras/src/layers/rnn/conv_lstm1d.py": ("ConvLSTM1D",),
    "tf_keras/src/layers/rnn/conv_lstm2d.py": ("ConvLSTM2D",),
    "tf_keras/src/layers/rnn/conv_lstm3d.py": ("ConvLSTM3D",),
    "tf_keras/src/layers/rnn/lstm.py": ("LSTMCell", "LSTM"),
    "tf_keras/src/layers/rnn/gru.py": ("GRUCell", "GRU"),
}


def source(relative: str, text: str = "stock") -> bytes:
    classes = "".join(f"class {name}(object):\n    pass\n\n" for name in {**FILES, **TF_KERAS_FILES}[relative])
    reaches = (
        "# backend.bidirectional_lstm, backend.bidirectional_gru\n" if relative.endswith("bidirectional.py") else ""
    )
    return f"# {text}\n{reaches}{classes}".encode()


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install(site: Path, version: str = "3.99.0", name: str = "keras") -> Path:
    """Write the fake keras ``version`` into ``site`` (a site-packages folder); ``site``.

    ``name="tf_keras"``: a fake tf_keras (Keras 2 layout) instead.
    """
    rows = []
    for relative in TF_KERAS_FILES if name == "tf_keras" else FILES:
        data = source(relative)
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(f"{relative},{record_hash(data)},{len(data)}")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    rows += [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    return site


def install_conda(root: Path, version: str = "3.99.0", installer: str = "conda", record_hashes: bool = True) -> Path:
    """The fake keras as conda lays out a noarch package (docs/conda.md): the package
    extracted in ``root/pkgs/``, its files hard-linked into the environment ``root/envs/ml``,
    and ``conda-meta/keras-VERSION-pyh0_0.json`` listing each with its sha256; the
    environment's site-packages folder.

    ``installer``: what the dist-info's INSTALLER says (conda rewrites pip's to
    ``conda``); ``record_hashes=False``: a RECORD without hashes (then conda-meta's serve).
    """
    import json

    prefix, build = root / "envs" / "ml", "pyh0_0"
    site = prefix / "lib" / "python3.11" / "site-packages"
    extracted = root / "pkgs" / f"keras-{version}-{build}"
    install(extracted / "site-packages", version)
    info = extracted / "site-packages" / f"keras-{version}.dist-info"
    (info / "INSTALLER").write_text(installer)
    if not record_hashes:
        rows = [line.split(",")[0] for line in (info / "RECORD").read_text().splitlines()]
        (info / "RECORD").write_text("".join(f"{row},,\n" for row in rows))
    paths = []
    for source in sorted((extracted / "site-packages").rglob("*")):
        if source.is_file():
            relative = f"lib/python3.11/site-packages/{source.relative_to(extracted / 'site-packages').as_posix()}"
            (prefix / relative).parent.mkdir(parents=True, exist_ok=True)
            os.link(source, prefix / relative)  # (Path.hardlink_to: Python 3.10 and newer)
            sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
            paths.append({"_path": relative, "path_type": "hardlink", "sha256": sha256, "sha256_in_prefix": sha256,
                          "size_in_bytes": source.stat().st_size})  # fmt: skip
    record = {
        "name": "keras", "version": version, "build": build, "build_number": 0, "noarch": "python",
        "channel": "https://conda.anaconda.org/conda-forge", "subdir": "noarch", "fn": f"keras-{version}-{build}.conda",
        "files": [entry["_path"] for entry in paths], "paths_data": {"paths": paths, "paths_version": 1},
        "extracted_package_dir": str(extracted), "link": {"source": str(extracted), "type": 1},
        "requested_spec": "keras",
    }  # fmt: skip
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "conda-meta" / f"keras-{version}-{build}.json").write_text(json.dumps(record, indent=2))
    (prefix / "conda-meta" / "history").write_text("")
    return site
