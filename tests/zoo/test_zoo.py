"""Zoo generation, storage, validation and resumption."""

import dataclasses
import json
import shutil
import threading
from dataclasses import replace

import polars as pl
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from core.errors import Interrupted, UserError, ZooError
from core.store.files import read_tensor_metadata, read_tensors, write_json, write_tensors
from core.store.workspace import Workspace, versioned
from core.zoo.arch import build_module, cnn_small
from core.zoo.data import load_dataset
from core.zoo.generate import ZooConfig, generate_zoo, model_seed, plan_models
from core.zoo.model_zoo import Zoo, load_zoos, save_zoo, zoo_info
from core.zoo.population import init_vector
from tests.conftest import TINY, copy_workspace


def test_generated_zoo_layout_and_summary(tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    assert (tiny_zoo_workspace.root / "zoo" / "shards" / "manifest.json").exists()
    assert zoo.weights.shape == (6 * 3, zoo.spec.n_params)
    assert zoo.table["epoch"].to_list() == [0, 1, 3] * 6
    assert zoo.table["model_id"].to_list() == [m for m in range(6) for _ in range(3)]
    info = zoo_info([zoo])
    assert info["models"] == 6 and info["checkpoints"] == 18 and info["n_params"] == 1288
    assert info["architecture"] == "cnn-small" and info["dataset"] == "digits"
    assert info["test_acc"]["min"] <= info["test_acc"]["mean"] <= info["test_acc"]["max"]
    assert not (tiny_zoo_workspace.root / "zoo.partial").exists()


def test_epoch_zero_is_the_init_and_training_improves(tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    first = zoo.table.row(0, named=True)
    assert first["seed"] == model_seed(TINY.seed, 0)
    assert torch.equal(zoo.weights[0], init_vector(zoo.spec, first["init_seed"], first["init"]))
    by_epoch = zoo.table.group_by("epoch").agg(pl.col("test_acc").mean()).sort("epoch")["test_acc"].to_list()
    assert by_epoch[-1] > by_epoch[0] + 0.3


def test_stored_metrics_are_what_a_plain_module_measures(tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    data = load_dataset("digits", seed=0)
    for row in (2, 7, 17):
        model = build_module(zoo.spec_for(row), zoo.weights[row])
        logits = model(data.x_test)
        assert zoo.table["test_acc"][row] == pytest.approx((logits.argmax(1) == data.y_test).float().mean().item())
        assert zoo.table["test_loss"][row] == pytest.approx(F.cross_entropy(logits, data.y_test).item(), rel=1e-4)
        assert zoo.table["ggap"][row] == pytest.approx(zoo.table["train_acc"][row] - zoo.table["test_acc"][row])


def test_validation_accuracy_is_scored_on_the_images_selection_scores_on(tmp_path, monkeypatch):
    """The table's val_acc is measured on the dataset's `scored_val` (its first SCORED_VAL_IMAGES), the images the
    generator ranks draws on, not on the whole split."""
    monkeypatch.setattr("core.zoo.data.SCORED_VAL_IMAGES", 20)
    config = ZooConfig(models=3, epochs=1, save_epochs=(0, 1), seed=4)
    zoo = generate_zoo(Workspace(tmp_path / "ws"), config)[0]
    data = load_dataset("digits", seed=0)
    x, y = data.scored_val
    assert len(y) == 20 < len(data.y_val)
    for row in range(zoo.table.height):
        model = build_module(zoo.spec_for(row), zoo.weights[row])
        with torch.no_grad():
            assert zoo.table["val_acc"][row] == pytest.approx((model(x).argmax(1) == y).float().mean().item())


def test_same_seed_same_zoo_and_variations_are_drawn(tmp_path):
    config = ZooConfig(
        models=4,
        epochs=1,
        save_epochs=(1,),
        seed=9,
        inits=("uniform", "xavier_normal"),
        lrs=(1e-3, 1e-2),
        activations=("relu", "tanh"),
    )
    a = generate_zoo(Workspace(tmp_path / "a"), config)[0]
    b = generate_zoo(Workspace(tmp_path / "b"), config)[0]
    c = generate_zoo(Workspace(tmp_path / "c"), dataclasses.replace(config, seed=10))[0]
    assert torch.equal(a.weights, b.weights)
    assert not torch.equal(a.weights, c.weights)
    plan = plan_models(dataclasses.replace(config, models=64))
    assert set(plan["init"]) == {"uniform", "xavier_normal"}
    assert set(plan["activation"]) == {"relu", "tanh"}
    assert set(plan["lr"]) == {1e-3, 1e-2}


def test_models_can_share_a_few_inits_and_still_differ(tmp_path):
    zoo = generate_zoo(Workspace(tmp_path / "ws"), ZooConfig(models=4, epochs=1, save_epochs=(0, 1), init_seeds=2))[0]
    start = zoo.weights[zoo.table["epoch"].to_numpy() == 0]
    assert torch.equal(start[0], start[2]) and torch.equal(start[1], start[3])
    assert not torch.equal(start[0], start[1])
    trained = zoo.weights[zoo.table["epoch"].to_numpy() == 1]
    assert not torch.equal(trained[0], trained[2])  # own data order
    assert zoo.table["init_seed"].n_unique() == 2 and zoo.table["seed"].n_unique() == 4
    own = plan_models(ZooConfig(models=5, init_seeds=0))
    assert own["init_seed"].to_list() == own["seed"].to_list()  # 0: every model its own init


def test_mixed_activations_keep_each_models_function(tmp_path):
    config = ZooConfig(models=4, epochs=1, save_epochs=(1,), seed=1, activations=("relu", "tanh"))
    zoo = generate_zoo(Workspace(tmp_path / "ws"), config)[0]
    data = load_dataset("digits")
    assert set(zoo.table["activation"]) == {"relu", "tanh"}
    for row in range(zoo.table.height):
        logits = build_module(zoo.spec_for(row), zoo.weights[row])(data.x_test)
        assert zoo.table["test_acc"][row] == pytest.approx((logits.argmax(1) == data.y_test).float().mean().item())


def test_interrupted_generation_resumes_to_the_same_zoo_and_keeps_the_old_one_readable(tmp_path):
    config = ZooConfig(models=3, epochs=3, save_epochs=(0, 2, 3), seed=4)
    reference = generate_zoo(Workspace(tmp_path / "reference"), config)[0]

    workspace = Workspace(tmp_path / "ws")
    old = generate_zoo(workspace, dataclasses.replace(config, epochs=1, save_epochs=(1,)))[0]
    calls = []
    with pytest.raises(UserError, match="already holds a zoo"):
        generate_zoo(workspace, config)
    with pytest.raises(Interrupted):
        generate_zoo(workspace, config, should_stop=lambda: calls.append(1) or len(calls) >= 2, replace=True)
    assert (workspace.root / "zoo.partial" / "state.safetensors").exists()
    # epochs 0 and 1 trained: epoch 0's snapshot kept on disk (epoch 1 is not saved), nothing swapped in yet
    assert [p.name for p in (workspace.root / "zoo.partial").glob("snapshot-*")] == ["snapshot-0-0.safetensors"]
    still_there = load_zoos(workspace)[0]
    assert torch.equal(still_there.weights, old.weights)

    seen = []  # resuming needs no --replace again: the interrupted run was given it
    resumed = generate_zoo(workspace, config, on_progress=lambda done, total, info: seen.append(info["epoch"]))[0]
    assert seen == [2, 3]  # epochs 0 and 1 were not trained again
    assert torch.equal(resumed.weights, reference.weights)
    assert resumed.table.drop("ggap").equals(reference.table.drop("ggap"))
    assert not (workspace.root / "zoo.partial").exists()


def test_a_partial_run_of_the_layout_before_snapshot_files_starts_over(tmp_path):
    """Before snapshot files, the state file held the snapshots itself and its progress listed none: such a run
    is trained again from the start (its snapshots are not read), and gives the zoo a clean run gives."""
    config = ZooConfig(models=2, epochs=2, save_epochs=(0, 2), seed=4)
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(Interrupted):
        generate_zoo(workspace, config, should_stop=lambda: True)
    state = workspace.root / "zoo.partial" / "state.safetensors"
    progress = json.loads(read_tensor_metadata(state)["progress"])
    del progress["snapshots"]
    tensors = {**read_tensors(state), "saved/cnn-small": torch.zeros(2, 1288)}
    write_tensors(state, tensors, {"progress": json.dumps(progress)})
    seen = []
    zoo = generate_zoo(workspace, config, on_progress=lambda done, total, info: seen.append(info["epoch"]))[0]
    assert seen == [0, 1, 2]
    assert torch.equal(zoo.weights, generate_zoo(Workspace(tmp_path / "clean"), config)[0].weights)


def test_a_partial_run_of_other_settings_is_not_mixed_in(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    config = ZooConfig(models=2, epochs=2, save_epochs=(0, 2), seed=4)
    with pytest.raises(Interrupted):
        generate_zoo(workspace, config, should_stop=lambda: True)
    other = dataclasses.replace(config, seed=5)
    fresh = generate_zoo(workspace, other)[0]
    assert torch.equal(fresh.weights, generate_zoo(Workspace(tmp_path / "clean"), other)[0].weights)


def test_second_writer_is_told_the_workspace_is_busy(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    holding, release = threading.Event(), threading.Event()

    def other_writer():
        with workspace.lock():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=other_writer)
    thread.start()
    try:
        holding.wait(10)
        with pytest.raises(ZooError, match="busy"):
            generate_zoo(workspace, ZooConfig(models=1, epochs=0, save_epochs=(0,)))
    finally:
        release.set()
        thread.join()


def test_the_lock_is_re_entrant_within_a_thread(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    with workspace.lock(), workspace.lock():
        (workspace.root / "inside").write_text("held twice")
    with workspace.lock():  # released both times: taking it again works
        pass


def _as_single_file(workspace: Workspace) -> torch.Tensor:
    """Rewrite a workspace's weights as written before shards: whole, in zoo/weights.safetensors. Returns them."""
    weights = load_zoos(workspace)[0].weights
    save_file({"cnn-small": weights}, str(workspace.zoo_dir / "weights.safetensors"))
    shutil.rmtree(workspace.zoo_dir / "shards")
    return weights


def test_corrupted_weights_file_is_named(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    _as_single_file(workspace)
    (workspace.zoo_dir / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ZooError, match="weights.safetensors"):
        load_zoos(workspace)[0]


def test_row_count_and_shape_mismatches_are_reported(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    weights = _as_single_file(workspace)
    save_file({"cnn-small": weights[:-1].contiguous()}, str(workspace.zoo_dir / "weights.safetensors"))
    with pytest.raises(ZooError, match="models.parquet: 18 rows of cnn-small, but .*weights.safetensors holds 17"):
        load_zoos(workspace)[0]
    save_file({"cnn-small": weights[:, :-1].contiguous()}, str(workspace.zoo_dir / "weights.safetensors"))
    with pytest.raises(ZooError, match="1287 values"):
        load_zoos(workspace)[0]
    save_file({"other": weights}, str(workspace.zoo_dir / "weights.safetensors"))
    with pytest.raises(ZooError, match="weights.safetensors: has no matrix named 'cnn-small'"):
        load_zoos(workspace)[0]
    save_file({"cnn-small": weights}, str(workspace.zoo_dir / "weights.safetensors"))
    (workspace.zoo_dir / "models.parquet").write_text("not parquet")
    with pytest.raises(ZooError, match="models.parquet"):
        load_zoos(workspace)[0]


def test_a_nan_model_is_reported_and_skipped(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    weights = _as_single_file(workspace).clone()
    weights[4, 10] = float("nan")
    save_file({"cnn-small": weights}, str(workspace.zoo_dir / "weights.safetensors"))
    zoo = load_zoos(workspace)[0]
    assert len(zoo.skipped) == 1 and "checkpoint 4" in zoo.skipped[0]
    assert zoo.weights.shape[0] == 17 and 4 not in zoo.table["checkpoint"].to_list()
    assert torch.isfinite(zoo.weights).all()


def test_huge_finite_weights_are_skipped_like_nan_and_a_zoo_of_only_those_is_refused(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    weights = _as_single_file(workspace).clone()
    weights[2, 0] = 3e38  # finite in float32, and made training and sampling fail with a ValueError
    weights[5, 1] = -2e6
    weights[7, 2] = 1e6  # at the bound: kept
    save_file({"cnn-small": weights}, str(workspace.zoo_dir / "weights.safetensors"))
    zoo = load_zoos(workspace)[0]
    assert [s.split(" (")[0] for s in zoo.skipped] == ["checkpoint 2", "checkpoint 5"]
    assert all("beyond ±1e+06" in s for s in zoo.skipped)
    assert 7 in zoo.table["checkpoint"].to_list() and zoo.weights.abs().max() == 1e6
    save_file({"cnn-small": torch.full_like(weights, 3e38)}, str(workspace.zoo_dir / "weights.safetensors"))
    with pytest.raises(ZooError, match="models.parquet: no usable checkpoint"):
        load_zoos(workspace)


def test_missing_workspace_and_empty_manifest(tmp_path):
    with pytest.raises(ZooError, match="no such workspace"):
        load_zoos(Workspace(tmp_path / "nowhere"))[0]
    workspace = Workspace(tmp_path / "ws")
    workspace.root.mkdir()
    write_json(workspace.manifest_path, versioned({}))
    with pytest.raises(ZooError, match="holds no zoo yet"):
        load_zoos(workspace)[0]
    workspace.manifest_path.write_text("{broken")
    with pytest.raises(ZooError, match="workspace.json: not valid JSON"):
        load_zoos(workspace)[0]


def _as_format_1(workspace: Workspace) -> None:
    """Rewrite a workspace as the first format wrote it: one `architecture`, a tensor called `weights`, and
    no `architecture` column."""
    save_file({"weights": _as_single_file(workspace)}, str(workspace.zoo_dir / "weights.safetensors"))
    manifest = json.loads(workspace.manifest_path.read_text())
    manifest["architecture"] = manifest.pop("architectures")["cnn-small"]
    manifest["format_version"] = 1
    workspace.manifest_path.write_text(json.dumps(manifest))
    table = pl.read_parquet(workspace.zoo_dir / "models.parquet").drop("architecture")
    table.write_parquet(workspace.zoo_dir / "models.parquet")


def test_a_format_1_workspace_loads_as_before(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    current = load_zoos(workspace)[0]
    weights = current.weights  # read now: a loaded zoo reads its files lazily, and they are about to be replaced
    _as_format_1(workspace)
    old = load_zoos(workspace)[0]
    assert torch.equal(old.weights, weights) and old.spec == current.spec
    assert old.table.equals(current.table)  # the architecture column is filled in on load
    assert zoo_info([old])["architecture"] == "cnn-small"


def test_a_workspace_holds_several_architectures(tiny_zoo_workspace, tmp_path):
    small = load_zoos(tiny_zoo_workspace)[0]
    wide_spec = replace(cnn_small(widths=(4, 4, 4)), name="cnn-small-w4")
    wide_table = small.table.with_columns(pl.col("checkpoint") + small.table.height, pl.col("model_id") + 100)
    wide = Zoo(wide_spec, torch.randn(small.table.height, wide_spec.n_params), wide_table, small.manifest)
    workspace = Workspace(tmp_path / "mixed")
    save_zoo(workspace, [small, wide])
    manifest = workspace.manifest()
    assert manifest["format_version"] == 2 and list(manifest["architectures"]) == ["cnn-small", "cnn-small-w4"]
    loaded = load_zoos(workspace)
    assert [z.spec.name for z in loaded] == ["cnn-small", "cnn-small-w4"]
    assert torch.equal(loaded[1].weights, wide.weights) and loaded[1].spec == wide_spec
    assert loaded[1].table["checkpoint"].to_list() == list(range(18, 36))
    assert set(loaded[1].table["architecture"]) == {"cnn-small-w4"}
    info = zoo_info(loaded)
    assert info["checkpoints"] == 36 and info["models"] == 12 and info["architecture"] == "cnn-small + cnn-small-w4"
    assert info["architectures"]["cnn-small-w4"]["n_params"] == wide_spec.n_params
    with pytest.raises(ZooError, match="unique"):
        save_zoo(workspace, [small, small])
