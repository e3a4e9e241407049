"""Fault injection: a crash at each write of zoo generation, autoencoder training (its map included), sampling
and packing, then the same call again. The rerun must end where an uninterrupted run ends, and a reader in
between must see the old state or the new one, never a mix. Also: a writer during the map phase is told busy."""

import contextlib
import errno
import os
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import polars as pl
import pytest
import torch
from sklearn.decomposition import PCA

from core import pipeline
from core.errors import UserError, ZooError
from core.gen.config import SampleConfig
from core.gen.export import export_samples
from core.gen.novelty import ZooErrorSets
from core.pipeline import generate, pack_workspace, train_and_map, unpack_workspace
from core.rep import loop
from core.rep.evaluate import evaluate_run
from core.rep.loop import TrainConfig
from core.rep.run import load_run
from core.store.files import read_json, read_tensors
from core.store.runs import AERunFiles, SamplesRun, finished_ae_runs
from core.store.workspace import Workspace
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.model_zoo import load_zoos
from tests.conftest import TINY, TINY_AE, copy_workspace
from tests.faults import Crash, crash_at_commit, disk_error_at_commit

ZOO = ZooConfig(models=2, epochs=1, save_epochs=(0, 1), seed=5, init_seeds=0)
TRAIN = TrainConfig(epochs=2, batch_size=8, warmup_epochs=1)


def _hidden_leftovers(workspace: Workspace) -> list[str]:
    return [p.name for p in workspace.root.rglob(".*") if p.name != ".lock"]


def _commits(work) -> int:
    with crash_at_commit(None) as count:
        work()
    return count["commits"]


# ---------------------------------------------------------------- zoo generation


@pytest.fixture(scope="module")
def old_and_new_zoo(tmp_path_factory):
    """A workspace with an old zoo, and the zoo ZOO makes when nothing goes wrong."""
    root = tmp_path_factory.mktemp("zoo-faults")
    old = Workspace(root / "old")
    generate_zoo(old, ZooConfig(models=2, epochs=1, save_epochs=(1,), seed=9))
    reference = copy_workspace(old, root / "reference")
    commits = _commits(lambda: generate_zoo(reference, ZOO, replace=True))
    return old, load_zoos(reference)[0], commits


def test_zoo_generation_has_two_commits_per_saved_epoch_and_four_for_the_swap(old_and_new_zoo):
    # per epoch (0 and 1) its snapshot file, then the resumable state; a shard + the shards' manifest + table +
    # manifest in the build folder, 2 swap renames (old zoo aside, new one in), the manifest moved into place
    assert old_and_new_zoo[2] == 11


@pytest.mark.parametrize("crash_at", range(1, 12))
def test_a_crash_at_any_write_of_zoo_generate_replace_then_a_rerun_gives_the_uninterrupted_zoo(
    old_and_new_zoo, tmp_path, crash_at
):
    old, expected, _ = old_and_new_zoo
    old_weights = load_zoos(old)[0].weights
    workspace = copy_workspace(old, tmp_path / "ws")
    with pytest.raises(Crash), crash_at_commit(crash_at):
        generate_zoo(workspace, ZOO, replace=True)
    seen = load_zoos(workspace)[0]  # a reader between the crash and the rerun: the old zoo or the new, whole
    assert torch.equal(seen.weights, old_weights) or torch.equal(seen.weights, expected.weights)
    assert seen.spec.n_params == seen.weights.shape[1]

    generate_zoo(workspace, ZOO, replace=True)
    zoo = load_zoos(workspace)[0]
    assert torch.equal(zoo.weights, expected.weights) and zoo.table.equals(expected.table)
    assert _hidden_leftovers(workspace) == [] and not (workspace.root / "zoo.partial").exists()


@pytest.mark.parametrize("crash_at", [9, 10])  # a fresh workspace has no old zoo to set aside: one swap rename
def test_a_fresh_generation_cut_at_its_swap_finishes_without_replace(old_and_new_zoo, tmp_path, crash_at):
    """The zoo swapped in (and its manifest maybe not yet moved) is this generation's own: the same command
    finishes it, without --replace."""
    _, expected, _ = old_and_new_zoo
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(Crash), crash_at_commit(crash_at):
        generate_zoo(workspace, ZOO)
    assert workspace.exists() == (crash_at == 10)
    generate_zoo(workspace, ZOO)
    assert torch.equal(load_zoos(workspace)[0].weights, expected.weights)
    with pytest.raises(UserError, match="already holds a zoo"):
        generate_zoo(workspace, ZOO)  # once finished, a new generation must ask


# ---------------------------------------------------------------- autoencoder training and its map


def _quick_map(embeddings: np.ndarray, seed: int):
    """PCA for both maps: the crash windows are the subject here, not UMAP (which costs seconds a call)."""
    xy = PCA(n_components=2, random_state=seed).fit_transform(embeddings)
    return xy, xy


def _state_every_epoch(patch: pytest.MonkeyPatch) -> None:
    """The resumable state written after every epoch (it is written on a clock, core/rep/loop.py), so that the
    writes are the same in every run and each can be crashed at."""
    patch.setattr(loop, "STATE_EVERY_S", 0.0)
    patch.setattr(loop, "STATE_COST_FACTOR", 0.0)


@pytest.fixture(scope="module")
def trained_reference(tiny_zoo_workspace, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("core.rep.embed.project_2d", _quick_map)
        _state_every_epoch(patch)
        workspace = copy_workspace(tiny_zoo_workspace, tmp_path_factory.mktemp("ae-faults") / "ws")
        commits = _commits(lambda: train_and_map(workspace, TINY_AE, TRAIN, "run", evaluate=False))
    files = AERunFiles.of(workspace, "run")
    return read_tensors(files.model), files.read_map(), commits


def test_training_has_nine_commits(trained_reference):
    # statistics, config, 2 resumable states, model, history, config "trained", map, config "done"
    assert trained_reference[2] == 9


@pytest.mark.parametrize("crash_at", range(1, 10))
def test_a_crash_at_any_write_of_ae_train_then_a_rerun_ends_as_an_uninterrupted_run(
    tiny_zoo_workspace, trained_reference, tmp_path, monkeypatch, crash_at
):
    monkeypatch.setattr("core.rep.embed.project_2d", _quick_map)
    _state_every_epoch(monkeypatch)
    model, embeddings, _ = trained_reference
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    with pytest.raises(Crash), crash_at_commit(crash_at):
        train_and_map(workspace, TINY_AE, TRAIN, "run", evaluate=False)
    assert finished_ae_runs(workspace) == []  # not finished until its map is written

    run = train_and_map(workspace, TINY_AE, TRAIN, "run", evaluate=False)
    assert run.status == "done" and run.files.read_config()["status"] == "done"
    stored = read_tensors(run.files.model)
    assert stored.keys() == model.keys() and all(torch.equal(stored[k], model[k]) for k in model)
    assert run.files.read_map().equals(embeddings)
    assert finished_ae_runs(workspace) == ["run"] and _hidden_leftovers(workspace) == []


def test_a_writer_during_the_map_phase_is_told_busy(tiny_zoo_workspace, tmp_path, monkeypatch):
    """The lock is held from training to the end of the map: a zoo generation started then must not replace
    the zoo under the run (it used to, and the run then died with an IndexError)."""
    monkeypatch.setattr("core.rep.embed.project_2d", _quick_map)
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    in_map, release = threading.Event(), threading.Event()
    real_compute_map = pipeline.compute_map

    def held_map(*args, **kwargs):
        in_map.set()
        release.wait(60)
        return real_compute_map(*args, **kwargs)

    monkeypatch.setattr(pipeline, "compute_map", held_map)
    outcome = {}
    trainer = threading.Thread(
        target=lambda: outcome.update(run=train_and_map(workspace, TINY_AE, TRAIN, "run", evaluate=False))
    )
    trainer.start()
    try:
        assert in_map.wait(120)
        with pytest.raises(ZooError, match="busy"):
            generate_zoo(workspace, TINY, replace=True)
        with pytest.raises(ZooError, match="busy"):
            train_and_map(workspace, TINY_AE, TRAIN, "other", evaluate=False)
    finally:
        release.set()
        trainer.join(120)
    assert outcome["run"].status == "done" and load_run(workspace, "run").status == "done"


# ---------------------------------------------------------------- sampling


SAMPLE = SampleConfig(n=2, finetune_epochs=0, baselines=False, anchors="top:0.5")


@pytest.fixture(scope="module")
def sampled_reference(tiny_ae_workspace, tmp_path_factory):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path_factory.mktemp("sample-faults") / "ws")
    errors = ZooErrorSets()
    commits = _commits(lambda: generate(workspace, SAMPLE, zoo_errors=errors))
    return SamplesRun.list(workspace)[0], errors, commits


def _record(run: SamplesRun) -> dict:
    data = read_json(run.result_path)
    del data["created"], data["seconds"]  # when and how long: wall-clock facts, not the run's content
    return data


@pytest.mark.parametrize("crash_at", range(1, 7))
def test_a_crash_at_any_write_of_sample_then_a_rerun_gives_the_same_run(
    tiny_ae_workspace, sampled_reference, tmp_path, crash_at
):
    reference, errors, commits = sampled_reference
    assert commits == 6  # weights, samples, curves, novelty, result.json, then the run's folder swapped in
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    with pytest.raises(Crash), crash_at_commit(crash_at):
        generate(workspace, SAMPLE, zoo_errors=errors)
    assert SamplesRun.list(workspace) == []  # unfinished until result.json, written last

    run = generate(workspace, SAMPLE, zoo_errors=errors)
    assert _record(run) == _record(reference)
    for table in ("samples_table", "curves_table", "novelty_table"):
        assert getattr(run, table)().equals(getattr(reference, table)())
    assert all(torch.equal(run.weights()[k], reference.weights()[k]) for k in ("generated", "finetuned"))


# ---------------------------------------------------------------- packing


def test_a_crash_while_packing_or_unpacking_leaves_nothing_half_written(tiny_ae_workspace, tmp_path):
    reference = tmp_path / "reference.zip"
    pack_workspace(tiny_ae_workspace, reference)
    out = tmp_path / "out.zip"
    with pytest.raises(Crash), crash_at_commit(1):
        pack_workspace(tiny_ae_workspace, out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["reference.zip"]
    pack_workspace(tiny_ae_workspace, out)
    assert out.read_bytes() == reference.read_bytes()

    target = tmp_path / "unpacked"
    with pytest.raises(Crash), crash_at_commit(1):
        unpack_workspace(out, target)
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out.zip", "reference.zip"]
    unpacked = unpack_workspace(out, target)
    assert pl.DataFrame(load_zoos(unpacked)[0].table).equals(load_zoos(tiny_ae_workspace)[0].table)


# ---------------------------------------------------------------- full and read-only disks at every write

# Each command's writes, failed with a full disk at every one and with a read-only one at the first and the last.
# The engine raises the OSError (the command line's top handler makes it one line, exit 2); what is checked here
# is the store: no temporary file or build folder left, the state readable as before, and the same command
# afterwards (space freed) ends as an uninterrupted run.


def _disk_faults(commits: int) -> list:
    faults = [pytest.param(errno.ENOSPC, n, id=f"ENOSPC-{n}") for n in range(1, commits + 1)]
    return faults + [pytest.param(errno.EROFS, n, id=f"EROFS-{n}") for n in (1, commits)]


def _stray(workspace: Workspace) -> list[str]:
    """Temporary files and build folders (resumable state, meant to stay, is not counted)."""
    return [p.name for p in workspace.root.rglob(".*") if p.name.endswith(".tmp") or ".build-" in p.name]


@pytest.mark.parametrize("code, fail_at", _disk_faults(9))
def test_a_failing_disk_at_any_write_of_zoo_generate_replace_leaves_the_old_zoo_or_the_new(
    old_and_new_zoo, tmp_path, code, fail_at
):
    old, expected, _ = old_and_new_zoo
    workspace = copy_workspace(old, tmp_path / "ws")
    with pytest.raises((OSError, UserError)), disk_error_at_commit(fail_at, code):
        generate_zoo(workspace, ZOO, replace=True)
    assert _stray(workspace) == []
    seen = load_zoos(workspace)[0]
    assert torch.equal(seen.weights, load_zoos(old)[0].weights) or torch.equal(seen.weights, expected.weights)

    generate_zoo(workspace, ZOO, replace=True)
    assert torch.equal(load_zoos(workspace)[0].weights, expected.weights) and _hidden_leftovers(workspace) == []


@pytest.mark.parametrize("code, fail_at", _disk_faults(9))
def test_a_failing_disk_at_any_write_of_ae_train_leaves_no_finished_run_and_a_rerun_finishes(
    tiny_zoo_workspace, trained_reference, tmp_path, monkeypatch, code, fail_at
):
    monkeypatch.setattr("core.rep.embed.project_2d", _quick_map)
    _state_every_epoch(monkeypatch)
    model, embeddings, _ = trained_reference
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    with pytest.raises((OSError, UserError)), disk_error_at_commit(fail_at, code):
        train_and_map(workspace, TINY_AE, TRAIN, "run", evaluate=False)
    assert finished_ae_runs(workspace) == [] and _stray(workspace) == []

    run = train_and_map(workspace, TINY_AE, TRAIN, "run", evaluate=False)
    stored = read_tensors(run.files.model)
    assert all(torch.equal(stored[k], model[k]) for k in model) and run.files.read_map().equals(embeddings)
    assert _hidden_leftovers(workspace) == []


@pytest.mark.parametrize("code, fail_at", _disk_faults(6))
def test_a_failing_disk_at_any_write_of_sample_leaves_no_run_and_a_rerun_gives_the_same(
    tiny_ae_workspace, sampled_reference, tmp_path, code, fail_at
):
    reference, errors, _ = sampled_reference
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    with pytest.raises((OSError, UserError)), disk_error_at_commit(fail_at, code):
        generate(workspace, SAMPLE, zoo_errors=errors)
    assert SamplesRun.list(workspace) == [] and _stray(workspace) == []

    run = generate(workspace, SAMPLE, zoo_errors=errors)
    assert _record(run) == _record(reference) and _stray(workspace) == []


@pytest.mark.parametrize("fault", ["crash", "ENOSPC", "EROFS"])
def test_a_fault_as_ae_eval_refresh_writes_keeps_the_stored_figures_whole(tiny_ae_workspace, tmp_path, fault):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    eval_path = AERunFiles.of(workspace, load_run(workspace).name).eval
    evaluate_run(workspace)  # the stored figures a refresh replaces
    before = eval_path.read_bytes()
    faults = {
        "crash": (Crash, crash_at_commit(1)),
        "ENOSPC": (OSError, disk_error_at_commit(1, errno.ENOSPC)),
        "EROFS": (OSError, disk_error_at_commit(1, errno.EROFS)),
    }
    raised, injected = faults[fault]
    with pytest.raises(raised), injected as count:
        evaluate_run(workspace, refresh=True)
    assert count["commits"] == 0 and eval_path.read_bytes() == before and _stray(workspace) == []
    assert evaluate_run(workspace, refresh=True).keys() == read_json(eval_path).keys()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_failing_disk_at_the_swap_of_unpack_leaves_nothing(tiny_zoo_workspace, tmp_path, code):
    pack = tmp_path / "ws.zip"
    pack_workspace(tiny_zoo_workspace, pack)
    with pytest.raises(UserError, match="target: cannot be made"), disk_error_at_commit(1, code):
        unpack_workspace(pack, tmp_path / "new" / "target")
    assert os.listdir(tmp_path) == ["ws.zip"]


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
@pytest.mark.parametrize("where", ["writing", "commit"])
@pytest.mark.parametrize("command", ["pack", "export"])
def test_a_failing_disk_while_packing_or_exporting_is_one_line_naming_the_output(
    sampled_reference, tmp_path, monkeypatch, command, where, code, message
):
    """In the middle of writing the zip and at its rename: a UserError naming --out, the file that was there kept
    (written with --force), nothing else left in its folder; the same command then succeeds."""
    run = sampled_reference[0]
    workspace = Workspace(run.folder.parent.parent)
    out = tmp_path / "out.zip"
    out.write_text("old")
    commands = {
        "pack": lambda: pack_workspace(workspace, out, force=True),
        "export": lambda: export_samples(workspace, run.name, "safetensors", out, force=True),
    }
    fault = disk_error_at_commit(1, code) if where == "commit" else contextlib.nullcontext()
    if where == "writing":
        real_writestr, calls = zipfile.ZipFile.writestr, []

        def failing_second_member(self, *args, **kwargs):
            calls.append(args[0])
            if len(calls) == 2:
                raise OSError(code, os.strerror(code))
            return real_writestr(self, *args, **kwargs)

        monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_second_member)
    with pytest.raises(UserError, match=f"out.zip: cannot be written \\(.*{message}.*nothing was written"), fault:
        commands[command]()
    assert out.read_text() == "old" and os.listdir(tmp_path) == ["out.zip"]

    monkeypatch.undo()
    commands[command]()
    assert zipfile.ZipFile(out).namelist() and os.listdir(tmp_path) == ["out.zip"]


def test_a_pack_killed_while_writing_leaves_a_file_that_the_next_pack_removes(tiny_zoo_workspace, tmp_path):
    """kill -9 (no cleanup runs) while `workspace pack` writes its zip: the temporary file stays, locked, while
    the writer lives (a concurrent pack of the same file leaves it alone and is the one that finishes), and the
    next command naming that output after the death removes it, even one that is refused."""
    out, ready = tmp_path / "out.zip", tmp_path / "ready"
    code = (
        "import sys, time, zipfile; from pathlib import Path\n"
        "from core.pipeline import pack_workspace; from core.store.workspace import Workspace\n"
        "real = zipfile.ZipFile.writestr\n"
        "def stall(self, *a, **k):\n"
        "    real(self, *a, **k); Path(sys.argv[3]).touch(); time.sleep(600)\n"
        "zipfile.ZipFile.writestr = stall\n"
        "pack_workspace(Workspace(sys.argv[1]), Path(sys.argv[2]))\n"
    )
    args = [sys.executable, "-c", code, str(tiny_zoo_workspace.root), str(out), str(ready)]
    child = subprocess.Popen(args, cwd=os.getcwd())
    try:
        for _ in range(1200):
            if ready.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        [left] = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        os.utime(left, (1, 1))  # old enough to be removed, were it abandoned
        pack_workspace(tiny_zoo_workspace, out)
        assert left.exists()
    finally:
        child.kill()  # SIGKILL: no finally block of the child runs
        child.wait()
    assert left.exists() and zipfile.ZipFile(out).testzip() is None
    with pytest.raises(UserError, match="is a workspace pack"):
        pack_workspace(tiny_zoo_workspace, out, force=True)
    assert sorted(os.listdir(tmp_path)) == ["out.zip", "ready"]


def test_an_unpack_killed_while_validating_leaves_a_folder_that_the_next_unpack_there_removes(
    tiny_zoo_workspace, tmp_path
):
    """kill -9 during `workspace unpack`: its build folder stays, locked, while it lives (a concurrent unpack
    into the same folder leaves it alone and is the one that finishes), and the next unpack naming that folder
    after the death removes it, even one that is refused."""
    pack, target, ready = tmp_path / "ws.zip", tmp_path / "target", tmp_path / "ready"
    pack_workspace(tiny_zoo_workspace, pack)
    code = (
        "import sys, time; from pathlib import Path; from core.store.packing import unpack_workspace\n"
        "def stall(workspace):\n"
        "    Path(sys.argv[3]).touch(); time.sleep(600)\n"
        "unpack_workspace(sys.argv[1], sys.argv[2], stall)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(pack), str(target), str(ready)], cwd=os.getcwd())
    try:
        for _ in range(1200):
            if ready.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        [left] = [p for p in tmp_path.iterdir() if p.name.startswith(".target.unpack-")]
        os.utime(left, (1, 1))  # old enough to be removed, were it abandoned
        unpack_workspace(pack, target)
        assert left.exists()
    finally:
        child.kill()  # SIGKILL: no finally block of the child runs
        child.wait()
    assert left.exists() and load_zoos(Workspace(target))
    with pytest.raises(UserError, match="already exists"):
        unpack_workspace(pack, target)
    assert sorted(os.listdir(tmp_path)) == ["ready", "target", "ws.zip"]
