"""Our own files in an environment: where each lives, its format, and reading it.

Everything convlstm-patch keeps lives in ``<site-packages>/.convlstm-patch/``,
a folder no RECORD lists (pip neither owns nor removes it; each environment
carries its own):

    backups/<distribution>-<version>/files/...   the originals (hard links where possible)
    backups/<distribution>-<version>/manifest.json   what the backup covers; present = complete
    layer-sets-<distribution>.json   the layer sets the user chose (outlives a version)
    journal.json                     a run under way: what it changes (patcher/transaction.py)
    journal-committed.json           the same, committed: renamed over journal.json to commit
    lock                             held by every run that writes

and, during a run, beside each file it changes, ``.NAME.convlstm-patch-kept.tmp`` (the
file replaced, kept) and ``.NAME.convlstm-patch-ours.tmp`` (the file written).

Reading is validated here: a file that does not match its schema is a
BackupProblem (exit 8), and nothing is changed. Only patcher/transaction.py
writes or deletes these files; patcher/snapshot.py reads them, once per run.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from patcher import errors
from patcher.enums import TextEnum
from patcher.environment import DISTRIBUTIONS, Flavour, installed_distributions
from patcher.hashing import sha256_hex
from patcher.layersets import LayerSet, from_names, ordered

STATE_FOLDER = ".convlstm-patch"
_HEX = re.compile(r"[0-9a-f]{64}")


def state_folder(site: Path) -> Path:
    return site / STATE_FOLDER


def lock_file(site: Path) -> Path:
    return state_folder(site) / "lock"


def backups_root(site: Path) -> Path:
    return state_folder(site) / "backups"


def backup_folder(flavour: Flavour) -> Path:
    return backups_root(flavour.site) / flavour.key


def backup_copy(flavour: Flavour, relative: str) -> Path:
    return backup_folder(flavour) / "files" / relative


def manifest_path(flavour: Flavour) -> Path:
    return backup_folder(flavour) / "manifest.json"


def chosen_path(flavour: Flavour) -> Path:
    return state_folder(flavour.site) / f"layer-sets-{flavour.distribution}.json"


def journal_path(site: Path) -> Path:
    """The journal of the run under way in this site folder: one per environment and run."""
    return state_folder(site) / "journal.json"


def commit_path(site: Path) -> Path:
    """The journal as committed, written before the first change: committing is renaming it
    over the journal, which needs no new disk space."""
    return state_folder(site) / "journal-committed.json"


def kept_path(site: Path, relative: str) -> Path:
    """Where a run keeps the file it replaces or deletes, until it commits: beside it (the same
    file system, so keeping and putting back are a hard link and a rename, no new space)."""
    path = site / relative
    return path.with_name(f".{path.name}.convlstm-patch-kept.tmp")


def ours_path(site: Path, relative: str) -> Path:
    """A hard link to the file a run wrote, until it commits: recovery puts back only a file
    that is still this very one, not one pip (or anyone) put there since, even with the same bytes."""
    path = site / relative
    return path.with_name(f".{path.name}.convlstm-patch-ours.tmp")


def require_state_folder(site: Path) -> None:
    """Our folder must be a folder: a file of that name is someone else's (exit 12)."""
    folder = state_folder(site)
    if folder.exists() and not folder.is_dir():
        raise errors.UnsafePath(
            f"{folder} is a file where convlstm-patch keeps its folder; nothing was changed. Rename it if it is "
            f"yours, then delete {folder} and run again"
        )


# convlstm-patch 0.1 (before one journal per environment): a journal and a set-aside folder per distribution.
LEGACY_NAMES = tuple(
    name for distribution in DISTRIBUTIONS for name in (f"journal-{distribution}.json", f"set-aside-{distribution}")
)


def refuse_legacy_runs(site: Path, reinstall: str) -> None:
    """A run of convlstm-patch 0.1 interrupted here cannot be settled by this version: say what
    puts Keras right and what to delete (exit 8)."""
    folder = state_folder(site)
    left = sorted(path for pattern in LEGACY_NAMES for path in folder.glob(pattern)) if folder.is_dir() else []
    if left:
        deletes = " and ".join(f"delete {path}" for path in left)
        raise errors.BackupProblem(
            f"a run of an earlier convlstm-patch was interrupted in {site} and left {len(left)} file(s) this version "
            f"cannot settle; nothing was changed. Reinstall Keras there ({reinstall or 'as you installed it'}), then "
            f"{deletes}"
        )


# -- the backup's manifest ------------------------------------------------------


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
    layer_sets: tuple[LayerSet, ...]  # the sets patched
    # The originals were patched with --force although they differed from
    # RECORD; otherwise a backup that does not match RECORD is never restored.
    forced: bool = False

    def file(self, relative: str) -> BackedUpFile | None:
        return next((entry for entry in self.files if entry.path == relative), None)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "layer_sets": [str(layer_set) for layer_set in self.layer_sets]}


def manifest_from_json(data: Any, flavour: Flavour) -> Manifest:
    """A manifest, checked against its schema and against the flavour; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    text = ("distribution", "version", "layout", "tool_version", "created")
    missing = [key for key in (*text, "files", "layer_sets") if key not in data]
    if missing:
        raise ValueError(f"no {missing[0]!r}")
    if not all(isinstance(data[key], str) for key in text) or not isinstance(data.get("forced", False), bool):
        raise ValueError("a field has the wrong type")
    unknown = set(data) - {*text, "files", "layer_sets", "forced"}
    if unknown:
        raise ValueError(f"unknown field {min(unknown)!r}")
    if (data["distribution"], data["version"]) != (flavour.distribution, flavour.version):
        raise ValueError(f"it is for {data['distribution']} {data['version']}, not {flavour.key}")
    layer_sets = from_names(data["layer_sets"])
    entries = data["files"]
    if not isinstance(entries, list) or not entries:
        raise ValueError("it lists no files, so nothing can be restored from it")
    files = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"path", "before", "after"}:
            raise ValueError("a file entry is not {path, before, after}")
        if not all(isinstance(entry[key], str) for key in entry) or not all(
            _HEX.fullmatch(entry[key]) for key in ("before", "after")
        ):
            raise ValueError(f"the entry of {entry.get('path')!r} is not a path with two sha256")
        files.append(BackedUpFile(**entry))
    listed = [entry.path for entry in files]
    covered = {target.relative for target in flavour.files_of(layer_sets)}
    if len(set(listed)) != len(listed) or set(listed) != covered:
        odd = sorted(set(listed) ^ covered) or listed
        raise ValueError(
            f"its files do not match its layer sets ({', '.join(map(str, layer_sets))}): {odd[0]} "
            + ("is listed twice" if len(set(listed)) != len(listed) else "differs")
        )
    return Manifest(**{**data, "files": tuple(files), "layer_sets": ordered(layer_sets)})


def read_manifest(flavour: Flavour) -> Manifest | None:
    """The backup's manifest (None: no backup), validated."""
    path = manifest_path(flavour)
    try:
        return manifest_from_json(json.loads(path.read_text(encoding="utf-8")), flavour)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        damage = f"backup manifest {path} is not valid ({_reason(error)})"
        raise errors.BackupProblem(
            f"{damage}; nothing was changed. Restore Keras with `{flavour.reinstall_command}` and delete {path.parent}",
            damage,
        ) from None


def read_originals(flavour: Flavour, manifest: Manifest) -> dict[str, bytes]:
    """The backed-up originals, each checked against the manifest and RECORD (unless forced)."""
    originals = {}
    for entry in manifest.files:
        target = next(target for target in flavour.files if target.relative == entry.path)
        try:
            data = backup_copy(flavour, entry.path).read_bytes()
        except OSError:
            data = None
        if data is None or sha256_hex(data) != entry.before:
            problem = "is missing or does not match its manifest"
        elif target.record_sha256 not in (None, entry.before) and not manifest.forced:
            problem = f"does not match the RECORD of {flavour.key}"
        else:
            originals[entry.path] = data
            continue
        damage = f"the backup of {entry.path} in {backup_folder(flavour)} {problem}"
        raise errors.BackupProblem(
            f"{damage}; nothing was changed. Restore Keras with `{flavour.reinstall_command}`", damage
        )
    return originals


# -- the layer sets the user chose ----------------------------------------------


def read_chosen(flavour: Flavour) -> tuple[LayerSet, ...]:
    """The layer sets `apply` patched last in this environment, kept across versions (none: never chosen)."""
    path = chosen_path(flavour)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or set(data) != {"layer_sets"}:
            raise ValueError("not {layer_sets}")
        return ordered(from_names(data["layer_sets"]))
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as error:
        raise errors.BackupProblem(
            f"{path} is not valid ({_reason(error)}); nothing was changed. Delete it and run again "
            "(`apply --layers` chooses the layer sets anew)"
        ) from None


def chosen_json(layer_sets: tuple[LayerSet, ...]) -> dict[str, Any]:
    return {"layer_sets": [str(layer_set) for layer_set in layer_sets]}


# -- the journal of a run under way ---------------------------------------------


class Operation(TextEnum):
    APPLY = "apply"
    REVERT = "revert"


class Phase(TextEnum):
    STARTED = "started"  # files may be half-way: an interrupted run is rolled back
    COMMITTED = "committed"  # every file is final: only cleanup is left, which recovery finishes


@dataclass(frozen=True)
class Binding:
    """What a run found installed, per flavour: recovery touches a distribution's files only
    while this is still what is installed (pip has not replaced, removed or reinstalled it)."""

    distribution: str
    version: str
    dist_info: str  # the dist-info folder's name, in the site folder
    record: str  # identity of the RECORD pip wrote: "<sha256>:<inode>:<mtime ns>" (a reinstall writes a new one)


@dataclass(frozen=True)
class Entry:
    """One file a run changes, with the sha256 it expects before and leaves after (None: absent)."""

    path: str  # relative to the site folder
    before: str | None
    after: str | None
    distribution: str  # the flavour it belongs to
    package: bool  # a file of the distribution (pip's); else one of ours in the state folder
    covers: str | None = None  # a backup copy: the package file it holds the original of


@dataclass(frozen=True)
class Journal:
    """What one run changes in one site folder, written before its first change, removed after its last.

    One per environment and run: every flavour the run changes is in it, so
    they change together (one commit point: ``commit_path`` renamed over it).
    """

    operation: Operation
    layer_sets: tuple[LayerSet, ...]  # the sets the run acts on (for messages)
    bindings: tuple[Binding, ...]
    entries: tuple[Entry, ...]
    phase: Phase = Phase.STARTED

    def to_json(self) -> dict[str, Any]:
        return {
            "format": JOURNAL_FORMAT,
            "operation": str(self.operation),
            "layer_sets": [str(layer_set) for layer_set in self.layer_sets],
            "bindings": [asdict(binding) for binding in self.bindings],
            "entries": [asdict(entry) for entry in self.entries],
            "phase": str(self.phase),
        }

    @property
    def description(self) -> str:
        """``apply --layers convlstm,gru``: what the interrupted run was, for messages."""
        if self.operation == Operation.REVERT or self.layer_sets in ((), (LayerSet.CONVLSTM,)):
            return str(self.operation)
        return f"{self.operation} --layers {','.join(map(str, self.layer_sets))}"


JOURNAL_FORMAT = 3


def journal_from_json(data: Any) -> Journal:
    """A journal, checked against its schema; ValueError says what is wrong."""
    if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
        raise ValueError("not a journal of this convlstm-patch")
    if set(data) != {"format", "operation", "layer_sets", "bindings", "entries", "phase"}:
        raise ValueError("unexpected fields")
    bindings = tuple(
        Binding(**_fields(item, {"distribution", "version", "dist_info", "record"})) for item in _list(data["bindings"])
    )
    entries = []
    for item in _list(data["entries"]):
        item = _fields(item, {"path", "before", "after", "distribution", "package", "covers"}, optional={"covers"})
        if not isinstance(item["path"], str) or not isinstance(item["package"], bool):
            raise ValueError("an entry has the wrong type")
        if not all(
            item.get(key) is None or (isinstance(item[key], str) and _HEX.fullmatch(item[key]))
            for key in ("before", "after")
        ):
            raise ValueError(f"the entry of {item['path']!r} has no valid sha256")
        if Path(item["path"]).is_absolute() or ".." in Path(item["path"]).parts:
            raise ValueError(f"the entry {item['path']!r} leaves the site folder")
        entries.append(Entry(**item))
    return Journal(
        operation=Operation(data["operation"]),
        layer_sets=tuple(LayerSet(name) for name in _list(data["layer_sets"])),
        bindings=bindings,
        entries=tuple(entries),
        phase=Phase(data["phase"]),
    )


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise ValueError("a list is not a list")
    return value


def _fields(item: Any, names: set[str], optional: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(item, dict) or not (names - optional) <= set(item) <= names:
        raise ValueError(f"an item is not {{{', '.join(sorted(names))}}}")
    if any(not isinstance(item[key], (str, bool, type(None))) for key in item):
        raise ValueError("an item has the wrong type")
    return item


def read_journal(site: Path, reinstall: str = "") -> Journal | None:
    """The journal of a run under way or interrupted in this site folder (None: none).
    ``reinstall``: the commands that reinstall the Keras there, for the message."""
    path = journal_path(site)
    require_state_folder(site)
    refuse_legacy_runs(site, reinstall)
    try:
        return journal_from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        raise errors.BackupProblem(
            f"journal {path} is not valid ({_reason(error)}), so an interrupted run cannot be settled; nothing "
            f"was changed. Reinstall Keras there ({reinstall or 'keras and tf_keras, as you installed them'}) "
            f"and delete {path}"
        ) from None


# -- backups no longer restored -------------------------------------------------


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
    found = []
    for site in folders:
        root = backups_root(site)
        if not root.is_dir():
            continue
        installed = installed_distributions(site)
        for folder in sorted(root.iterdir()):
            name, _, version = folder.name.rpartition("-")
            package = DISTRIBUTIONS.get(name)
            if (
                folder.is_dir()
                and package
                and version[:1].isdigit()
                and only in (None, package)
                and name not in installed
            ):
                found.append(folder)
    return found


def _reason(error: Exception) -> str:
    if isinstance(error, ValueError) and str(error) and not isinstance(error, json.JSONDecodeError):
        return str(error)
    return type(error).__name__
