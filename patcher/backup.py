"""Backups of the pristine files, one folder per patched distribution version.

They live beside the environment's packages, in
``<site-packages>/.convlstm-patch/backups/<distribution>-<version>/``: a
folder no RECORD lists, so pip neither owns nor removes it, and each
environment carries its own. ``manifest.json`` records what was backed up.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from patcher import __version__, errors
from patcher.environment import Flavour
from patcher.fsops import atomic_write, ensure_folder, link_copy, remove_bytecode
from patcher.hashing import sha256_hex

STATE_FOLDER = ".convlstm-patch"


@dataclass(frozen=True)
class BackedUpFile:
    path: str  # relative to site-packages, as in RECORD
    before: str  # sha256 hex of the original
    after: str  # sha256 hex of our patched output


@dataclass(frozen=True)
class Manifest:
    distribution: str
    version: str
    layout: str
    tool_version: str
    created: str
    files: tuple[BackedUpFile, ...]
    # The originals were patched with --force although they differed from
    # RECORD; otherwise a backup that does not match RECORD is never restored.
    forced: bool = False
    # The layer sets patched (`apply --layers`); a manifest written before
    # layer sets existed covers ConvLSTM only.
    layer_sets: tuple[str, ...] = ("convlstm",)

    def file(self, relative: str) -> BackedUpFile | None:
        return next((entry for entry in self.files if entry.path == relative), None)


def backups_root(site: Path) -> Path:
    return site / STATE_FOLDER / "backups"


def backup_folder(flavour: Flavour) -> Path:
    return backups_root(flavour.site) / flavour.key


def backup_copy(flavour: Flavour, relative: str) -> Path:
    return backup_folder(flavour) / "files" / relative


def new_manifest(flavour: Flavour, files: tuple[BackedUpFile, ...]) -> Manifest:
    record = {target.relative: target.record_sha256 for target in flavour.files}
    return Manifest(
        forced=any(record.get(entry.path) not in (None, entry.before) for entry in files),
        distribution=flavour.distribution,
        version=flavour.version,
        layout=flavour.layout.name,
        tool_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        files=files,
        layer_sets=tuple(str(layer_set) for layer_set in flavour.layer_sets),
    )


def read_manifest(flavour: Flavour) -> Manifest | None:
    path = backup_folder(flavour) / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(
            **{
                **data,
                "files": tuple(BackedUpFile(**entry) for entry in data["files"]),
                "layer_sets": tuple(data.get("layer_sets", ("convlstm",))),
            }
        )
    except FileNotFoundError:
        return None  # no backup (or a concurrent revert just removed it)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise errors.BackupProblem(
            f"backup manifest {path} is not valid ({type(error).__name__}); "
            f"reinstall {flavour.distribution}=={flavour.version} and delete {path.parent}"
        ) from None
    if not manifest.files:
        raise errors.BackupProblem(
            f"backup manifest {path} lists no files, so nothing can be restored from it; "
            f"reinstall {flavour.distribution}=={flavour.version} and delete {path.parent}"
        )
    if (manifest.distribution, manifest.version) != (flavour.distribution, flavour.version):
        raise errors.BackupProblem(
            f"backup manifest {path} is for {manifest.distribution} {manifest.version}, "
            f"not {flavour.key}; delete {path.parent}"
        )
    return manifest


def backed_up_sources(flavour: Flavour, manifest: Manifest) -> dict[str, bytes]:
    """Backup contents, each checked against the manifest and RECORD.

    Files of a layer set the manifest does not record (one being added by
    `apply --layers`) have no backup yet and are left out.
    """
    originals = {}
    for target in flavour.files:
        if str(target.layer_set) not in manifest.layer_sets:
            continue
        entry = manifest.file(target.relative)
        copy = backup_copy(flavour, target.relative)
        try:
            data = copy.read_bytes()
        except OSError:
            data = None
        if entry is None or data is None or sha256_hex(data) != entry.before:
            problem = "is missing or does not match its manifest"
        elif target.record_sha256 not in (None, entry.before) and not manifest.forced:
            problem = f"does not match the RECORD of {flavour.key}"
        else:
            originals[target.relative] = data
            continue
        raise errors.BackupProblem(
            f"the backup of {target.relative} in {backup_folder(flavour)} {problem}; nothing was changed. "
            f"Restore Keras with `{flavour.reinstall_command}`"
        )
    return originals


def original_sources(flavour: Flavour, manifest: Manifest | None) -> dict[str, bytes]:
    """The pre-patch bytes: from the backup when there is one, else the live files
    (also for a layer set the backup does not cover yet)."""
    originals = backed_up_sources(flavour, manifest) if manifest is not None else {}
    for target in flavour.files:
        if target.relative not in originals:
            originals[target.relative] = target.path.read_bytes()
    return originals


def restore_originals(flavour: Flavour, originals: dict[str, bytes]) -> list[str]:
    """Put back every target file that differs from its original; the ones restored.

    Each is a hard link of its backup copy (checked against ``originals``),
    so restoring needs no new disk space.
    """
    restored = []
    for target in flavour.files:
        data = originals.get(target.relative)
        if data is None:
            continue  # a layer set the backup does not cover: never patched
        if not target.path.exists() or target.path.read_bytes() != data:
            copy = backup_copy(flavour, target.relative)
            if copy.read_bytes() == data:
                link_copy(copy, target.path)
            else:
                atomic_write(target.path, data)
            restored.append(target.relative)
            remove_bytecode(target.path, best_effort=True)
    return restored


def write_backup(flavour: Flavour, originals: dict[str, bytes], manifest: Manifest) -> None:
    """Keep the originals, then write the manifest last: a manifest means a complete backup.

    An original that is the live file is kept as a hard link of it (no new
    disk space; apply then replaces the live path with a new file).
    """
    for relative, data in originals.items():
        copy = backup_copy(flavour, relative)
        ensure_folder(copy.parent)
        live = flavour.site / relative
        if live.exists() and live.read_bytes() == data:
            link_copy(live, copy)
        else:
            atomic_write(copy, data)
    atomic_write(backup_folder(flavour) / "manifest.json", (json.dumps(asdict(manifest), indent=2) + "\n").encode())


def remove_backup(flavour: Flavour) -> None:
    """Only transaction.rollback() calls this: it says when a backup is deleted, and why."""
    remove_backup_folder(backup_folder(flavour))


def remove_backup_folder(folder: Path) -> None:
    """Manifest first: a backup without its manifest is never trusted or restored."""
    (folder / "manifest.json").unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def stale_backups(flavour: Flavour) -> list[Path]:
    """Backups of other versions of this distribution: left by an upgrade."""
    root = backups_root(flavour.site)
    prefix = f"{flavour.distribution}-"
    return sorted(
        folder
        for folder in root.glob(f"{prefix}*")
        if folder.is_dir() and folder.name != flavour.key and folder.name[len(prefix) :][:1].isdigit()
    )


def orphaned_backups(folders: list[Path], only: str | None = None) -> list[Path]:
    """Backups in these site folders of a distribution no longer installed there at all (`pip uninstall`)."""
    from patcher.environment import FLAVOURS, find_flavours

    found = []
    for site in folders:
        root = backups_root(site)
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            name, _, version = folder.name.partition("-")
            if folder.is_dir() and name in FLAVOURS and version[:1].isdigit() and (only in (None, name)):
                if not find_flavours([str(site)], name):
                    found.append(folder)
    return found
