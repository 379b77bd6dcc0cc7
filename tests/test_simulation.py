"""A simulation instead of a list: random sequences of what users, pip and the machine do,
with the promises checked after every step (Hypothesis's RuleBasedStateMachine).

Rules are user commands (apply, revert, verify with layer sets on one or both
flavours; status, check, diff, clean), faults at any file operation of a command
(SIGKILL, a full disk, an I/O error, permissions taken away), pip's own actions
between a crash and the next command (another version, uninstall,
force-reinstall, a ``~`` leftover of an interrupted upgrade), hand edits, and a
reader running while a writer is held mid-change. The world is
tests/simulation.py: the real tool, forked per command, on a fake Keras.

The promises, checked after every step (docs/safety.md lists them with what
each rests on):

1. every file of an installed Keras is that version's pristine bytes, or our
   output made from them (or from a hand edit the user made since), never a
   half-written file and never another version's bytes;
2. whenever a file is patched, its original is kept: in the backup, or, while a
   run is under way or was killed, in its kept file beside it;
3. exit 7 means nothing changed; every exit code is a documented one;
4. errors are one ``Error:`` line, never the bug path or a traceback;
5. a command that ended (not killed) leaves no journal, kept or temp file,
   unless it says the next command finishes its rollback, nor a new
   empty backup folder;
6. owners and permission bits are kept (run as root on a user's environment;
   a hard link never made to take a new file's mode);
7. ``status`` tells the truth: the versions installed, and each file's state;
8. what a command says it did is done: ``apply`` exit 0 leaves the sets it
   patched patched, ``revert`` exit 0 leaves every file as pip installed it.

README's test command runs a bounded simulation (a fixed seed, under a minute);
``-m slow`` runs a long random one (CONVLSTM_PATCH_SIMULATION_EXAMPLES).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

import pytest
import simulation as sim
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from simulation import Fault

# A memory file system where there is one: fsync costs nothing there, and the simulation is
# about the order of operations, not the disk.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0
NAMES = ("keras", "tf_keras")
READERS = ("status", "check", "diff", "verify")
SETS = ("convlstm", "lstm", "gru")

only_flavour = st.sampled_from([None, "keras", "tf_keras"])
layer_sets = st.sampled_from([None, "convlstm", "convlstm,lstm", "lstm", "convlstm,lstm,gru", "gru"])
faults = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(
            [
                Fault.KILL,
                Fault.KILL,
                Fault.ENOSPC,
                Fault.EIO,
                Fault.EACCES,
                Fault.EROFS,
                Fault.INTERRUPT,
                Fault.NO_LINKS,
            ]
        ),
        st.integers(1, 70),
    ),
)
names = st.sampled_from(NAMES)


class Simulation(RuleBasedStateMachine):
    # What a run covered, across its sequences (printed by the tests: `pytest -s`).
    sequences: ClassVar[set[int]] = set()
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[tuple] = []
        self.root = Path(tempfile.mkdtemp(prefix="convlstm-patch-simulation-", dir=SCRATCH))
        self.site = self.root / "site-packages"
        self.step = 0
        # Bytes the user wrote into a file by hand since pip last installed it: allowed there.
        self.edits: dict[str, set[bytes]] = {}
        self.deleted: set[str] = set()  # files the user deleted by hand
        self.damaged: set[str] = set()  # distributions whose backup the user damaged by hand
        self.temp_before: set[str] = set()  # temp files there before the command (a killed run's)
        self.empty_before: set[str] = set()  # empty backup folders there before it (a killed run's)
        self.pip_left: dict[str, bytes | None] = {}  # files pip wrote since a kill, as it left them
        self.odd: set[str] = set()  # target paths the user made a folder, a FIFO or unreadable
        # The files before a writer that was killed, until the next command settles it (None:
        # no such writer, or pip or the user changed files since, so "as before" means nothing).
        self.before_kill: dict[str, bytes | None] | None = None

    @initialize(tf_keras=st.booleans())
    def install(self, tf_keras: bool) -> None:
        sim.pip_install(self.site, "keras", "3.99.0")
        if tf_keras:
            sim.pip_install(self.site, "tf_keras", "2.99.0")
        self._own()

    def teardown(self) -> None:
        Simulation.sequences.add(hash(tuple(self.trace)))
        Simulation.steps += len(self.trace)
        shutil.rmtree(self.root, ignore_errors=True)

    def _step(self, *what) -> None:
        self.trace.append(what)

    # -- running the tool ------------------------------------------------------------------

    def _args(self, command: str, only, layers, *extra: str) -> list[str]:
        args = [command, "--keras-root", str(self.site), "--lock-timeout", "0.5", *extra]
        if only:
            args += ["--only", only]
        if layers:
            args += ["--layers", layers]
        return args

    def _run(self, args: list[str], fault=None) -> sim.Run:
        if not sim.journals(self.site):
            self.pip_left = {}  # no run waits to be settled: what pip wrote is simply installed
        self._step(*args[:1], *args[5:], fault, sim.Probe.fails)
        self.step += 1
        before, journal_before, files_before = sim.tree(self.site), sim.journals(self.site), self._bytes()
        self.temp_before = set(sim.temp_files(self.site))
        self.empty_before = set(sim.empty_backup_folders(self.site))
        kind, at = fault if fault else (None, 0)
        run = sim.wait(sim.start(args, kind, at, self.root / "runs" / str(self.step)))
        self.tree_after_run = sim.tree(self.site)
        self._check_run(run, before, journal_before, fault=fault)
        self._settled_as_said(run, files_before)
        if run.exit_code == 8:
            self._advice_works(run)
        return run

    def _settled_as_said(self, run: sim.Run, files_before: dict) -> None:
        """A killed writer is settled the same way for every flavour, and as the tool says."""
        if run.killed:
            if run.args[0] in ("apply", "revert", "clean") and self.before_kill is None:
                self.before_kill = files_before
            return
        notes = [line for line in run.stderr.splitlines() if "recovered an interrupted" in line]
        outcomes = {"it had completed" in note for note in notes}
        assert len(outcomes) <= 1, f"one run, settled two ways: {notes}"
        rolled_back = notes and all("rolled back, every file is as it was" in note for note in notes)
        if rolled_back and self.before_kill is not None and run.args[0] in READERS:
            now = self._bytes()
            changed = sorted(r for r in set(now) | set(self.before_kill) if now.get(r) != self.before_kill.get(r))
            assert not changed, f"the tool says {notes}, but {changed} are not as before it"
        if notes and run.args[0] in READERS and self.pip_left:
            now = self._bytes()
            moved = sorted(r for r, data in self.pip_left.items() if r in now and now[r] != data)
            assert not moved, f"the tool says {notes}, but moved {moved}, which pip wrote since the kill"
        if notes or not sim.journals(self.site):
            self.before_kill = None
            self.pip_left = {}

    def _advice_works(self, run: sim.Run, code: int = 8) -> None:
        """An error names a way out (a reinstall, deleting a file): taking it, for each flavour
        in turn, ends that error (exit ``code``)."""
        said, taken = [run.stderr + run.stdout], set()
        for attempt in range(len(NAMES) + 2):
            done = self._follow_advice(said[-1], taken)
            if not done:
                break
            again = sim.wait(sim.start(list(run.args), None, 0, self.root / "runs" / f"{self.step}-advice-{attempt}"))
            said.append(again.stderr + again.stdout)
            if again.exit_code != code:
                return
        raise AssertionError(f"exit {code}'s advice did not help:\n" + "\nthen:\n".join(said))

    def _follow_advice(self, text: str, taken: set) -> bool:
        """Do what an error line says to do (a reinstall; deleting a path); whether it said anything new."""
        done = False
        for name, version in re.findall(r"`pip install --force-reinstall --no-deps ([\w.-]+)==([\w.]+)`", text):
            if (name, version) in taken:
                continue
            taken.add((name, version))
            name = name.replace("-", "_")
            if name in sim.VERSIONS:
                sim.pip_install(self.site, name, version)
                self._reinstalled(name)
                done = True
        for path in re.findall(r"(?:and|then) delete (/[^\s\"'`]+?)[.,;]?(?=[\s\"'`]|$)", text):
            target = Path(path)
            if ("delete", path) in taken or not (target.exists() or target.is_symlink()):
                continue
            taken.add(("delete", path))
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
            done = True
        return done

    def _force_reinstall(self, name: str) -> None:
        version = sim.installed_version(self.site, name)
        if version is not None:
            sim.pip_install(self.site, name, version)

    def _files_allowed(self) -> bool:
        try:
            self.files_are_the_installed_versions_or_our_output()
        except AssertionError:
            return False
        return True

    def _check_run(
        self,
        run: sim.Run,
        before: dict,
        journal_before: list,
        beside_a_writer: bool = False,
        fault=None,
        concurrent: bool = False,
    ) -> None:
        said = f"`convlstm-patch {' '.join(run.args)}` -> {run.exit_code}\nstdout: {run.stdout}\nstderr: {run.stderr}"
        if run.killed:
            return
        assert run.exit_code in sim.EXIT_CODES, said
        assert "Traceback" not in run.stderr, said
        errors = [line for line in run.stderr.splitlines() if line.startswith("Error: ")]
        if run.exit_code != 0 and "--json" not in run.args:
            assert errors, f"no Error line: {said}"
        assert not any(line.startswith("Error: unexpected") for line in errors), f"the bug path: {said}"
        # A dry run refuses to settle an interrupted run (it writes nothing): that journal stays.
        unfinished = "next convlstm-patch command" in run.stderr or "a dry run writes nothing" in run.stderr
        # A held writer's journal is the writer's; with no Keras left to settle a journal for,
        # only `clean` looks for one (and must settle it).
        if not unfinished and not beside_a_writer and (run.exit_code != 3 or run.args[0] == "clean"):
            assert not sim.journals(self.site), f"a journal was left: {sim.journals(self.site)}\n{said}"
        if not unfinished and not beside_a_writer and (fault is None or fault[0] in (Fault.ENOSPC, Fault.NO_LINKS)):
            # (A permission or I/O error can strike the deletion of a temp file too: the next run sweeps it.)
            new = set(sim.temp_files(self.site)) - self.temp_before
            assert not new, f"temp files were left: {sorted(new)}\n{said}"
            empty = set(sim.empty_backup_folders(self.site)) - self.empty_before
            assert not empty, f"empty backup folders were left: {sorted(empty)}\n{said}"
        # apply and revert change files themselves: said by their result, or, stopped by a signal,
        # by an error line that covers both sides of their commit point.
        changes_itself = run.args[0] in ("apply", "revert") and run.exit_code in (0, 130, 143, 129)
        if not beside_a_writer and not concurrent and not changes_itself and not sim.journals(self.site):
            # No silent change: any other command, or one that failed, changes Keras's files only
            # by settling an interrupted run, and then says so, whatever else it says (an error, a
            # Ctrl-C included), unless a journal is left for the next command to settle.
            after = sim.tree(self.site)
            keras = {relative for name in sim.FILES for relative in sim.FILES[name]}
            changed = sorted(path for path in keras if before.get(path) != after.get(path))
            assert not changed or "warning: " in run.stderr, f"{changed} changed and nothing said so\n{said}"
        if run.exit_code == 7 and not journal_before and not concurrent:
            after = sim.tree(self.site)
            changed = sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))
            if "the next convlstm-patch command removes the journal it began" in run.stderr:
                # Permissions lost right after the journal was written: it could not be deleted
                # either, and the message says so; nothing of Keras or its backup changed.
                changed = [path for path in changed if not path.startswith(f"{sim.STATE}/journal")]
            assert not changed, f"exit 7 says nothing changed, but {changed} did\n{said}"

    def _fault_on_probe(self, probe_fails: bool) -> None:
        sim.Probe.fails = probe_fails

    # -- user commands ---------------------------------------------------------------------

    @rule(only=only_flavour, layers=layer_sets, force=st.booleans(), probe_fails=st.booleans(), fault=faults)
    def apply(self, only, layers, force, probe_fails, fault) -> None:
        self._fault_on_probe(probe_fails)
        run = self._run(self._args("apply", only, layers, *(["--force"] if force else [])), fault)
        if fault is not None and fault[0] is Fault.EROFS:
            assert run.exit_code != 11, f"a read-only file system is not a busy environment: {run}"
        if run.exit_code == 0 and layers is not None:
            # Declarative: exactly the sets named (ConvLSTM always) are patched after it.
            wanted = set(layers.split(",")) | {"convlstm"}
            for name in self._installed(only):
                for relative in sim.FILES[name]:
                    data = sim.read(self.site / relative)
                    if data is None or relative in self.odd:
                        continue
                    patched = sim.base_of(data) != data
                    should = bool(self._sets_of(name, relative) & wanted)
                    assert patched == should, (
                        f"apply --layers {layers} exit 0, but {relative} is {'' if patched else 'not '}patched\n{run.stdout}"
                    )

    @rule(only=only_flavour, force=st.booleans(), fault=faults)
    def revert(self, only, force, fault) -> None:
        run = self._run(self._args("revert", only, None, *(["--force"] if force else [])), fault)
        if run.exit_code == 0:
            for name in self._installed(only):
                for relative in sim.FILES[name]:
                    data = sim.read(self.site / relative)
                    if data is not None:
                        assert sim.base_of(data) == data, (
                            f"revert exit 0, but {relative} is still patched\n{run.stdout}"
                        )

    @rule(only=only_flavour, layers=layer_sets)
    def apply_dry_run(self, only, layers) -> None:
        """`--dry-run` writes nothing, whatever state it finds (an interrupted run included)."""
        before = sim.tree(self.site)
        run = self._run(self._args("apply", only, layers, "--dry-run"))
        assert self.tree_after_run == before, f"apply --dry-run wrote something: {run}"

    @rule(only=only_flavour, probe_fails=st.booleans())
    def verify(self, only, probe_fails) -> None:
        self._fault_on_probe(probe_fails)
        self._run(self._args("verify", only, None))

    @rule(only=only_flavour)
    def status(self, only) -> None:
        run = self._run(self._args("status", only, None, "--json"))
        if run.exit_code == 0:
            self._status_is_true(sim.status_json(run), self._bytes(), only)

    @rule(command=st.sampled_from(["check", "diff", "clean"]), only=only_flavour, fault=faults)
    def other(self, command, only, fault) -> None:
        self._run(self._args(command, only, None), fault if command == "clean" else None)

    @rule(
        writer=st.sampled_from(["apply", "revert"]),
        layers=layer_sets,
        at=st.integers(1, 40),
        reader=st.sampled_from(["status", "check", "verify"]),
        then_kill=st.booleans(),
    )
    def reader_beside_a_held_writer(self, writer, layers, at, reader, then_kill) -> None:
        """A writer stopped (SIGSTOP) mid-change; a reader runs; then the writer goes on or is killed."""
        self._step("reader_beside_a_held_writer", writer, layers, at, reader, then_kill)
        self.step += 1
        self.temp_before = set(sim.temp_files(self.site))
        self.empty_before = set(sim.empty_backup_folders(self.site))
        sim.Probe.fails = False
        before_bytes, before, journal_before = self._bytes(), sim.tree(self.site), sim.journals(self.site)
        held = sim.wait(
            sim.start(
                self._args(writer, None, layers if writer == "apply" else None),
                Fault.STOP,
                at,
                self.root / "runs" / f"{self.step}w",
            ),
            stopped_ok=True,
        )
        if held.exit_code is not None or not _stopped(held.pid):
            self._check_run(held, before, journal_before)  # it finished before reaching that operation
            return
        args = [
            reader,
            "--keras-root",
            str(self.site),
            "--lock-timeout",
            "0.3",
            *(["--json"] if reader == "status" else []),
        ]
        read = sim.wait(sim.start(args, None, 0, self.root / "runs" / f"{self.step}r"))
        ended = sim.kill(held) if then_kill else sim.resume(held)
        if ended.killed and self.before_kill is None:
            self.before_kill = before_bytes
        self._check_run(ended, before, journal_before)
        self._check_run(read, before, journal_before, beside_a_writer=True)
        # 1: `check` found drift (a hand edit); 9: the probe failed; 10: no pins; 11: busy.
        assert read.exit_code in (0, 1, 9, 10, 11), f"a reader beside a writer: {read}"
        if reader == "status" and read.exit_code == 0:
            after_bytes = self._bytes()
            try:
                self._status_is_true(sim.status_json(read), before_bytes)
            except AssertionError:
                self._status_is_true(sim.status_json(read), after_bytes)

    @rule(
        writer=st.sampled_from(["apply", "revert"]),
        layers=layer_sets,
        at=st.integers(1, 60),
        action=st.sampled_from(["install", "force-reinstall", "uninstall", "conda-relink"]),
        name=names,
        version_index=st.integers(0, 1),
        then_kill=st.booleans(),
    )
    def pip_while_a_writer_is_held(self, writer, layers, at, action, name, version_index, then_kill) -> None:
        """A writer stopped mid-change (Ctrl-Z, a slow disk), pip or conda acting on Keras, the
        writer going on: it must not claim a change pip undid, and any file of another version
        it left must be named with the reinstall that repairs it. Or the writer is killed and a
        reader settles its run: pip's files, even with the bytes the run wrote, stay as pip left them."""
        self._step("pip_while_a_writer_is_held", writer, layers, at, action, name, version_index, then_kill)
        self.step += 1
        self.temp_before = set(sim.temp_files(self.site))
        self.empty_before = set(sim.empty_backup_folders(self.site))
        sim.Probe.fails = False
        before, journal_before = sim.tree(self.site), sim.journals(self.site)
        args = self._args(writer, None, layers if writer == "apply" else None)
        held = sim.wait(sim.start(args, Fault.STOP, at, self.root / "runs" / f"{self.step}w"), stopped_ok=True)
        if held.exit_code is not None or not _stopped(held.pid):
            self._check_run(held, before, journal_before)
            return
        {
            "install": lambda: sim.pip_install(self.site, name, sim.VERSIONS[name][version_index]),
            "force-reinstall": lambda: self._force_reinstall(name),
            "uninstall": lambda: sim.pip_uninstall(self.site, name),
            "conda-relink": lambda: sim.conda_relink(self.site, name),
        }[action]()
        self._reinstalled(name)
        self.before_kill = None
        if then_kill:
            sim.kill(held)
            self._run(self._args("status", None, None))
            return
        ended = sim.resume(held)
        if not sim.journals(self.site):
            self.pip_left = {}  # the writer settled its own run: nothing waits to be settled
        self._check_run(ended, before, journal_before, concurrent=True)
        if ended.exit_code == 8:
            self._advice_works(ended)
        elif not self._files_allowed():
            # Only a run that says so may leave another version's file, naming the reinstall.
            assert ended.exit_code not in (0, None), (
                f"pip changed keras under a writer that then claimed success: {ended}"
            )
            self._advice_works(ended, code=ended.exit_code)
            assert self._files_allowed(), f"following the advice left other versions' files: {ended}"

    @rule(hard_links=st.booleans())
    def the_environment_is_copied(self, hard_links) -> None:
        """`cp -a`, tar (hard links kept) or `rsync -a` (not): the copy is used from now on."""
        self._step("the_environment_is_copied", hard_links)
        copy = self.root / f"copy-{self.step}" / "site-packages"
        self.step += 1
        sim.copy_environment(self.site, copy, hard_links=hard_links)
        self.site = copy
        self._own()

    @rule(name=names)
    def conda_force_reinstall(self, name) -> None:
        self._step("conda_force_reinstall", name)
        self.before_kill = None
        sim.conda_relink(self.site, name)
        self._reinstalled(name)

    @rule(which=st.integers(0, 20))
    def a_set_aside_file_is_deleted_by_hand(self, which) -> None:
        self._step("a_set_aside_file_is_deleted_by_hand", which)
        kept = (
            sorted(p for p in (self.site / sim.STATE / "set-aside").rglob("*") if p.is_file())
            if (self.site / sim.STATE / "set-aside").is_dir()
            else []
        )
        kept += sorted(self.site.rglob("*.convlstm-patch-kept.tmp"))
        if kept:
            gone = kept[which % len(kept)]
            gone.unlink()
            self.before_kill = None
            # The user deleted what may be the only original of a file: "kept somewhere" no longer
            # holds for its distribution (until pip reinstalls it).
            self.damaged.update(self._versions())

    @rule(name=names)
    def an_older_convlstm_patch_was_killed_here(self, name) -> None:
        self._step("an_older_convlstm_patch_was_killed_here", name)
        if (
            sim.installed_version(self.site, name) is not None
            and not sim.journals(self.site)
            and not (self.site / sim.STATE).is_file()
        ):
            sim.old_journal(self.site, name)
            self.before_kill = None
            self._own()

    @rule(what=st.sampled_from(["folder", "journal"]))
    def our_files_are_deleted_by_hand(self, what) -> None:
        """`rm -rf .convlstm-patch` (or a copy made with `cp -a site-packages/*`, which skips it), or
        only the journal of a killed run, taken for a stale lock: the originals may be gone with it."""
        self._step("our_files_are_deleted_by_hand", what)
        state = self.site / sim.STATE
        if not state.is_dir():
            return
        if what == "folder":
            shutil.rmtree(state)
        else:
            for journal in sim.journals(self.site):
                (self.site / journal).unlink()
        self.before_kill = None
        self.damaged.update(self._versions())

    @rule()
    def the_state_folder_is_a_file(self) -> None:
        self._step("the_state_folder_is_a_file")
        state = self.site / sim.STATE
        if not state.exists():
            state.write_text("not a folder\n")
            self._own()

    @rule(name=names, index=st.integers(0, 6), kind=st.sampled_from(["folder", "fifo", "unreadable"]))
    def a_target_becomes_an_odd_object(self, name, index, kind) -> None:
        self._step("a_target_becomes_an_odd_object", name, index, kind)
        files = sim.FILES[name]
        relative = files[index % len(files)]
        self.pip_left.pop(relative, None)  # edited by hand since pip wrote it
        path = self.site / relative
        if (
            sim.read(path) is None
            or relative in self.odd
            or sim.installed_version(self.site, name) is None
            or sim.journals(self.site)
        ):
            return
        path.unlink()
        if kind == "folder":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(sim.pristine(name, sim.installed_version(self.site, name), relative))
            sim.give_mode(path, 0)
            if ROOT_USER:  # root reads it all the same: an ordinary file
                self._own()
                return
        self.odd.add(relative)
        self._own()
        self.before_kill = None

    # -- pip, between a crash and the next command -------------------------------------------

    @rule(name=names, version_index=st.integers(0, 1))
    def pip_install_a_version(self, name, version_index) -> None:
        self._step("pip_install_a_version", name, version_index)
        self.before_kill = None
        version = sim.VERSIONS[name][version_index]
        sim.pip_install(self.site, name, version)
        self._reinstalled(name)

    @rule(name=names)
    def pip_force_reinstall(self, name) -> None:
        self._step("pip_force_reinstall", name)
        self.before_kill = None
        version = sim.installed_version(self.site, name)
        if version is not None:
            sim.pip_install(self.site, name, version)
            self._reinstalled(name)

    @rule(name=names)
    def pip_uninstall(self, name) -> None:
        self._step("pip_uninstall", name)
        self.before_kill = None
        sim.pip_uninstall(self.site, name)
        self._reinstalled(name)

    @rule(name=names, version_index=st.integers(0, 1))
    def pip_leaves_an_interrupted_upgrade(self, name, version_index) -> None:
        self._step("pip_leaves_an_interrupted_upgrade", name, version_index)
        sim.pip_leftover(self.site, name, sim.VERSIONS[name][version_index])
        self._own()

    # -- hand edits ------------------------------------------------------------------------------

    @rule(name=names, index=st.integers(0, 6), latin1=st.booleans())
    def edit_a_file_by_hand(self, name, index, latin1) -> None:
        self._step("edit_a_file_by_hand", name, index, latin1)
        self.before_kill = None
        files = sim.FILES[name]
        self.pip_left.pop(files[index % len(files)], None)  # edited by hand since pip wrote it
        path = self.site / files[index % len(files)]
        if (
            sim.read(path) is None
            or files[index % len(files)] in self.odd
            or sim.installed_version(self.site, name) is None
        ):
            return
        data = path.read_bytes() + (b"# caf\xe9\n" if latin1 else b"# edited by hand\n")
        self.edits.setdefault(str(path.relative_to(self.site)), set()).add(data)
        sim._replace(path, data)
        self._own()

    @rule(name=names, index=st.integers(0, 6))
    def delete_a_file_by_hand(self, name, index) -> None:
        self._step("delete_a_file_by_hand", name, index)
        self.before_kill = None
        files = sim.FILES[name]
        relative = files[index % len(files)]
        self.pip_left.pop(relative, None)  # edited by hand since pip wrote it
        if (
            sim.read(self.site / relative) is not None
            and relative not in self.odd
            and sim.installed_version(self.site, name)
        ):
            (self.site / relative).unlink()
            sim.forget_mode(self.site / relative)
            self.deleted.add(relative)

    @rule(name=names, how=st.sampled_from(["manifest", "copy"]))
    def damage_the_backup_by_hand(self, name, how) -> None:
        self._step("damage_the_backup_by_hand", name, how)
        version = sim.installed_version(self.site, name)
        folder = self.site / sim.STATE / "backups" / f"{name}-{version}"
        if version is None or not folder.is_dir():
            return
        if how == "manifest" and (folder / "manifest.json").exists():
            (folder / "manifest.json").write_text("{")
        else:
            copies = sorted(p for p in (folder / "files").rglob("*.py"))
            if not copies:
                return
            copies[0].unlink()
        self.damaged.add(name)

    # -- the promises --------------------------------------------------------------------------

    @invariant()
    def files_are_the_installed_versions_or_our_output(self) -> None:
        for name, version in self._versions().items():
            for relative in sim.FILES[name]:
                path = self.site / relative
                if relative in self.odd:
                    continue
                if not path.exists():
                    assert relative in self.deleted, f"{relative} of {name} {version} is missing"
                    continue
                data = sim.read(path) or b""
                base = sim.base_of(data)
                header = f"# {name} {version}\n".encode()
                edits = {edit for edit in self.edits.get(relative, ()) if header in edit}
                allowed = {sim.pristine(name, version, relative), *edits}
                assert base in allowed, (
                    f"{relative} holds bytes of neither {name} {version} nor a hand edit: "
                    f"{data[:80]!r}; journals: {sim.journals(self.site)}"
                )

    @invariant()
    def a_patched_file_has_its_original_kept(self) -> None:
        state = self.site / sim.STATE
        for name, version in self._versions().items():
            if name in self.damaged:
                continue
            backup = state / "backups" / f"{name}-{version}" / "files"
            for relative in sim.FILES[name]:
                path = self.site / relative
                data = sim.read(path)
                if data is None or relative in self.odd:
                    continue
                base = sim.base_of(data)
                if base == data:
                    continue
                kept = sim.read(backup / relative) == base
                if not kept and sim.journals(self.site):
                    aside = [*state.rglob("*"), *self.site.rglob("*.convlstm-patch-kept.tmp")]
                    kept = any(sim.read(p) == base for p in aside if "backups" not in p.parts)
                assert kept, f"{relative} of {name} {version} is patched but its original is kept nowhere"

    @invariant()
    def modes_are_kept(self) -> None:
        for name in self._versions():
            for relative in sim.FILES[name]:
                path = self.site / relative
                if relative in self.odd or sim.read(path) is None:
                    continue
                mode, expected = path.stat().st_mode & 0o7777, sim.expected_mode(path)
                # A mode given by hand, or pip's: a revert puts back the file pip installed, its mode too.
                assert expected is None or mode in (expected, sim.MODE), (
                    f"{relative} has mode {mode:o}, not the {expected:o} it was given"
                )

    @invariant()
    def owners_are_kept(self) -> None:
        if ROOT_USER:
            wrong = sim.owned_by_others(self.site, sim.OWNER)
            assert not wrong, f"files changed owner: {wrong}"

    # -- helpers -----------------------------------------------------------------------------------

    def _versions(self) -> dict[str, str]:
        return {name: v for name in NAMES if (v := sim.installed_version(self.site, name)) is not None}

    def _installed(self, only) -> list[str]:
        return [name for name in self._versions() if only in (None, name)]

    def _sets_of(self, name: str, relative: str) -> set[str]:
        if "conv_lstm" in relative:
            return {"convlstm"}
        if relative.endswith("bidirectional.py"):
            return {"lstm", "gru"}
        return {"lstm"} if relative.endswith("/lstm.py") else {"gru"}

    def _bytes(self) -> dict[str, bytes | None]:
        return {relative: sim.read(self.site / relative) for name in self._versions() for relative in sim.FILES[name]}

    def _status_is_true(self, document: dict, files: dict[str, bytes | None], only=None) -> None:
        versions = {name: version for name, version in self._versions().items() if only in (None, name)}
        reported = {flavour["distribution"]: flavour["version"] for flavour in document["flavours"]}
        assert reported == versions, f"status reports {reported}, installed are {versions}"
        for flavour in document["flavours"]:
            name, version = flavour["distribution"], flavour["version"]
            for entry in flavour["files"]:
                data = files.get(entry["path"])
                said = f"status says {entry['path']} is {entry['state']}"
                if entry["path"] in self.odd:
                    assert entry["state"] in ("modified", "missing"), said + ", but it is not a readable file"
                    continue
                if entry["state"] == "missing":
                    assert data is None, said
                    continue
                assert data is not None, said + ", but it is missing"
                if entry["state"] == "patched":
                    assert sim.base_of(data) != data, said + ", but it is not"
                elif entry["state"] == "pristine":
                    assert sim.base_of(data) == data, said + ", but it is patched"
                else:
                    assert data != sim.pristine(name, version, entry["path"]), said + ", but it is pip's"

    def _reinstalled(self, name: str) -> None:
        # (Hand edits stay allowed bytes: a revert may put back an edit made before patching, which
        # the backup keeps, over a same-version reinstall; the invariant takes only those of the
        # version installed, so another version's edit is still caught.)
        if sim.journals(self.site):
            # pip (or conda) wrote these while a killed run's journal waits: the next reader that
            # settles it must leave them as pip left them, even where they have the bytes the run
            # wrote (a file put there since is another file).
            for relative in sim.FILES[name]:
                path = self.site / relative
                ours = path.with_name(f".{path.name}.convlstm-patch-ours.tmp")
                if ours.exists() and path.exists() and os.path.samefile(path, ours):
                    continue  # conda linked back the very file the run wrote (both are links of pkgs/)
                self.pip_left[relative] = sim.read(path)
        for relative in sim.FILES[name]:
            self.deleted.discard(relative)
            self.odd.discard(relative)
        self.damaged.discard(name)
        self._own()

    def _own(self) -> None:
        if ROOT_USER:
            for path in [self.site, *self.site.rglob("*")]:
                os.lchown(path, sim.OWNER, sim.OWNER)
        for relative in list(self.odd):  # pip replaced or removed them, or they are still odd
            path = self.site / relative
            if sim.read(path) is not None and (path.stat().st_mode & 0o777):
                self.odd.discard(relative)


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _stand_ins(stand_ins):
    """The transform and the probe are stand-ins in this process (its forks inherit them)."""


BOUNDED = settings(
    max_examples=int(os.environ.get("CONVLSTM_PATCH_SIMULATION_BOUNDED", "20")),
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_the_promises_hold_in_a_bounded_simulation():
    """README's test command: a fixed seed, bounded (under a minute on 2 cores)."""
    run = Simulation.TestCase
    run.settings = BOUNDED
    run().runTest()
    _covered()


@pytest.mark.slow
def test_the_promises_hold_in_a_long_simulation():
    """CI: random sequences, many more of them."""
    run = Simulation.TestCase
    run.settings = settings(
        BOUNDED,
        max_examples=int(os.environ.get("CONVLSTM_PATCH_SIMULATION_EXAMPLES", "100")),
        derandomize=False,
        stateful_step_count=40,
    )
    run().runTest()
    _covered()


def _covered() -> None:
    print(f"simulation: {len(Simulation.sequences)} distinct sequences, {Simulation.steps} steps")
