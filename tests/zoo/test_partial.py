"""The resumable state of a generation (core/zoo/partial.py): each snapshot file holds its table rows, exactly;
the progress lists files and no rows; a partial run of the layout before that (rows in the progress, none in the
snapshot files), unsharded or sharded, starts over instead of mixing runs."""

import json
import math

import polars as pl
import pytest
import torch

from core.errors import Interrupted
from core.store.files import read_tensor_metadata, read_tensors, write_json, write_tensors
from core.store.shards import SHARD_KEY, Shard
from core.store.workspace import Workspace
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.partial import SNAPSHOT_SCHEMA, Partial, snapshot_table
from core.zoo.table import METRICS

CONFIG = ZooConfig(models=2, epochs=2, save_epochs=(0, 2), seed=4)


def table_of(seeds: list[int], epoch: int, values: list[float]) -> pl.DataFrame:
    columns = {"seed": seeds, "epoch": [epoch] * len(seeds), **{m: list(values) for m in METRICS}}
    return pl.DataFrame(columns, schema=SNAPSHOT_SCHEMA)


def interrupted_after_first_epoch(workspace: Workspace):
    """Generate CONFIG's zoo into `workspace`, stopped at the second check (after epoch 0): its zoo.partial/."""
    calls = []
    with pytest.raises(Interrupted):
        generate_zoo(workspace, CONFIG, should_stop=lambda: calls.append(1) or len(calls) == 2)
    return workspace.root / "zoo.partial"


def test_a_snapshot_file_holds_its_table_rows_bit_for_bit(tmp_path):
    partial = Partial(tmp_path / "zoo.partial", CONFIG)
    # A diverged model's loss (nan, inf) and a float32 accuracy that JSON must not round.
    values = [float(torch.tensor(1 / 3)), math.nan, math.inf]
    table = table_of([2**40 + 1, 7, 9], 3, values)
    shard = partial.save_snapshot(1, 3, torch.randn(3, 5), table, block=2)
    assert shard.path.name == "block-2-snapshot-3-1.safetensors" and shard.rows == 3
    back = snapshot_table(shard)
    assert back.schema == table.schema and back["seed"].to_list() == [2**40 + 1, 7, 9]
    assert back["train_loss"][0] == values[0] and math.isnan(back["train_loss"][1]) and back["test_acc"][2] == math.inf


def test_a_snapshot_needs_one_table_row_per_model(tmp_path):
    partial = Partial(tmp_path / "zoo.partial", CONFIG)
    with pytest.raises(ValueError, match="a snapshot of 3 models needs their rows"):
        partial.save_snapshot(0, 0, torch.randn(3, 5), table_of([1, 2], 0, [0.5, 0.5]))


def test_the_progress_lists_the_snapshot_files_and_no_rows(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    folder = interrupted_after_first_epoch(workspace)
    progress = json.loads(read_tensor_metadata(folder / "state.safetensors")["progress"])
    assert "rows" not in progress and "rows" not in progress["finished"]
    assert progress["snapshots"] == {"cnn-small": [{"file": "snapshot-0-0.safetensors", "rows": 2}]}
    kept = snapshot_table(Shard(folder / "snapshot-0-0.safetensors", SHARD_KEY, 2))
    zoo = generate_zoo(workspace, CONFIG)[0]
    first = zoo.table.filter(pl.col("epoch") == 0).select(list(SNAPSHOT_SCHEMA))
    assert kept.equals(first)  # the rows the zoo's table got are the ones the snapshot file holds


def without_snapshot_tables(folder) -> None:
    """Rewrite every snapshot file as the layout before snapshot tables wrote it: weights only."""
    for path in folder.glob("*snapshot-*.safetensors"):
        write_tensors(path, read_tensors(path))


def test_a_partial_run_with_rows_in_its_progress_starts_over(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    folder = interrupted_after_first_epoch(workspace)
    state = folder / "state.safetensors"
    progress = json.loads(read_tensor_metadata(state)["progress"])
    progress["rows"] = [{"seed": 1, "epoch": 0, **dict.fromkeys(METRICS, 0.5)}] * 2
    write_tensors(state, read_tensors(state), {"progress": json.dumps(progress)})
    without_snapshot_tables(folder)
    seen = []
    zoo = generate_zoo(workspace, CONFIG, on_progress=lambda done, total, info: seen.append(info["epoch"]))[0]
    assert seen == [0, 1, 2]
    clean = generate_zoo(Workspace(tmp_path / "clean"), CONFIG)[0]
    assert torch.equal(zoo.weights, clean.weights) and zoo.table.drop("ggap").equals(clean.table.drop("ggap"))


def test_finished_ray_shards_of_the_layout_before_snapshot_tables_are_trained_again(tmp_path):
    """A shard's progress from before listed its rows and its snapshot files held none: resume_shards keeps
    nothing and clears the folder (no Ray needed: the driver's bookkeeping alone)."""
    folder = tmp_path / "zoo.partial"
    partial = Partial(folder, CONFIG)
    stamp = {"zoo_id": None}
    shard = partial.save_snapshot(0, 0, torch.zeros(2, 1288), table_of([1, 2], 0, [0.5, 0.5]), shard=0)
    partial.replaces = stamp
    partial.save_shard(0, 2, {"cnn-small": [shard]})
    assert set(Partial(folder, CONFIG).resume_shards(stamp, 2, {"cnn-small": 1288})) == {0}  # today's layout

    progress = json.loads((folder / "shard-0.json").read_text()) | {"rows": [{"seed": 1}, {"seed": 2}]}
    write_json(folder / "shard-0.json", progress)
    write_tensors(shard.path, {SHARD_KEY: torch.zeros(2, 1288)})
    assert Partial(folder, CONFIG).resume_shards(stamp, 2, {"cnn-small": 1288}) == {}
    assert not folder.exists()
