"""The world of the crash-consistency simulation (tests/test_simulation.py).

A site-packages folder with a fake keras and a fake tf_keras (tests/fake_keras.py),
each file's bytes naming its distribution and version, so a file of one version
can never pass for another's. The tool runs as users run it, through its command
line, each command in a forked child process (milliseconds: everything is already
imported), where a fault can strike at any file operation:

- ``KILL``: SIGKILL, for real: the kernel ends the process, no ``finally`` runs;
- ``ENOSPC``: the disk is full from there on: every operation that needs space
  fails (creating a file or folder, a hard link, fsync), while renames and
  deletions still work, as on a real full disk;
- ``EIO``: that one operation fails (a flaky disk or network file system);
- ``EACCES``: from there on every change fails (permissions taken away);
- ``STOP``: SIGSTOP, so another command can run beside a writer held mid-change.

Only the parts that need Keras are stand-ins, in the parent before it forks:
the transform (``planning.patch_sources``: appends one line naming the layer
sets), the fused-kernel audit (nothing to guard in a fake), and the probe
(``verification.verify_all``: passes, or fails when told to). Everything else,
the lock, the journal, the snapshot, the backup, recovery, is the real code.

pip's own actions (install another version, uninstall, force-reinstall, a
``~``-named leftover of an interrupted upgrade) and hand edits are done here
directly on the files, as pip and an editor do them: new files by rename, never
writing into an existing one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import fake_keras

from patcher import errors
from patcher.marker import MARKER_PREFIX

VERSIONS = {"keras": ("3.98.0", "3.99.0"), "tf_keras": ("2.98.0", "2.99.0")}
FILES = {"keras": tuple(fake_keras.FILES), "tf_keras": tuple(fake_keras.TF_KERAS_FILES)}
PATCH_LINE = b"# simulated patch: "
STATE = ".convlstm-patch"
# Documented in README's exit-code table.
EXIT_CODES = {0, *errors.ExitCode}
OWNER = 1000  # as root, the site belongs to this user: the tool must keep every owner
COMMAND_TIMEOUT = 60.0  # seconds: a command that takes longer has hung


def pristine(name: str, version: str, relative: str) -> bytes:
    return fake_keras.source(relative, f"{name} {version}")


# Our output starts with the marker, as the real transform's does (patcher/marker.py): the tool
# tells its own output from a hand edit by it.
MARKER_LINE = MARKER_PREFIX.encode() + b" (simulated)\n"


def simulated_patch(original: bytes, layer_sets) -> bytes:
    return MARKER_LINE + original + PATCH_LINE + ",".join(sorted(map(str, layer_sets))).encode() + b"\n"


def base_of(data: bytes) -> bytes:
    """What a file was before the simulated patch (itself when not patched)."""
    index = data.rfind(PATCH_LINE)
    if not data.startswith(MARKER_LINE) or index < 0 or not data.endswith(b"\n"):
        return data
    return data[len(MARKER_LINE) : index]


# -- the stand-ins for what needs Keras ------------------------------------------------------


class Probe:
    fails = False  # set by the parent before it forks
    fills_the_disk = False  # the disk is full from the moment the probe runs (another program filled it)


def install_stand_ins() -> None:
    """Replace the transform, the audit and the probe (module attributes: callers look them up)."""
    # Imported once here, not in every forked command (what the commands import late).
    import filelock  # noqa: F401

    import patcher.cli  # noqa: F401
    from patcher import checking, planning, verification
    from patcher.layersets import LayerSet

    def patch_sources(flavour, items):
        patched = {}
        for target, original, layer_sets in items:
            applied = sorted(str(s) for s in set(layer_sets) & target.layer_sets)
            patched[target.relative] = simulated_patch(original, applied)
        return patched, []

    def verify_all(items, options):
        if Probe.fills_the_disk:
            _faults["struck"], _faults["fault"] = True, Fault.ENOSPC
        check = verification.ProbeCheck("simulated", not Probe.fails, "the simulated probe", LayerSet.CONVLSTM)
        return [verification.Report(item.flavour, None, [check]) for item in items]

    planning.patch_sources = patch_sources
    checking.patch_sources = patch_sources
    planning.require_guarded = lambda flavour, patched, layer_sets: None
    verification.verify_all = verify_all


# -- faults at file operations -----------------------------------------------------------------


class Fault(Enum):
    KILL = "kill"
    ENOSPC = "enospc"
    EIO = "eio"
    EACCES = "eacces"
    EROFS = "erofs"  # the file system is read-only from there on (a read-only bind mount)
    INTERRUPT = "interrupt"  # Ctrl-C there, and again two operations later (in the rollback)
    STOP = "stop"
    # From there on no hard links and no atomic swap: a vfat or exFAT folder, a VirtualBox share,
    # or fs.protected_hardlinks refusing links to files another user owns (a shared conda pkgs/).
    NO_LINKS = "no-links"


# Operations that change the file system, and those of them that need new space.
CHANGING = ("replace", "rename", "link", "unlink", "remove", "rmdir", "mkdir", "fsync", "chmod", "chown", "open")
NEEDS_SPACE = {"link", "mkdir", "fsync", "open"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


_faults: dict = {"count": 0, "struck": False, "fault": None}


def _inject(fault: Fault | None, at: int) -> None:
    """In the child: count every changing file operation; the ``at``-th one meets the fault."""
    state = _faults
    state.update(count=0, struck=False, fault=fault)

    def wrap(name, function):
        def operation(*args, **kwargs):
            if name == "open":
                flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
                if not flags & _WRITE_FLAGS:
                    return function(*args, **kwargs)
            state["count"] += 1
            fault = state["fault"]
            if fault is not None and state["count"] == at:
                state["struck"] = True
                if fault is Fault.KILL:
                    os.kill(os.getpid(), signal.SIGKILL)
                if fault is Fault.STOP:
                    os.kill(os.getpid(), signal.SIGSTOP)
                if fault is Fault.EIO:
                    raise OSError(errno.EIO, os.strerror(errno.EIO), args[0] if args else None)
                if fault is Fault.INTERRUPT:
                    os.kill(os.getpid(), signal.SIGINT)
            if fault is Fault.INTERRUPT and state["count"] == at + 2:
                os.kill(os.getpid(), signal.SIGINT)
            if state["struck"]:
                if fault is Fault.NO_LINKS and name == "link":
                    raise OSError(errno.EPERM, os.strerror(errno.EPERM), args[0] if args else None)
                if fault is Fault.ENOSPC and name in NEEDS_SPACE:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), args[0] if args else None)
                if fault in (Fault.EACCES, Fault.EROFS):
                    code = errno.EACCES if fault is Fault.EACCES else errno.EROFS
                    raise OSError(code, os.strerror(code), args[0] if args else None)
            return function(*args, **kwargs)

        return operation

    for name in CHANGING:
        setattr(os, name, wrap(name, getattr(os, name)))
    if fault is Fault.NO_LINKS:
        import patcher.fsops

        swap = patcher.fsops._exchange
        patcher.fsops._exchange = lambda first, second: False if state["struck"] else swap(first, second)


# -- running a command -----------------------------------------------------------------------


@dataclass
class Run:
    args: tuple[str, ...]
    exit_code: int | None  # None: killed
    stdout: str = ""
    stderr: str = ""
    pid: int = 0
    files: Path | None = field(default=None, repr=False)
    operations: int = 0  # file operations that change something, counted (when it was not killed)

    @property
    def killed(self) -> bool:
        return self.exit_code is None


def start(args: list[str], fault: Fault | None, at: int, scratch: Path) -> Run:
    """Fork a child that runs ``convlstm-patch ARGS``; returns at once (the child may be stopped)."""
    scratch.mkdir(parents=True, exist_ok=True)
    out, err = scratch / "stdout", scratch / "stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            for fd, path in ((1, out), (2, err)):
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(handle, fd)
                os.close(handle)
            # pytest's capture replaced sys.stdout/stderr with its own files: write to the fds.
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            os.environ["NO_COLOR"] = "1"
            _inject(fault, at)
            from patcher.cli import main

            try:
                main.main(args=args, prog_name="convlstm-patch", standalone_mode=True)
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        except BaseException as error:  # noqa: BLE001  (a crash of the harness, not of the tool: exit 70 says so)
            try:
                os.write(2, f"\nsimulation harness: {type(error).__name__}: {error}\n".encode())
            except OSError:
                pass
            code = 70
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            with open(scratch / "operations", "w") as handle:
                handle.write(str(_faults["count"]))
            os._exit(code)
    return Run(tuple(args), None, pid=pid, files=scratch)


def wait(run: Run, *, stopped_ok: bool = False) -> Run:
    """Wait for the child to end (or, with ``stopped_ok``, to stop); read what it printed."""
    deadline = time.monotonic() + COMMAND_TIMEOUT
    flags = os.WNOHANG | (os.WUNTRACED if stopped_ok else 0)
    while True:
        pid, status = os.waitpid(run.pid, flags)
        if pid:
            break
        if time.monotonic() > deadline:
            os.kill(run.pid, signal.SIGKILL)
            os.waitpid(run.pid, 0)
            raise AssertionError(f"`convlstm-patch {' '.join(run.args)}` hung for {COMMAND_TIMEOUT:.0f} s")
        time.sleep(0.001)
    if os.WIFSTOPPED(status):
        run.exit_code = None
        return run
    run.exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL, f"the tool died of signal {os.WTERMSIG(status)}"
    operations = run.files / "operations"
    run.operations = int(operations.read_text()) if operations.exists() else 0
    run.stdout = (run.files / "stdout").read_text(errors="replace")
    run.stderr = (run.files / "stderr").read_text(errors="replace")
    assert run.exit_code != 70, f"the simulation harness failed in `{' '.join(run.args)}`:\n{run.stderr}"
    return run


def resume(run: Run) -> Run:
    os.kill(run.pid, signal.SIGCONT)
    return wait(run)


def kill(run: Run) -> Run:
    os.kill(run.pid, signal.SIGKILL)
    return wait(run)


# -- pip's own actions, done as pip does them ------------------------------------------------


def dist_info(site: Path, name: str) -> Path | None:
    found = sorted(site.glob(f"{name}-*.dist-info"))
    return found[0] if found else None


def installed_version(site: Path, name: str) -> str | None:
    info = dist_info(site, name)
    return info.name[len(name) + 1 : -len(".dist-info")] if info else None


# The mode every package file has as pip (or a hand edit) leaves it here: not what a new file
# gets (0o644 under the usual umask), so a write that loses a file's mode is seen.
MODE = 0o640
_modes: dict[str, int | None] = {}  # a mode given by hand since pip last wrote the file (None: deleted)


def give_mode(path: Path, mode: int) -> None:
    path.chmod(mode)
    _modes[_key(path)] = mode


def forget_mode(path: Path) -> None:
    """Deleted by hand: a file the tool puts back (from the backup, or anew) may have any mode."""
    _modes[_key(path)] = None


def expected_mode(path: Path) -> int | None:
    return _modes.get(_key(path), MODE)


def _key(path: Path) -> str:
    """One name per file, however it is spelled (a message's path, a copy's, a symlinked folder)."""
    return os.path.realpath(path)


def _replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)  # a folder where the file belongs (made by hand): pip replaces it
    temp = path.with_name(path.name + ".pip-tmp")
    temp.write_bytes(data)
    temp.chmod(MODE)
    temp.replace(path)
    _modes.pop(_key(path), None)


def pip_install(site: Path, name: str, version: str) -> None:
    """pip install NAME==VERSION (an upgrade, downgrade or force-reinstall): new files by rename,
    a new dist-info, the old one removed."""
    rows = []
    for relative in FILES[name]:
        data = pristine(name, version, relative)
        _replace(site / relative, data)
        rows.append(f"{relative},{fake_keras.record_hash(data)},{len(data)}")
    old = dist_info(site, name)
    if old is not None:
        shutil.rmtree(old)
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("\n".join([*rows, f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]) + "\n")


def conda_relink(site: Path, name: str) -> None:
    """`conda install --force-reinstall NAME`: every file of the package linked again from conda's
    package cache (new inodes, the same bytes; RECORD too, so its own inode is the cache's)."""
    version = installed_version(site, name)
    if version is None:
        return
    cache = site.parent / "pkgs" / f"{name}-{version}"
    for relative in FILES[name]:
        kept = cache / relative
        if not kept.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_bytes(pristine(name, version, relative))
            kept.chmod(MODE)
        temp = (site / relative).with_name(f"{relative.rsplit('/', 1)[1]}.conda-tmp")
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        temp.unlink(missing_ok=True)
        if (site / relative).is_dir() and not (site / relative).is_symlink():
            shutil.rmtree(site / relative)
        os.link(kept, temp)
        temp.replace(site / relative)
        _modes.pop(_key(site / relative), None)


def old_journal(site: Path, name: str) -> None:
    """What convlstm-patch 0.1 (eac698d) left when killed in a run: a journal per distribution
    and its set-aside folder, in its own format."""
    state = site / STATE
    (state / f"set-aside-{name}").mkdir(parents=True, exist_ok=True)
    relative = FILES[name][0]
    version = installed_version(site, name) or "0"
    (state / f"set-aside-{name}" / relative.replace("/", "%")).write_bytes(pristine(name, version, relative))
    journal = {
        "operation": "apply", "layer_sets": ["convlstm"], "phase": "started",
        "files": [{"path": relative, "before": None, "after": "0" * 64}],
        "manifest_before": None, "manifest_after": None, "remembered_before": [], "remembered_after": [],
    }  # fmt: skip
    (state / f"journal-{name}.json").write_text(json.dumps(journal))


def pip_uninstall(site: Path, name: str) -> None:
    """pip uninstall NAME: its files, the folders they leave empty, and its dist-info."""
    shutil.rmtree(site / name, ignore_errors=True)  # the fake package holds only its RECORD's files
    old = dist_info(site, name)
    if old is not None:
        shutil.rmtree(old)


def pip_leftover(site: Path, name: str, version: str) -> None:
    """What pip leaves when an upgrade is interrupted: the other version's dist-info under a ``~`` name."""
    info = site / f"~{name[1:]}-{version}.dist-info"
    if info.exists():
        return
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    rows = [f"{r},{fake_keras.record_hash(pristine(name, version, r))},1" for r in FILES[name]]
    (info / "RECORD").write_text("\n".join(rows) + "\n")


# -- reading the world -----------------------------------------------------------------------


def tree(site: Path) -> dict[str, str]:
    """Every file the tool or pip owns, with its sha256: what "nothing changed" compares.
    Not bytecode, the lock file, or temp files (a killed write's leftovers, swept later);
    a folder, FIFO or unreadable file where a file belongs counts by its kind."""
    import hashlib

    found = {}
    for path in sorted(site.rglob("*")):
        relative = str(path.relative_to(site))
        if "__pycache__" in path.parts or path.name == "lock" or path.name.endswith(".tmp"):
            continue
        data = read(path)
        if data is not None:
            found[relative] = hashlib.sha256(data).hexdigest()
        elif not path.is_dir():
            found[relative] = "special"
    return found


def read(path: Path) -> bytes | None:
    """A regular file's bytes (None: missing, a folder, a FIFO), never blocking on a FIFO."""
    import stat

    try:
        mode = path.lstat().st_mode
    except OSError:
        return None
    return path.read_bytes() if stat.S_ISREG(mode) else None


def copy_environment(site: Path, copy: Path, hard_links: bool) -> None:
    """`cp -a` (keeps hard links within the copy) or `rsync -a` (does not): the whole folder."""
    import subprocess

    copy.parent.mkdir(parents=True, exist_ok=True)
    keep = "--preserve=all" if hard_links else "--preserve=mode,ownership,timestamps,xattr"
    subprocess.run(["cp", "-R", "--no-dereference", keep, str(site), str(copy)], check=True)
    for name, mode in list(_modes.items()):
        if Path(name).is_relative_to(_key(site)):
            _modes[_key(copy / Path(name).relative_to(_key(site)))] = mode


def temp_files(site: Path) -> list[str]:
    return [str(p.relative_to(site)) for p in site.rglob("*.tmp")]


def empty_backup_folders(site: Path) -> list[str]:
    root = site / STATE / "backups"
    # (A killed run's temp folder is a temp file: the temp-file promise and the next writer's sweep cover it.)
    return (
        [
            str(p.relative_to(site))
            for p in root.rglob("*")
            if p.is_dir() and not any(p.iterdir()) and p.suffix != ".tmp"
        ]
        if root.is_dir()
        else []
    )


def journals(site: Path) -> list[str]:
    """This version's journal files (an older version's are its leftovers: refused, not ours to remove)."""
    folder = site / STATE
    return (
        [
            str(p.relative_to(site))
            for p in folder.glob("journal*.json")
            if p.name in ("journal.json", "journal-committed.json")
        ]
        if folder.is_dir()
        else []
    )


def owned_by_others(site: Path, owner: int) -> list[str]:
    """Files and folders not owned by ``owner``; a killed run's temp files (swept by the next run
    that writes, and deletable by the owner: they are in the owner's folders) do not count."""
    return [
        str(path.relative_to(site))
        for path in [site, *site.rglob("*")]
        if path.lstat().st_uid != owner and not path.name.endswith(".tmp")
    ]


def status_json(run: Run) -> dict:
    return json.loads(run.stdout)
