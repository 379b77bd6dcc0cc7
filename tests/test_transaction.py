"""The state core on a fake Keras (tests/fake_keras.py): discovery, the snapshot, the
manifest's schema, decisions, and the Transaction with its one undo.

No Keras, TensorFlow, libcst or subprocess: changes are made by hand (the
"patched" bytes are any bytes), so these run in milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import fake_keras
import pytest

from patcher import errors, planning, snapshot
from patcher.environment import find_flavours
from patcher.hashing import sha256_hex
from patcher.layersets import LayerSet
from patcher.recovery import recover_all
from patcher.snapshot import State
from patcher.store import BackedUpFile, Manifest, Operation, Phase, chosen_path, manifest_path, read_journal
from patcher.transaction import FileChange, FlavourChange, Transaction

CONVLSTM, LSTM, GRU = LayerSet.CONVLSTM, LayerSet.LSTM, LayerSet.GRU


@pytest.fixture
def fake(tmp_path: Path):
    """The fake keras's flavour, in a site folder of its own."""
    site = fake_keras.install(tmp_path / "site-packages")
    (flavour,) = find_flavours([str(site)])
    return flavour


def patch_change(flavour, layer_sets=(CONVLSTM,), before=None) -> FlavourChange:
    """What apply would change for these sets, with "patched" standing in for the transform."""
    read = snapshot.read([flavour]).flavours[0]
    files = read.files_of(layer_sets)
    originals = {file.target.relative: read.original(file.target) for file in files}
    after = {relative: data + b"# patched\n" for relative, data in originals.items()}
    manifest = Manifest(
        flavour.distribution, flavour.version, "keras3", "0", "now",
        tuple(BackedUpFile(r, sha256_hex(originals[r]), sha256_hex(after[r])) for r in originals),
        tuple(layer_sets),
    )  # fmt: skip
    changes = tuple(
        FileChange(f.target, f.live, after[f.target.relative]) for f in files if f.live != after[f.target.relative]
    )
    return FlavourChange(
        flavour, Operation.APPLY, tuple(layer_sets), changes, read.manifest, manifest, originals,
        read.chosen, tuple(layer_sets) if tuple(layer_sets) != (CONVLSTM,) else (),
    )  # fmt: skip


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_hex(p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


# -- discovery and the snapshot ------------------------------------------------------------


def test_discovery_finds_every_set_and_the_shared_file(fake):
    assert fake.layout.name == "keras3" and fake.supported_sets == (CONVLSTM, LSTM, GRU)
    shared = [t for t in fake.files if len(t.layer_sets) > 1]
    assert [(t.relative, t.layer_sets) for t in shared] == [
        ("keras/src/layers/rnn/bidirectional.py", frozenset({LSTM, GRU}))
    ]


@pytest.mark.parametrize("relative", [pytest.param(path, id=Path(path).name) for path in fake_keras.CONVLSTM[:2]])
def test_a_deleted_file_is_missing_not_an_unknown_layout(tmp_path, relative):
    """RECORD still lists it (Python 3.12+'s Distribution.files would not: it drops files that are gone)."""
    site = fake_keras.install(tmp_path)
    (site / relative).unlink()
    (flavour,) = find_flavours([str(site)])
    assert flavour.layout is not None and flavour.layout.name == "keras3"
    (target,) = [t for t in flavour.files if t.relative == relative]
    assert target.record_sha256 == sha256_hex(fake_keras.source(relative))
    assert snapshot.read([flavour]).flavours[0].overall() == State.MISSING


def test_a_wrapper_that_reaches_no_fused_kernel_is_no_target(tmp_path):
    site = fake_keras.install(tmp_path)
    (site / "keras/src/layers/rnn/bidirectional.py").write_text("class Bidirectional(object):\n    pass\n")
    (flavour,) = find_flavours([str(site)])
    assert all(not t.relative.endswith("bidirectional.py") for t in flavour.files)


def test_two_distributions_of_one_package_are_refused(tmp_path):
    site = fake_keras.install(tmp_path)
    info = site / "keras_nightly-3.99.1.dev1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: keras-nightly\nVersion: 3.99.1.dev1\n")
    (info / "RECORD").write_text("")
    with pytest.raises(
        errors.Unsupported, match="keras 3.99.0 and keras-nightly 3.99.1.dev1 are both installed"
    ) as error:
        find_flavours([str(site)])
    assert "`pip uninstall -y keras keras-nightly` then `pip install` the one you want" in error.value.message


def test_a_nightly_is_the_keras_package(tmp_path):
    site = fake_keras.install(tmp_path, "3.99.1.dev20261027", name="keras-nightly")
    (flavour,) = find_flavours([str(site)], only="keras")
    assert (flavour.distribution, flavour.project, flavour.package) == ("keras_nightly", "keras-nightly", "keras")
    assert flavour.reinstall_command == "pip install --force-reinstall --no-deps keras-nightly==3.99.1.dev20261027"


def test_snapshot_states_and_focus(fake):
    read = snapshot.read([fake]).flavours[0]
    assert read.overall() == State.PRISTINE and read.focus() == (CONVLSTM,)
    lstm = next(t for t in fake.files if t.relative.endswith("/lstm.py"))
    lstm.path.write_bytes(lstm.path.read_bytes() + b"# edited\n")
    read = snapshot.read([fake]).flavours[0]
    assert read.overall() == State.PRISTINE  # the focus (ConvLSTM) is untouched
    assert [file.target for file in read.of(State.MODIFIED)] == [lstm]
    assert read.of(State.MODIFIED)[0].note == "differs from the distribution's RECORD"


# -- the manifest's schema ------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, says",
    [
        pytest.param(lambda d: d["layer_sets"].append("rnn"), "unknown set", id="unknown-set"),
        pytest.param(lambda d: d.update(layer_sets="convlstm"), "non-empty list", id="a-string"),
        pytest.param(lambda d: d.update(layer_sets=[]), "non-empty list", id="empty"),
        pytest.param(lambda d: d.pop("layer_sets"), "no 'layer_sets'", id="missing"),
        pytest.param(lambda d: d["layer_sets"].append("convlstm"), "twice", id="a-set-twice"),
        pytest.param(
            lambda d: d.update(layer_sets=["convlstm", "lstm"]),
            "do not match its layer sets",
            id="files-of-a-set-missing",
        ),
        pytest.param(lambda d: d["files"].pop(), "do not match its layer sets", id="a-file-missing"),
        pytest.param(lambda d: d.update(files=[]), "lists no files", id="no-files"),
        pytest.param(lambda d: d["files"][0].update(before="x"), "two sha256", id="bad-hash"),
        pytest.param(lambda d: d.update(version="1.0"), "not keras-3.99.0", id="other-version"),
        pytest.param(lambda d: d.update(forced="yes"), "wrong type", id="forced-not-bool"),
        pytest.param(lambda d: d.update(extra=1), "unknown field", id="unknown-field"),
    ],
)
def test_a_manifest_off_its_schema_is_a_backup_problem(fake, edit, says):
    with Transaction([patch_change(fake)]) as transaction:
        transaction.write()
    path = manifest_path(fake)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(errors.BackupProblem, match=says):
        snapshot.read([fake]).flavours[0]


# -- the Transaction: commit, one undo, recovery ----------------------------------------------------


def test_commit_writes_files_backup_and_chosen_sets(fake):
    change = patch_change(fake, (CONVLSTM, LSTM, GRU))
    with Transaction([change]) as transaction:
        transaction.write()
    read = snapshot.read([fake]).flavours[0]
    assert read.overall() == State.PATCHED and read.patched_sets == (CONVLSTM, LSTM, GRU)
    assert read.chosen == (CONVLSTM, LSTM, GRU)
    assert read_journal(fake.site) is None and not (fake.site / ".convlstm-patch" / "set-aside").exists()


@pytest.mark.parametrize("sets_before", [(), (CONVLSTM,)], ids=["from-pristine", "adding-sets"])
def test_a_failure_inside_puts_everything_back_as_it_was(fake, sets_before):
    if sets_before:
        with Transaction([patch_change(fake, sets_before)]) as transaction:
            transaction.write()
    before = tree(fake.site)
    with (
        pytest.raises(errors.VerificationFailed),
        Transaction([patch_change(fake, (CONVLSTM, LSTM))]) as transaction,
    ):
        transaction.write()
        raise errors.VerificationFailed("simulated")
    assert tree(fake.site) == before  # files, manifest, backup copies, chosen sets


def test_a_killed_run_is_undone_from_its_journal(fake):
    """Stop between write and commit (as a SIGKILL would), then recover as the next command does."""
    with Transaction([patch_change(fake)]) as transaction:
        transaction.write()
    before = tree(fake.site)
    transaction = Transaction([patch_change(fake, (CONVLSTM, GRU))])
    transaction.__enter__()
    transaction.write()  # ... and the process dies here
    assert read_journal(fake.site).phase == Phase.STARTED
    said: list[str] = []
    recover_all([fake], said)
    assert said == [
        f"{fake.key}: recovered an interrupted apply --layers convlstm,gru: rolled back, every file is as it was before it"
    ]
    assert tree(fake.site) == before


def test_a_run_killed_writing_its_journal_leaves_a_temp_file_the_next_reader_deletes(fake, monkeypatch):
    """Killed before its journal was in place, a run changed nothing: no recovery, but the journal's
    temp file must not stay. A reader that can take the lock deletes it; one that cannot leaves it."""
    from patcher.store import journal_path, state_folder

    state_folder(fake.site).mkdir()
    leftover = journal_path(fake.site).with_name(f".{journal_path(fake.site).name}.x1y2z3.tmp")
    leftover.write_text('{"phase": "sta')
    before = tree(fake.site)
    import patcher.envlock

    def read_only(*args, **kwargs):
        raise errors.WriteFailed("cannot create the lock")

    with monkeypatch.context() as patched:
        patched.setattr(patcher.envlock.EnvironmentLock, "__enter__", read_only)
        notes: list[str] = []
        read = snapshot.settled([fake], None, 1, notes)
    assert notes == [] and read.flavours[0].overall() == State.PRISTINE
    assert leftover.exists(), "a reader that cannot take the lock changes nothing"
    read = snapshot.settled([fake], None, 1, notes)
    assert notes == [] and read.flavours[0].overall() == State.PRISTINE
    assert not leftover.exists()
    assert {path for path in before if path != str(leftover.relative_to(fake.site))} <= set(tree(fake.site))


def test_revert_keeps_the_backup_while_a_file_it_covers_is_not_its_original(fake):
    change = patch_change(fake)
    with Transaction([change]) as transaction:
        transaction.write()
    read = snapshot.read([fake]).flavours[0]
    revert = planning.plan_revert(read, force=False)
    with (
        pytest.raises(
            errors.ModifiedFiles, match="was changed by another program .* left that file as the other program left it"
        ),
        Transaction([revert]) as transaction,
    ):
        transaction.write()
        target = revert.files[0].target
        edited = target.path.with_name("edited.tmp")
        edited.write_bytes(b"edited while reverting\n")
        edited.replace(target.path)  # another program replaced it: not its original
    assert manifest_path(fake).exists()
    read = snapshot.read([fake]).flavours[0]  # rolled back, backup kept; the other program's file left as it put it
    assert [file.target.relative for file in read.of(State.MODIFIED)] == [target.relative]
    assert {file.state for file in read.files_of([CONVLSTM]) if file.target != target} == {State.PATCHED}


def test_a_full_revert_deletes_the_backup_and_forgets_the_sets(fake):
    with Transaction([patch_change(fake, (CONVLSTM, LSTM))]) as transaction:
        transaction.write()
    revert = planning.plan_revert(snapshot.read([fake]).flavours[0], force=False)
    with Transaction([revert]) as transaction:
        transaction.write()
    read = snapshot.read([fake]).flavours[0]
    assert read.overall() == State.PRISTINE and read.manifest is None
    assert not manifest_path(fake).parent.exists() and not chosen_path(fake).exists()
    assert all(sha256_hex(t.path.read_bytes()) == t.record_sha256 for t in fake.files)


def test_decisions_from_hashes_alone(fake):
    read = snapshot.read([fake]).flavours[0]
    assert not planning.already_patched(read, None) and planning.nothing_to_revert(read)
    with Transaction([patch_change(fake)]) as transaction:
        transaction.write()
    read = snapshot.read([fake]).flavours[0]
    assert planning.already_patched(read, None) and planning.already_patched(read, {CONVLSTM})
    assert not planning.already_patched(read, {LSTM})  # apply --layers lstm leaves ConvLSTM and LSTM patched
    assert not planning.nothing_to_revert(read)
    with pytest.raises(errors.Unsupported, match="has no lstm source"):
        planning.apply_target(replace(read, flavour=replace(fake, files=fake.files_of({CONVLSTM}))), {LSTM})[0]


def test_apply_refuses_an_edited_file_before_transforming(fake):
    cell = fake.files_of({CONVLSTM})[0]
    cell.path.write_bytes(b"# edited\n" + cell.path.read_bytes())
    with pytest.raises(errors.ModifiedFiles, match="differs from the distribution's RECORD; restore it with"):
        planning.plan_apply(snapshot.read([fake]).flavours[0], None, force=False)


def test_bytecode_under_a_pycache_prefix_goes_by_the_linked_path_and_the_real_one(tmp_path):
    """A site folder reached through a symlink: under PYTHONPYCACHEPREFIX an interpreter may have
    cached the module by either path; both copies go."""
    from patcher import bytecode

    real = tmp_path / "real" / "site"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real.parent)
    source = tmp_path / "link" / "site" / "conv_lstm.py"
    source.write_text("x = 1\n")
    prefix = tmp_path / "prefix"
    cached = [prefix / folder.relative_to("/") / "conv_lstm.cpython-311.pyc" for folder in (source.parent, real)]
    for path in cached:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    bytecode.remove(source, prefix)
    assert [path for path in cached if path.exists()] == []
