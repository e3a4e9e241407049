"""Samplers, anchors, fine-tuning against baselines, novelty, and the `sample` command."""

import numpy as np
import polars as pl
import pytest
import torch

from core.errors import UserError
from core.gen.anchors import select_anchors
from core.gen.finetune import finetune_groups, with_fresh_head
from core.gen.novelty import error_sets, novelty
from core.gen.samplers import METHODS, make_sampler
from core.zoo.arch import cnn_small, layer_slices
from core.zoo.data import load_dataset
from core.zoo.model_zoo import load_zoos
from tests.conftest import copy_workspace


@pytest.fixture
def anchors():
    rng = np.random.default_rng(0)
    return rng.normal(loc=5.0, scale=0.5, size=(40, 6)), rng.normal(size=(200, 6))


@pytest.mark.parametrize("method", METHODS)
def test_samplers_are_seeded_and_stay_near_the_anchors(method, anchors):
    points, zoo = anchors
    sampler = make_sampler(method).fit(points, zoo)
    a = sampler.sample(500, np.random.default_rng(1))
    assert a.shape == (500, 6) and a.dtype == np.float32
    assert np.array_equal(a, make_sampler(method).fit(points, zoo).sample(500, np.random.default_rng(1)))
    assert not np.array_equal(a, sampler.sample(500, np.random.default_rng(2)))
    assert np.allclose(a.mean(0), points.mean(0), atol=0.15)
    assert 0.1 < a.std(0).mean() < 1.0  # spread of the anchors' order, not the zoo's (1.0) or nil
    assert sampler.fallback is None or "Scott" in sampler.fallback


def test_kde_bandwidth_rules_and_gauss_covariances(anchors):
    points, zoo = anchors
    widths = {
        rule: make_sampler("kde", bandwidth=rule).fit(points, zoo).kernel_width for rule in ("scott", "silverman", "cv")
    }
    assert all(0 < w < 2 for w in widths.values()) and widths["scott"] != widths["silverman"]
    assert make_sampler("kde", bandwidth=0.05).fit(points, zoo).kernel_width == 0.05
    with pytest.raises(UserError, match="bandwidth"):
        make_sampler("kde", bandwidth="wide").fit(points, zoo)
    diag = make_sampler("gauss", covariance="diag").fit(points, zoo).sample(4000, np.random.default_rng(0))
    assert np.allclose(diag.std(0), points.std(0), rtol=0.15)


def test_one_anchor_falls_back_and_zero_anchors_is_an_error(anchors):
    points, zoo = anchors
    for method in METHODS:
        sampler = make_sampler(method).fit(points[:1], zoo)
        assert "one anchor" in sampler.fallback
        draws = sampler.sample(100, np.random.default_rng(0))
        assert np.allclose(draws.mean(0), points[0], atol=0.2)
    with pytest.raises(UserError, match="no anchors"):
        make_sampler("kde").fit(points[:0], zoo)


def test_anchor_rules(tiny_zoo_workspace):
    table = load_zoos(tiny_zoo_workspace)[0].table
    top = select_anchors(table, "top:0.25")
    assert len(top) == round(0.25 * table.height)
    chosen = table.filter(pl.col("checkpoint").is_in(top))["val_acc"].min()
    assert chosen >= table.filter(~pl.col("checkpoint").is_in(top))["val_acc"].max()
    assert select_anchors(table, "epoch:3") == table.filter(pl.col("epoch") == 3)["checkpoint"].to_list()
    assert select_anchors(table, "ids:4,2") == [4, 2]
    for bad, message in (
        ("ids:4,999", "999"),
        ("epoch:7", "no checkpoint at epoch 7"),
        ("top:0", "top:F"),
        ("best", "expected"),
        ("ids:", "empty"),
    ):
        with pytest.raises(UserError, match=message):
            select_anchors(table, bad)


def test_novelty_flags_a_planted_copy(tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    data = load_dataset("digits")
    zoo_errors = error_sets(zoo.spec, zoo.weights, data)
    copy = zoo.weights[[5]]
    new = zoo.weights[[5]] + 0.3 * torch.randn(1, zoo.spec.n_params, generator=torch.Generator().manual_seed(0))
    figures = novelty(
        torch.cat([copy, new]),
        error_sets(zoo.spec, torch.cat([copy, new]), data),
        zoo.weights,
        zoo_errors,
        zoo.table["model_id"].to_numpy(),
    )
    assert figures["min_l2"][0] == pytest.approx(0, abs=1e-4) and figures["max_iou"][0] == pytest.approx(1.0)
    assert figures["min_l2"][1] > 1 and figures["max_iou"][1] < 1
    assert figures["zoo_min_l2_median"] > 0  # the zoo is compared with other models, never itself


def test_finetune_curves_start_where_the_models_are(tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    data = load_dataset("digits")
    last = zoo.table["epoch"].to_numpy() == 3
    groups = {"trained": zoo.weights[last][:3], "untrained": zoo.weights[zoo.table["epoch"].to_numpy() == 0][:3]}
    curves, per_model, final = finetune_groups(zoo.spec, groups, data, epochs=2, seed=0)
    assert curves.height == 2 * 3 and per_model["trained"].shape == (3, 3)
    stored = zoo.table.filter(pl.Series(last))["test_acc"].to_numpy()[:3]
    assert np.allclose(per_model["trained"][:, 0], stored, atol=1e-6)
    assert per_model["untrained"][:, 2].mean() > per_model["untrained"][:, 0].mean()
    assert final.shape == (6, zoo.spec.n_params)


def test_a_fresh_head_for_another_class_count():
    spec = cnn_small()
    vectors = torch.randn(2, spec.n_params)
    target, adapted = with_fresh_head(spec, vectors, 4, seed=0)
    assert target.n_classes == 4 and adapted.shape == (2, target.n_params)
    head = layer_slices(spec)[-1]
    assert torch.equal(adapted[:, : head.start], vectors[:, : head.start])
    assert with_fresh_head(spec, vectors, 10, seed=0)[1] is vectors


def test_sample_command_writes_a_run_and_the_contract_json(tiny_ae_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    argv = ("sample", "--workspace", workspace.root, "--method", "kde", "--anchors", "top:0.5", "--n", 4)
    argv += ("--finetune-epochs", 1, "--seed", 3, "--json", "--quiet")
    first = run_cli(*argv)
    assert first.code == 0
    result = first.json
    assert set(result["curves"]) >= {"generated", "random_init", "anchors", "noise", "average", "weight_gauss"}
    assert all(len(curve) == 2 for curve in result["curves"].values())
    assert set(result["novelty"]) == {"min_l2_median", "zoo_min_l2_median", "max_iou_median", "zoo_max_iou_median"}
    folder = workspace.root / "samples" / result["samples_run"]
    for name in ("weights.safetensors", "samples.parquet", "curves.parquet", "novelty.parquet", "result.json"):
        assert (folder / name).exists(), name
    assert pl.read_parquet(folder / "samples.parquet").height == 4
    plane = pl.read_parquet(folder / "novelty.parquet")
    assert set(plane["group"]) == {"generated", "anchors", "noise", "average", "weight_gauss"}
    assert plane.filter(pl.col("group") == "anchors")["max_iou"].min() == pytest.approx(1.0)  # anchors are the zoo
    again = run_cli(*argv)  # the same seed gives the same samples
    assert again.code == 0 and again.json["curves"] == result["curves"]


def test_sample_command_transfer_and_bad_input(tiny_ae_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    base = ("sample", "--workspace", workspace.root, "--n", 2, "--finetune-epochs", 1, "--json", "--quiet")
    base += ("--no-baselines",)
    transfer = run_cli(*base, "--dataset", "shapes", "--anchors", "ids:1")
    result = transfer.json
    assert transfer.code == 0 and result["dataset"] == "shapes" and "one anchor" in result["fallback"]
    assert set(result["curves"]) == {"generated", "random_init", "anchors"}
    unknown = run_cli(*base, "--anchors", "ids:12345")
    assert unknown.code == 2 and "12345" in unknown.err
    bootstrap = run_cli(*base, "--selection", "bootstrap", "--rounds", 2, "--candidates", 3)
    assert bootstrap.code == 0
    assert bootstrap.json["ae_kind"] == "hyperrep" and len(bootstrap.json["selection"]["history"]) == 2
    refused = run_cli(*base, "--selection", "subsample", "--candidates", 0)
    assert refused.code == 2 and "candidates" in refused.err
