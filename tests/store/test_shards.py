"""Shard sets: lazy reads by rows and columns, the single-file layout read as one shard, and the commit by one
manifest swap (a writer killed in the middle leaves the old set whole)."""

import json
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import save_file

from core.errors import ZooError
from core.store import shards
from core.store.shards import ShardSetWriter, block_rows, open_shard_set, open_single_file, write_shard_set
from core.store.workspace import Workspace
from core.zoo import model_zoo
from core.zoo.model_zoo import Zoo, load_zoos, save_zoo
from tests.conftest import copy_workspace

MATRIX = torch.arange(7 * 5, dtype=torch.float32).view(7, 5)


def test_reads_by_rows_and_columns_cross_shards(tmp_path):
    write_shard_set(tmp_path, {"a": block_rows(MATRIX, 3), "b": [MATRIX[:2] * -1]})
    stored = open_shard_set(tmp_path)
    assert [s.rows for s in stored["a"].shards] == [3, 3, 1] and stored["a"].shape == (7, 5)
    assert torch.equal(stored["a"].rows([6, 0, 3, 3, 2]), MATRIX[[6, 0, 3, 3, 2]])  # any order, repeats
    assert torch.equal(stored["a"].block(2, 7, 1, 3), MATRIX[2:7, 1:3])  # rows 2..6 span all three shards
    assert torch.equal(stored["b"].block(0, 2), -MATRIX[:2])
    with pytest.raises(IndexError):
        stored["a"].rows([7])


def test_a_single_file_reads_as_one_shard(tmp_path):
    save_file({"weights": MATRIX}, str(tmp_path / "weights.safetensors"))
    stored = open_single_file(tmp_path / "weights.safetensors")["weights"]
    assert len(stored.shards) == 1 and torch.equal(stored.rows([4, 1]), MATRIX[[4, 1]])
    save_file({"weights": MATRIX.double()}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(ZooError, match="expected float32"):
        open_single_file(tmp_path / "weights.safetensors")


def test_a_manifest_is_checked_against_its_shards(tmp_path):
    manifest = write_shard_set(tmp_path, {"a": block_rows(MATRIX, 4)})
    path = tmp_path / "manifest.json"
    first = manifest["tensors"]["a"]["shards"][0]
    for change, message in (
        ({"file": "../elsewhere.safetensors"}, "plain safetensors file name"),
        ({"rows": 5}, r"holds \[4, 5\], the shard manifest says \[5, 5\]"),
        ({"rows": -1}, "'rows' must be an integer >= 0"),
    ):
        edited = json.loads(json.dumps(manifest))
        edited["tensors"]["a"]["shards"][0] = {**first, **change}
        path.write_text(json.dumps(edited))
        with pytest.raises(ZooError, match=message):
            open_shard_set(tmp_path)


def test_a_writer_takes_back_rows_written_and_commits_only_what_it_keeps(tmp_path):
    writer = ShardSetWriter(tmp_path)
    for start in (0, 3, 6):
        writer.add("a", MATRIX[start : start + 3])  # shards of rows 0-2, 3-5, 6
    writer.add("b", MATRIX[:2])
    assert writer.rows("a") == 7 and len(list(tmp_path.glob("*.safetensors"))) == 4
    head = writer.cut("a", 4)  # rows 4.. go: the last shard, and the one row 4 falls in, whose row 3 comes back
    assert torch.equal(head, MATRIX[3:4]) and writer.rows("a") == 3
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert writer.cut("b", 0).shape == (0, 5) and "b" not in writer.manifest["tensors"]
    writer.add("a", head)
    writer.commit()
    stored = open_shard_set(tmp_path)
    assert list(stored) == ["a"] and torch.equal(stored["a"].block(0, 4), MATRIX[:4])


_KILLED_WRITER = """
import os, signal, sys, torch
from core.store.shards import write_shard_set

def blocks():
    yield torch.full((2, 5), 9.0)
    os.kill(os.getpid(), signal.SIGKILL)  # killed after writing a new shard, before the manifest swap

write_shard_set(__import__("pathlib").Path(sys.argv[1]), {"a": blocks()})
"""


def test_a_writer_killed_mid_commit_leaves_the_old_set(tmp_path):
    write_shard_set(tmp_path, {"a": block_rows(MATRIX, 3)})
    before = {p.name for p in tmp_path.glob("*.safetensors")}
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], env=env, check=False)
    assert killed.returncode == -9
    assert len(set(tmp_path.glob("*.safetensors"))) == len(before) + 1  # the new shard is there, unlisted
    assert torch.equal(open_shard_set(tmp_path)["a"].block(0, 7), MATRIX)  # the old set reads whole
    write_shard_set(tmp_path, {"a": [MATRIX[:1]]})  # the next commit removes the orphan and the old set
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    assert torch.equal(open_shard_set(tmp_path)["a"].block(0, 1), MATRIX[:1])


def test_a_crash_after_the_swap_leaves_the_new_set(tmp_path, monkeypatch):
    write_shard_set(tmp_path, {"a": block_rows(MATRIX, 3)})

    def crash(folder, manifest):
        raise OSError("killed before the old shards went")

    monkeypatch.setattr(shards, "remove_unlisted", crash)
    with pytest.raises(OSError):
        write_shard_set(tmp_path, {"a": [MATRIX[:2] + 1]})
    assert torch.equal(open_shard_set(tmp_path)["a"].block(0, 2), MATRIX[:2] + 1)


def test_a_workspace_zoo_in_many_shards_reads_as_the_zoo_in_memory(tiny_zoo_workspace, tmp_path, monkeypatch):
    memory = load_zoos(tiny_zoo_workspace)[0]
    weights = memory.weights
    monkeypatch.setattr(model_zoo, "SHARD_BYTES", 5 * 4 * memory.spec.n_params)  # 5 checkpoints a shard
    workspace = Workspace(tmp_path / "ws")
    save_zoo(workspace, [Zoo(memory.spec, weights, memory.table, memory.manifest)])
    zoo = load_zoos(workspace)[0]
    assert len(zoo.store.shards) == 4  # 18 checkpoints
    assert torch.equal(zoo.weights, weights)
    assert torch.equal(torch.cat([chunk for _, chunk in zoo.iter_chunks(4)]), weights)
    assert [start for start, _ in zoo.iter_chunks(4)] == [0, 4, 8, 12, 16]
    assert torch.equal(zoo.rows([17, 2, 9]), weights[[17, 2, 9]])
    assert torch.equal(zoo.columns(10, 30), weights[:, 10:30])


def test_skipped_checkpoints_are_left_out_of_every_read(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    weights = load_zoos(workspace)[0].weights
    broken = weights.clone()
    broken[[1, 6], 3] = float("inf")
    zoo = load_zoos(workspace)[0]
    save_zoo(workspace, [Zoo(zoo.spec, broken, zoo.table, zoo.manifest)])
    zoo = load_zoos(workspace)[0]
    keep = np.setdiff1d(np.arange(18), [1, 6])
    assert zoo.table["checkpoint"].to_list() == keep.tolist() and len(zoo) == 16
    assert torch.equal(zoo.weights, weights[keep])
    assert torch.equal(torch.cat([chunk for _, chunk in zoo.iter_chunks(5)]), weights[keep])
    assert torch.equal(zoo.rows([0, 1, 15]), weights[keep[[0, 1, 15]]])
    assert torch.equal(zoo.columns(0, 7), weights[keep, :7])
    assert zoo.table.filter(pl.col("checkpoint") == 2)["model_id"].item() == zoo.table["model_id"][1]
