"""Runs cut short at every file operation, then what users and pip do next: the situations the
third hostile round broke, each tried at every point it can happen.

The real tool, forked per command on a fake keras 3.99.0 and tf_keras 2.99.0
(tests/simulation.py: the transform and the probe are stand-ins), killed with a
real SIGKILL, or meeting a full disk, before its k-th file operation, for every
k. tests/test_simulation.py runs random sequences of the same; these are the
sequences worth naming.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import simulation as sim
from simulation import Fault

SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() and shutil.disk_usage("/dev/shm").free > 1 << 28 else None


@pytest.fixture(autouse=True)
def _stand_ins(stand_ins):
    """The transform and the probe are stand-ins in this process (its forks inherit them)."""


@pytest.fixture
def world():
    folder = Path(tempfile.mkdtemp(prefix="convlstm-patch-interrupted-", dir=SCRATCH))
    yield World(folder)
    shutil.rmtree(folder, ignore_errors=True)


class World:
    """Sites made from a template, and the tool run on them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def site(self, *setup: list[str], template: Path | None = None) -> Path:
        self.count += 1
        site = self.folder / f"site-{self.count}" / "site-packages"
        if template is not None:
            shutil.copytree(template, site, symlinks=True)
            return site
        pip_installs_both(site, "3.99.0", "2.99.0")
        for args in setup:
            assert self.tool(site, *args).exit_code == 0
        return site

    def tool(self, site: Path, *args: str, fault: Fault | None = None, at: int = 0) -> sim.Run:
        self.count += 1
        command = [args[0], "--keras-root", str(site), "--lock-timeout", "5", *args[1:]]
        return sim.wait(sim.start(command, fault, at, self.folder / "runs" / str(self.count)))

    def killed(self, points, template: Path, *command: str):
        """For each k of ``points(total)``: a copy of the template, ``command`` killed before
        its k-th file operation."""
        total = self.tool(self.site(template=template), *command).operations
        assert total > 10, total
        for k in points(total):
            site = self.site(template=template)
            run = self.tool(site, *command, fault=Fault.KILL, at=k)
            assert run.killed, (k, run.stderr)
            yield k, site


def files(site: Path) -> dict[str, bytes | None]:
    """Every file of both distributions, by path."""
    return {
        relative: (site / relative).read_bytes() if (site / relative).exists() else None
        for name in sim.FILES
        for relative in sim.FILES[name]
    }


def of(name: str, found: dict[str, bytes | None]) -> dict[str, bytes | None]:
    return {relative: data for relative, data in found.items() if relative in sim.FILES[name]}


def pristine(name: str, version: str) -> dict[str, bytes]:
    return {relative: sim.pristine(name, version, relative) for relative in sim.FILES[name]}


def sampled(total: int) -> list[int]:
    """README's test command: a dozen operations spread over the run, and the last ones (the
    commit point and the cleanup after it)."""
    return sorted({*range(1, total + 1, max(1, total // 12)), total - 2, total - 1, total})


def dense(total: int) -> list[int]:
    """Every third operation: a window of three or more (such as between two commit points,
    each an atomic write of several operations) is always hit."""
    return sorted({*range(1, total + 1, 3), total - 2, total - 1, total})


def every(total: int) -> list[int]:
    return list(range(1, total + 1))


POINTS = [pytest.param(sampled, id="sampled"), pytest.param(every, id="every", marks=pytest.mark.slow)]
DENSE = [pytest.param(dense, id="dense"), pytest.param(every, id="every", marks=pytest.mark.slow)]

COMMANDS = {
    "apply": ([], ["apply", "--layers", "convlstm,lstm,gru"]),
    "revert": ([["apply", "--layers", "convlstm,lstm,gru"]], ["revert"]),
}


def pip_installs_both(site, keras_version: str, tf_keras_version: str) -> None:
    """`pip install --force-reinstall keras==K tf_keras==T` into the site folder."""
    sim.pip_install(site, "keras", keras_version)
    sim.pip_install(site, "tf_keras", tf_keras_version)


@pytest.mark.parametrize("points", DENSE)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_run_over_both_flavours_killed_anywhere_is_settled_the_same_way_for_both(world, command, points):
    """One journal, one commit point for every flavour a run changes: killed at any file
    operation, the next command leaves keras and tf_keras both as before or both as after."""
    setup, args = COMMANDS[command]
    template = world.site(*setup)
    before = files(template)
    done = world.site(template=template)
    assert world.tool(done, *args).exit_code == 0
    after = files(done)
    outcomes = set()
    for k, site in world.killed(points, template, *args):
        status = world.tool(site, "status")
        assert status.exit_code == 0, (k, status.stderr)
        now = files(site)
        settled = [
            "before"
            if of(name, now) == of(name, before)
            else "after"
            if of(name, now) == of(name, after)
            else "neither"
            for name in sim.FILES
        ]
        assert settled in (["before", "before"], ["after", "after"]), (k, settled, status.stderr)
        outcomes.add(settled[0])
    assert outcomes == {"before", "after"}  # both sides of the commit point were tried


@pytest.mark.parametrize("points", POINTS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_killed_run_then_pip_installing_another_version_never_mixes_versions(world, command, points):
    """Killed anywhere, then `pip install keras==3.98.0 tf_keras==2.98.0`: the next command never
    moves a file of 3.99.0 into 3.98.0, says what it did, and the new versions patch and revert."""
    setup, args = COMMANDS[command]
    template = world.site(*setup)
    for k, site in world.killed(points, template, *args):
        pip_installs_both(site, "3.98.0", "2.98.0")
        status = world.tool(site, "status")
        assert status.exit_code == 0, (k, status.stderr)
        now = files(site)
        assert of("keras", now) == pristine("keras", "3.98.0"), k
        assert of("tf_keras", now) == pristine("tf_keras", "2.98.0"), k
        for note in (line for line in status.stderr.splitlines() if "recovered an interrupted" in line):
            assert "left as pip installed them" in note or "it had completed" in note, (k, note)
        assert world.tool(site, "apply").exit_code == 0, k
        revert = world.tool(site, "revert")
        assert revert.exit_code == 0, (k, revert.stderr)
        assert files(site) == {**pristine("keras", "3.98.0"), **pristine("tf_keras", "2.98.0")}, k


@pytest.mark.parametrize("points", POINTS)
def test_a_revert_killed_after_its_commit_point_then_another_version_is_no_dead_end(world, points):
    """The advice of exit 8 used to be a reinstall that changed nothing: now no exit 8 at all."""
    setup, args = COMMANDS["revert"]
    template = world.site(*setup)
    for k, site in world.killed(points, template, *args):
        sim.pip_install(site, "keras", "3.98.0")
        for command in ("status", "apply", "revert", "clean"):
            run = world.tool(site, command)
            assert run.exit_code == 0, (k, command, run.stderr)
        assert of("keras", files(site)) == pristine("keras", "3.98.0"), k


def test_the_leftover_dist_info_of_an_interrupted_upgrade_never_wins(world):
    """pip leaves `~eras-3.98.0.dist-info` when an upgrade is cut short (and warns of "-eras"):
    the installed keras is 3.99.0, whatever order the folder lists them in."""
    site = world.site()
    sim.pip_leftover(site, "keras", "3.98.0")
    sim.pip_leftover(site, "tf_keras", "2.98.0")
    status = world.tool(site, "status", "--json")
    assert status.exit_code == 0, status.stderr
    reported = {
        flavour["distribution"]: (flavour["version"], flavour["state"])
        for flavour in sim.status_json(status)["flavours"]
    }
    assert reported == {"keras": ("3.99.0", "pristine"), "tf_keras": ("2.99.0", "pristine")}
    assert world.tool(site, "apply").exit_code == 0
    assert world.tool(site, "revert").exit_code == 0
    assert files(site) == {**pristine("keras", "3.99.0"), **pristine("tf_keras", "2.99.0")}


def test_two_versions_recorded_in_one_folder_are_refused_naming_both(world):
    site = world.site()
    other = site / "keras-3.98.0.dist-info"
    shutil.copytree(site / "keras-3.99.0.dist-info", other)
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: keras\nVersion: 3.98.0\n")
    run = world.tool(site, "apply")
    assert run.exit_code == 4
    assert "keras is recorded as installed twice" in run.stderr and "3.98.0 and 3.99.0" in run.stderr


def test_a_disk_that_fills_while_apply_verifies_changes_nothing(world):
    """Exit 7 means nothing changed: the commit needs no new space, so a disk another program
    filled during the verification ends in the patch, verified and committed; a failure to
    write anything before then rolls back with renames alone."""
    site = world.site()
    before = sim.tree(site)
    sim.Probe.fills_the_disk = True
    run = world.tool(site, "apply", "--layers", "convlstm,lstm,gru")
    if run.exit_code == 7:
        assert sim.tree(site) == before, run.stderr
    else:
        assert run.exit_code == 0, run.stderr
        assert all(sim.base_of(data) != data for data in files(site).values())
    assert not sim.journals(site) and not sim.temp_files(site), run.stderr


@pytest.mark.parametrize("points", POINTS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_disk_full_at_any_operation_is_exit_7_with_nothing_changed_or_done(world, command, points):
    """One free page, or none: wherever the disk fills, the run either completes (it needed no
    more space) or fails with exit 7 and every file as it was, in the same run."""
    setup, args = COMMANDS[command]
    template = world.site(*setup)
    before = sim.tree(template)
    total = world.tool(world.site(template=template), *args).operations
    for k in points(total):
        site = world.site(template=template)
        run = world.tool(site, *args, fault=Fault.ENOSPC, at=k)
        assert run.exit_code in (0, 7), (k, run.stderr)
        if run.exit_code == 7:
            assert sim.tree(site) == before, (k, run.stderr)
            assert "no space left" in run.stderr, (k, run.stderr)
        assert not sim.journals(site), (k, run.stderr)


@pytest.mark.parametrize("points", POINTS)
def test_a_killed_revert_then_pip_reinstalling_the_same_version_is_left_as_pip_left_it(world, points):
    """A revert killed after writing pristine bytes, then `pip install --force-reinstall` of the
    same version (new files, the very bytes the revert wrote): the next command leaves pip's files
    as pip left them, never putting the run's patched files back over them."""
    setup, args = COMMANDS["revert"]
    template = world.site(*setup)
    for k, site in world.killed(points, template, *args):
        pip_installs_both(site, "3.99.0", "2.99.0")
        status = world.tool(site, "status")
        assert status.exit_code == 0, (k, status.stderr)
        assert files(site) == {**pristine("keras", "3.99.0"), **pristine("tf_keras", "2.99.0")}, (k, status.stderr)


def test_an_edit_made_after_a_killed_runs_journal_was_deleted_by_hand_is_never_lost(world):
    """apply killed after writing, its journal deleted by hand (taken for a stale lock), a file
    edited in place: the kept original goes back only over our untouched output, never over the
    edit (the next apply refuses it without --force)."""
    setup, args = COMMANDS["apply"]
    template = world.site(*setup)
    edited = 0
    for k, site in world.killed(sampled, template, *args):
        target = site / sim.FILES["keras"][0]
        data = target.read_bytes()
        if sim.base_of(data) == data:
            continue  # not written yet when killed
        for journal in (site / sim.STATE).glob("journal*.json"):
            journal.unlink()
        with open(target, "ab") as handle:  # in place: the same file, whatever links it has
            handle.write(b"# my local edit\n")
        mine = target.read_bytes()
        run = world.tool(site, "apply", "--layers", "convlstm,lstm,gru")
        assert target.read_bytes() == mine, (k, run.exit_code, run.stderr)
        edited += 1
    assert edited, "no kill point left a written file"


def test_a_kept_original_put_back_after_its_journal_was_deleted_by_hand_is_said(world):
    """apply killed after writing, its journal deleted by hand: the next revert puts the kept
    original back over our untouched output and says so, not just "nothing to revert"."""
    setup, args = COMMANDS["apply"]
    template = world.site(*setup)
    said = 0
    for k, site in world.killed(sampled, template, *args):
        target = site / sim.FILES["keras"][0]
        if sim.base_of(target.read_bytes()) == target.read_bytes():
            continue  # not written yet when killed
        if not list(site.glob(f"{sim.FILES['keras'][0].rsplit('/', 1)[0]}/.*kept*.tmp")):
            continue  # killed before the original was kept beside it
        for journal in (site / sim.STATE).glob("journal*.json"):
            journal.unlink()
        run = world.tool(site, "revert")
        if run.exit_code == 8:  # killed before the backup's manifest named our output: documented refusal
            assert "its backup is gone" in run.stderr and "--force-reinstall" in run.stderr, (k, run.stderr)
            continue
        assert run.exit_code == 0, (k, run.stderr)
        assert files(site) == {**pristine("keras", "3.99.0"), **pristine("tf_keras", "2.99.0")}, (k, run.stderr)
        assert "put back the original an interrupted convlstm-patch run had kept" in run.stderr, (k, run.stderr)
        said += 1
    assert said, "no kill point left a written file with its original kept"


def test_what_a_reader_answers_does_not_depend_on_unrelated_leftovers(world):
    """apply killed after keeping originals, its journal deleted by hand: `status` answers the
    same, and leaves the same files, whether or not a killed run also left a temp file of ours."""
    setup, args = COMMANDS["apply"]
    template = world.site(*setup)
    compared = 0
    for k, site in world.killed(dense, template, *args):
        if not list(site.rglob(".*convlstm-patch-kept*.tmp")) or list((site / sim.STATE).glob(".*.tmp")):
            continue
        for journal in (site / sim.STATE).glob("journal*.json"):
            journal.unlink()
        other = world.site(template=site)
        (other / sim.STATE / ".unrelated.12345.tmp").write_bytes(b"")  # a killed write's leftover
        plain, with_temp = world.tool(site, "status"), world.tool(other, "status")
        assert (plain.exit_code, plain.stdout) == (with_temp.exit_code, with_temp.stdout.replace(str(other), str(site)))
        assert files(site) == files(other), k
        compared += "put back the original" in with_temp.stderr
    assert compared, "no kill point left originals to put back, and no temp file of ours"


def test_a_ctrl_c_while_a_reader_settles_a_killed_run_still_says_what_settling_did(world):
    """apply killed anywhere, then `status` interrupted (Ctrl-C) at any of its file operations:
    when the killed run was settled all the same (its journal gone), what that did is said."""
    setup, args = COMMANDS["apply"]
    template = world.site(*setup)
    checked = 0
    for k, killed in world.killed(sampled, template, *args):
        if not sim.journals(killed):
            continue
        total = world.tool(world.site(template=killed), "status").operations
        for at in range(1, total + 1, max(1, total // 6)):
            site = world.site(template=killed)
            run = world.tool(site, "status", fault=Fault.INTERRUPT, at=at)
            if not sim.journals(site):
                assert "recovered an interrupted" in run.stderr, (k, at, run.exit_code, run.stderr)
                checked += 1
    assert checked, "no interrupted status settled a killed run"


def test_a_kept_file_that_is_a_symlink_to_a_folder_is_swept_not_a_dead_end(world):
    """A symlink to a folder where a kept original goes (made by hand): swept (unlinked, never
    followed), so the next apply works; the folder it points to is left as it was."""
    site = world.site()
    target = site / sim.FILES["keras"][0]
    elsewhere = site.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.txt").write_text("mine\n")
    (target.parent / f".{target.name}.convlstm-patch-kept.tmp").symlink_to(elsewhere)
    assert world.tool(site, "status").exit_code == 0
    run = world.tool(site, "apply")
    assert run.exit_code == 0, run.stderr
    assert (elsewhere / "mine.txt").read_text() == "mine\n"
    assert not (target.parent / f".{target.name}.convlstm-patch-kept.tmp").is_symlink()
