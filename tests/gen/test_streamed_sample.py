"""A generation under a budget that splits the zoo into many chunks gives the figures of one that reads it whole;
its reads of the zoo stay within a chunk; the anchors are encoded once, and the zoo's sample only when a sampler
needs it."""

import numpy as np
import polars as pl
import pytest
import torch

from core.gen import anchors as anchors_module
from core.gen.anchors import distinct_rows
from core.gen.config import SampleConfig
from core.pipeline import generate
from core.rep.run import AERun
from core.store.shards import ShardedRows
from core.zoo.model_zoo import load_zoos
from tests.conftest import copy_workspace
from tests.gen.budgets import CHUNK, small_budget, whole_budget

CONFIG = SampleConfig(anchors="top:0.5", n=4, finetune_epochs=1, seed=3)


def test_a_generation_read_in_small_chunks_gives_the_figures_of_one_read_whole(
    tiny_ae_workspace, tmp_path, monkeypatch
):
    whole_budget(monkeypatch)
    whole = generate(copy_workspace(tiny_ae_workspace, tmp_path / "whole"), CONFIG)
    small_budget(monkeypatch, load_zoos(tiny_ae_workspace)[0].spec.n_params)
    chunked = generate(copy_workspace(tiny_ae_workspace, tmp_path / "chunked"), CONFIG)
    for group, curve in whole.curves.items():  # the baselines and their frontier too
        np.testing.assert_allclose(chunked.curves[group], curve, atol=1e-6, err_msg=group)
    assert chunked.novelty.keys() == whole.novelty.keys()
    for name, value in whole.novelty.items():
        assert chunked.novelty[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert [p["acc_mean"] for p in chunked.extra["noise_frontier"]] == [
        p["acc_mean"] for p in whole.extra["noise_frontier"]
    ]
    first, second = (pl.read_parquet(run.samples_path) for run in (whole, chunked))
    for column in ("acc_epoch0", "min_l2", "max_iou", "max_agreement", "decoded_min_l2", "decoded_max_iou"):
        np.testing.assert_allclose(second[column], first[column], rtol=1e-4, atol=1e-5, err_msg=column)
    torch.testing.assert_close(chunked.weights()["generated"], whole.weights()["generated"], rtol=1e-4, atol=1e-5)


def test_a_generation_reads_the_zoo_a_chunk_at_a_time(tiny_ae_workspace, tmp_path, monkeypatch):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    zoo = load_zoos(workspace)[0]
    small_budget(monkeypatch, zoo.spec.n_params)
    asked, rows, block = [], ShardedRows.rows, ShardedRows.block  # rows reads its runs through block
    monkeypatch.setattr(ShardedRows, "rows", lambda self, index: asked.append(len(index)) or rows(self, index))
    monkeypatch.setattr(
        ShardedRows, "block", lambda self, start, stop, *a: asked.append(stop - start) or block(self, start, stop, *a)
    )
    # the weight-space baselines, their frontier and the ensembles' groups draw n x 4 models around the anchors;
    # n = CHUNK: the deep ensemble reads its n zoo models at once (a group of n, as the generated models are)
    config = SampleConfig(anchors="top:0.5", n=CHUNK, finetune_epochs=0, seed=3, ensemble=True)
    generate(workspace, config)
    anchors = round(0.5 * len(zoo))
    assert anchors > CHUNK and len(zoo) > 4 * CHUNK  # whole anchors or a whole zoo would not fit in a chunk
    assert asked and max(asked) <= CHUNK  # every read, of any rows: at most a chunk


def test_the_anchors_are_encoded_once_and_the_zoo_sample_not_at_all(tiny_ae_workspace, tmp_path, monkeypatch):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    encoded, encode_rows = [], AERun.encode_rows
    monkeypatch.setattr(
        AERun, "encode_rows", lambda self, p, rows, *a: encoded.append(len(rows)) or encode_rows(self, p, rows, *a)
    )
    result = generate(workspace, SampleConfig(anchors="top:0.5", n=2, finetune_epochs=0, seed=3, baselines=False))
    assert result.fallback is None and encoded == [result.anchors["count"]]  # drawing and the decodes share them
    encoded.clear()
    one = generate(workspace, SampleConfig(anchors="ids:5", n=2, finetune_epochs=0, seed=3, baselines=False))
    assert one.fallback is not None  # one anchor has no spacing: the zoo's sample gives the unit
    assert encoded == [1, len(load_zoos(workspace)[0])]  # the tiny zoo has fewer checkpoints than the sample


def test_distinct_anchor_weights_are_counted_a_chunk_at_a_time(tiny_zoo_workspace, monkeypatch):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    monkeypatch.setattr(anchors_module, "chunk_rows", lambda n_params: 1)
    first = np.flatnonzero(zoo.table["epoch"].to_numpy() == 0)  # models sharing an initialisation start equal
    assert distinct_rows(zoo, first) == zoo.table["init_seed"].n_unique() < len(first)
    assert distinct_rows(zoo, np.arange(len(zoo))) == len(np.unique(zoo.weights.numpy(), axis=0))
