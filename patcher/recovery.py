"""Settling a run: the one undo, finishing after the commit point, and recovering the run a
kill cut short.

A run's journal (patcher/transaction.py writes it) is bound to what is installed (per
flavour: the distribution, version, dist-info and the sha256 of its RECORD) and names every
file it changes with the sha256 expected before and after. The one undo (:func:`undo`) puts a
kept file (``.NAME.convlstm-patch-kept.tmp``) back only where the live file is still the very
one the run wrote (its ``-ours`` hard link), and never into a distribution pip has replaced
since; so a file pip, conda or a user put there, even with the same bytes, is left as found. A
backup copy the run made goes only once the file it covers is its original again. Undo only
renames and deletes: it needs no new space. It runs at once when a write fails, the
verification fails or on Ctrl-C, and from the journal in the next command when the run died
(:func:`recover_all`, under the environment's lock).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from patcher import bytecode, errors, fsops, interrupts, pauses
from patcher.environment import Flavour
from patcher.hashing import sha256_hex
from patcher.store import (
    Binding,
    Entry,
    Journal,
    Phase,
    backups_root,
    commit_path,
    journal_path,
    kept_path,
    ours_path,
    read_journal,
    read_manifest,
    state_folder,
)


def binding(flavour: Flavour) -> Binding:
    """What is installed now: the distribution's dist-info and the sha256 of its RECORD."""
    return Binding(
        flavour.distribution, flavour.version, flavour.dist_info, record_identity(flavour.site, flavour.dist_info)
    )


def record_identity(site: Path, dist_info: str) -> str:
    """The sha256 of the RECORD pip wrote (its METADATA where it has none); empty when neither
    is there. (Content, not inode: an environment copied with its interrupted run is still
    the same install; a reinstall is told apart file by file, by what recovery finds.)"""
    if not dist_info:
        return ""
    for name in ("RECORD", "METADATA"):
        try:
            return sha256_hex((site / dist_info / name).read_bytes())
        except OSError:
            continue
    return ""


def _still_installed(site: Path, bound: Binding) -> bool:
    return bool(bound.record) and record_identity(site, bound.dist_info) == bound.record


def replaced_since(site: Path, journal: Journal) -> str | None:
    """A distribution pip replaced, reinstalled or removed under this run, said (None: none)."""
    for bound in journal.bindings:
        if not _still_installed(site, bound):
            return (
                f"pip (or another program) replaced, reinstalled or removed {bound.distribution} {bound.version} "
                "while convlstm-patch was working on it; this run was rolled back and left what it installed as it is. "
                "Run the command again once it has finished"
            )
    return None


def interference(site: Path, journal: Journal) -> str | None:
    """What another program changed under this run, once it has written every file (None:
    nothing): a distribution pip replaced, or a file that is not the one the run left there."""
    replaced = replaced_since(site, journal)
    if replaced is not None:
        return replaced
    for entry in journal.entries:
        path = site / entry.path
        if entry.after is None:
            intact = not path.exists()
        elif entry.package:
            intact = sha_of(path) == entry.after and fsops.is_kept(path, ours_path(site, entry.path), entry.after)
        else:
            intact = sha_of(path) == entry.after
        if not intact:
            return (
                f"{entry.path} was changed by another program while convlstm-patch was working on it; this run was "
                "rolled back and left that file as the other program left it. Run the command again once it has finished"
            )
    return None


# -- recovery -----------------------------------------------------------------------------------


def recover_all(
    flavours: Iterable[Flavour], said: list[str], pycache_prefix: Path | None = None, sites: Iterable[Path] = ()
) -> None:
    """Under the lock: settle the interrupted run of each site folder (the flavours', and
    ``sites``), and delete what killed writes left. What was done goes into ``said``, one line per
    flavour the run changed, as each part is done: a Ctrl-C after it (acted on when a deferred
    block ends) never loses what was already done."""
    flavours = list(flavours)
    for site in sorted({flavour.site for flavour in flavours} | set(sites)):
        journal = read_journal(site)
        if journal is not None:
            try:
                recover(site, journal, said, pycache_prefix)
            except errors.PatchError as failure:
                failure.message = (
                    f"cannot settle the convlstm-patch run interrupted in {site} ({failure.message}); nothing else was "
                    "changed, and the next convlstm-patch command tries again"
                )
                raise
    sweep_temp_files(flavours, said, pycache_prefix)


def recover(site: Path, journal: Journal, said: list[str], pycache_prefix: Path | None = None) -> None:
    """Settle a run that was cut short: undo it, or finish it after its commit point. Says which,
    into ``said``, before a Ctrl-C held meanwhile is acted on."""
    with interrupts.deferred():
        if journal.phase == Phase.COMMITTED:
            finish(site, journal)
            said += [
                f"{_key(bound)}: recovered an interrupted {journal.description}: it had completed; finished its cleanup"
                for bound in journal.bindings
            ]
        else:
            said += _undone(site, journal, undo(site, journal, pycache_prefix))


def _undone(site: Path, journal: Journal, left: dict[str, list[str]]) -> list[str]:
    """What an undo did, a line per distribution the run changed."""
    prefix = f"recovered an interrupted {journal.description}"
    notes = []
    for bound in journal.bindings:
        if not _still_installed(site, bound):
            notes.append(
                f"{_key(bound)}: {prefix}: pip has replaced, reinstalled or removed {bound.distribution} "
                f"{bound.version} since, so its files were left as pip installed them (a backup of it is "
                "removed by `convlstm-patch clean`)"
            )
        elif left.get(bound.distribution):
            notes.append(
                f"{_key(bound)}: {prefix}: rolled back, except {', '.join(left[bound.distribution])}, replaced since "
                "(by pip, a copy of the environment or by hand) and left as found, with its backup"
            )
        else:
            notes.append(f"{_key(bound)}: {prefix}: rolled back, every file is as it was before it")
    return notes


def undo(site: Path, journal: Journal, pycache_prefix: Path | None = None) -> dict[str, list[str]]:
    """The one undo: put every file back as it was before the run, by renames alone.

    A file is put back only where the live file is still the very one the run wrote, and
    never into a distribution pip has replaced since. A backup copy the run made stays (with
    the manifest and chosen sets it goes with) while the file it covers is not its original:
    an original is never lost. The journal goes last, so an undo that is itself cut short is
    done again by the next command. Returns, per distribution, the files left as found.
    """
    current = {bound.distribution: _still_installed(site, bound) for bound in journal.bindings}
    left: dict[str, list[str]] = {}
    for entry in reversed(journal.entries):
        if entry.package and current.get(entry.distribution, False):
            _put_back(site, entry, left, pycache_prefix)
    # A copy this run made covers a file that is still not its original: keep the backup as it is.
    keep = {
        entry.distribution
        for entry in journal.entries
        if entry.covers is not None and entry.before is None and sha_of(site / entry.covers) != entry.after
    }
    for entry in reversed(journal.entries):
        dropped_copy = entry.covers is not None and entry.after is None
        if not entry.package and (entry.distribution not in keep or dropped_copy):
            _put_back(site, entry, left, pycache_prefix)
    _clean_up(site, journal)
    for entry in journal.entries:
        if not entry.package:  # a backup this run began: no empty folders left of it
            fsops.delete_empty_folders((site / entry.path).parent, backups_root(site))
    fsops.delete(commit_path(site))
    fsops.delete(journal_path(site))
    return left


def _put_back(site: Path, entry: Entry, left: dict[str, list[str]], pycache_prefix: Path | None) -> None:
    """One file back as it was before the run, if the run's change is still there."""
    path, kept, ours = site / entry.path, kept_path(site, entry.path), ours_path(site, entry.path)
    live = sha_of(path)
    if entry.after is None:  # the run deleted it (kept it): back, unless something is there now
        if live == entry.before or path.exists():
            if live != entry.before:
                left.setdefault(entry.distribution, []).append(entry.path)
            return
        if sha_of(kept) == entry.before:
            try:
                fsops.put_back(kept, path)
            except fsops.Changed:
                left.setdefault(entry.distribution, []).append(entry.path)
        return
    written = live == entry.after and (not entry.package or fsops.is_kept(path, ours, entry.after))
    if not written:
        if live != entry.before:
            left.setdefault(entry.distribution, []).append(entry.path)
        return
    try:
        if entry.before is None:
            fsops.take_away(path, ours, entry.after)  # the run made it
        elif sha_of(kept) == entry.before:
            fsops.swap_in(kept, path, ours, entry.after)
        else:
            left.setdefault(entry.distribution, []).append(entry.path)
            return
    except fsops.Changed:
        left.setdefault(entry.distribution, []).append(entry.path)
        return
    if entry.package:
        bytecode.remove(path, pycache_prefix, best_effort=True)


def finish(site: Path, journal: Journal) -> None:
    """After the commit point: delete what the run kept (the files it replaced, the backup copies
    it dropped) and its links to what it wrote, the folders left empty, then the journal."""
    dropped = [entry for entry in journal.entries if entry.covers is not None and entry.after is None]
    if dropped:
        pauses.pause(pauses.BEFORE_BACKUP_DELETE)
    _clean_up(site, journal)
    for entry in dropped:
        fsops.delete_empty_folders((site / entry.path).parent, backups_root(site))
    fsops.delete(commit_path(site))
    fsops.delete(journal_path(site))


def _clean_up(site: Path, journal: Journal) -> None:
    for entry in journal.entries:
        fsops.delete(kept_path(site, entry.path))
        fsops.delete(ours_path(site, entry.path))


def delete_unneeded_backup(folder: Path) -> None:
    """`clean`: a backup never restored (another version's, or damaged and not needed).
    Manifest first: a backup without its manifest is never trusted or restored."""
    fsops.delete(folder / "manifest.json")
    fsops.delete_tree(folder)


# -- leftovers of killed writes --------------------------------------------------------------------


def temp_files_of(path: Path) -> list[Path]:
    """The temp files a killed write of ``path`` left (fsops names them .NAME.*.tmp)."""
    return list(path.parent.glob(f".{path.name}.*.tmp"))


def sweep_temp_files(flavours: Iterable[Flavour], said: list[str], pycache_prefix: Path | None) -> None:
    """Delete what killed writes left: temp files and folders, never a real one (under the
    lock: a running write's temp file is not a leftover); the originals it put back go into
    ``said``, a line each.

    A kept file holding the very original pip installed (RECORD's sha256) goes back first where
    the file beside it is still what a run wrote, untouched: that run's journal is gone (deleted
    by hand, taken for a stale lock), and the kept file may be the only original left. A file
    edited since, or put there by pip, stays as it is."""
    for flavour in flavours:
        for target in flavour.files:
            kept = kept_path(flavour.site, target.relative)
            if (
                target.record_sha256
                and not kept.is_symlink()
                and sha_of(kept) == target.record_sha256 != sha_of(target.path)
                and _our_output_untouched(flavour, target.relative)
            ):
                with interrupts.deferred():  # the move and what says it, together
                    quietly(lambda original, path=target.path: fsops.move(original, path), kept)
                    bytecode.remove(target.path, pycache_prefix, best_effort=True)
                    if sha_of(target.path) == target.record_sha256:
                        said.append(
                            f"{flavour.key}: {target.relative}: put back the original an interrupted convlstm-patch "
                            "run had kept beside it (the run's journal was gone)"
                        )
        # An original that could not go back stays beside its file until pip puts that file back
        # (then it is a leftover): apply and revert refuse our output with no backup (exit 8).
        leftovers = [
            path
            for target in flavour.files
            for path in temp_files_of(target.path)
            if not (
                path == kept_path(flavour.site, target.relative)
                and target.record_sha256
                and sha_of(path) == target.record_sha256 != sha_of(target.path)
            )
        ]
        folder = state_folder(flavour.site)
        if folder.is_dir():
            leftovers += folder.rglob(".*.tmp")
        leftovers += flavour.site.glob(f".{folder.name}.*.tmp")  # the state folder, made under a temp name
        for leftover in sorted(leftovers, key=lambda path: len(path.parts), reverse=True):
            # A symlink (to a folder too) is unlinked, never followed.
            quietly(fsops.delete_tree if leftover.is_dir() and not leftover.is_symlink() else fsops.delete, leftover)
            # A folder of a backup the undo could not delete while the leftover was in it.
            fsops.delete_empty_folders(leftover.parent, backups_root(flavour.site))


# -- small helpers ---------------------------------------------------------------------------------


def _our_output_untouched(flavour: Flavour, relative: str) -> bool:
    """Is the file what a run wrote, unedited? Its backup's manifest says what our output is. With
    no manifest (a first apply killed before writing it) nothing can tell: an edit made in place
    keeps the very file the run wrote."""
    path = flavour.site / relative
    try:
        manifest = read_manifest(flavour)
    except errors.BackupProblem:
        return False
    entry = manifest.file(relative) if manifest is not None else None
    return entry is not None and sha_of(path) == entry.after


def _key(bound: Binding) -> str:
    return f"{bound.distribution}-{bound.version}"


def sha_of(path: Path) -> str | None:
    """The sha256 of the regular file at ``path``; None when there is none (or something else)."""
    try:
        data = fsops.read_file(path)
    except fsops.Unreadable:
        return None
    return sha256_hex(data) if data is not None else None


def quietly(function, path: Path) -> None:
    try:
        function(path)
    except errors.PatchError:
        pass
