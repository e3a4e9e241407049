"""Samplers, anchors, fine-tuning against baselines, novelty, and the `sample` command."""

import re
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from core.errors import UserError
from core.gen.anchors import anchor_warnings, resolve_anchors, select_anchors
from core.gen.config import SampleConfig
from core.gen.draw import accuracy_predictor, draw_models
from core.gen.finetune import finetune_groups, transfer_summary, with_fresh_head
from core.gen.novelty import error_sets, novelty, predicted_classes
from core.gen.samplers import METHODS, make_sampler
from core.gen.samplers.base import median_nearest_distance
from core.pipeline import generate
from core.store.runs import SamplesRun
from core.zoo.arch import cnn_small, layer_slices
from core.zoo.data import load_dataset
from core.zoo.model_zoo import combined_table, load_zoos
from tests.conftest import copy_workspace


@pytest.fixture
def anchors():
    rng = np.random.default_rng(0)
    return rng.normal(loc=5.0, scale=0.5, size=(40, 6)), rng.normal(size=(200, 6))


SPREAD_SAMPLERS = [m for m in METHODS if m != "kde-per-dim"]


@pytest.mark.parametrize("method", METHODS)
def test_samplers_are_seeded(method, anchors):
    points, zoo = anchors
    sampler = make_sampler(method).fit(points, zoo)
    a = sampler.sample(500, np.random.default_rng(1))
    assert a.shape == (500, 6) and a.dtype == np.float32
    assert np.array_equal(a, make_sampler(method).fit(points, zoo).sample(500, np.random.default_rng(1)))
    assert not np.array_equal(a, sampler.sample(500, np.random.default_rng(2)))


def test_the_unit_of_spread_is_the_anchors_median_nearest_neighbour_distance():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.0, 4.0]])  # nearest: 1, 1, 2, 4 -> median 1.5
    assert median_nearest_distance(points) == pytest.approx(1.5)
    assert make_sampler("kde").fit(points, points).unit == pytest.approx(1.5)


@pytest.mark.parametrize("method", SPREAD_SAMPLERS)
def test_spread_zero_returns_the_anchors_and_spread_sets_the_distance(method, anchors):
    points, zoo = anchors
    at_anchors = make_sampler(method, spread=0.0).fit(points, zoo).sample(50, np.random.default_rng(0))
    assert all(np.isclose(points, row, atol=1e-5).all(1).any() for row in at_anchors)
    unit = median_nearest_distance(points)
    for spread in (0.5, 2.0):
        rng = np.random.default_rng(1)
        sampler = make_sampler(method, spread=spread).fit(points, zoo)
        draws = sampler.sample(4000, rng)
        centres = points[np.random.default_rng(1).integers(0, len(points), 4000)]  # the same anchor draws
        rms = np.sqrt(((draws - centres) ** 2).sum(1).mean())
        assert rms == pytest.approx(spread * unit, rel=0.05)


def test_the_noise_shapes_follow_the_anchors(anchors):
    points = np.random.default_rng(0).normal(size=(60, 3)) * np.array([1.0, 3.0, 0.0])
    centres = points[np.random.default_rng(1).integers(0, len(points), 4000)]  # the anchors each draw starts from
    kde = make_sampler("kde", spread=1.0).fit(points, points).sample(4000, np.random.default_rng(1))
    iso = make_sampler("neighbour", spread=1.0).fit(points, points).sample(4000, np.random.default_rng(1))
    kde_noise, iso_noise = (kde - centres).std(0), (iso - centres).std(0)
    assert kde_noise[2] == pytest.approx(0.0, abs=1e-6) and kde_noise[1] > 2 * kde_noise[0]  # the anchors' shape
    assert np.allclose(iso_noise, iso_noise.mean(), rtol=0.1)  # the same in every direction


def test_the_public_per_dimension_kde_copies_anchors(anchors):
    points, zoo = anchors
    draws = make_sampler("kde-per-dim").fit(points, zoo).sample(20, np.random.default_rng(0))
    for row in draws:
        nearest = points[np.argmin(((points - row) ** 2).sum(1))]
        shift = row - nearest
        assert np.abs(shift).max() < 0.02 and np.allclose(shift, shift[0], atol=1e-6)  # one tiny shift in every dim


def test_the_token_mode_scales_noise_token_by_token_around_one_anchor():
    # Three anchors of two tokens of width 2: token 0 spaced 1 apart, token 1 spaced 10 apart.
    points = np.array([[0, 0, 0, 0], [1, 0, 10, 0], [2, 0, 20, 0]], dtype=np.float64)
    at_anchors = (
        make_sampler("token", spread=0.0, token_width=2).fit(points, points).sample(50, np.random.default_rng(0))
    )
    assert all(np.isclose(points, row, atol=1e-6).all(1).any() for row in at_anchors)  # whole anchors, not mixed
    sampler = make_sampler("token", spread=1.0, token_width=2).fit(points, points)
    assert sampler.token_units == pytest.approx([1.0, 10.0])
    draws = sampler.sample(6000, np.random.default_rng(1)).reshape(6000, 2, 2)
    # The anchors' second entries are all 0: there the draws are pure noise, of std unit / sqrt(width) per entry.
    assert draws[:, :, 1].std(0) == pytest.approx(np.array([1.0, 10.0]) / np.sqrt(2), rel=0.05)
    with pytest.raises(UserError, match="width 3"):
        make_sampler("token", token_width=3).fit(points, points)


def test_the_token_mode_takes_the_zoos_unit_where_the_anchors_coincide():
    points = np.array([[0.0, 5.0], [0.0, 7.0]])  # token 0 identical, token 1 two apart
    zoo = np.array([[0.0, 0.0], [4.0, 0.0], [8.0, 1.0]])  # token 0 spaced 4 in the zoo
    assert make_sampler("token", token_width=1).fit(points, zoo).token_units == pytest.approx([4.0, 2.0])


def test_a_negative_or_infinite_spread_is_refused():
    for spread in (-1.0, float("inf"), float("nan")):
        with pytest.raises(UserError, match="spread"):
            make_sampler("kde", spread=spread)


def test_one_anchor_falls_back_and_zero_anchors_is_an_error(anchors):
    points, zoo = anchors
    for method in SPREAD_SAMPLERS:
        sampler = make_sampler(method).fit(points[:1], zoo)
        assert "one anchor" in sampler.fallback and sampler.unit == pytest.approx(median_nearest_distance(zoo))
        draws = sampler.sample(100, np.random.default_rng(0))
        assert np.allclose(draws.mean(0), points[0], atol=0.3)
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
    classes = {}  # each group's test predictions as it started, taken by the same pass
    started = finetune_groups(zoo.spec, groups, data, epochs=1, seed=0, classes=classes)[1]
    for name, vectors in groups.items():
        assert torch.equal(classes[name], predicted_classes(zoo.spec, vectors, data)), name
        accuracy = (classes[name] == data.y_test).double().mean(1).numpy()
        np.testing.assert_allclose(accuracy, started[name][:, 0], atol=1e-6)


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
    contract = {"min_l2_median", "zoo_min_l2_median", "max_iou_median", "zoo_max_iou_median"}
    beside = {"decoded_min_l2_median", "decoded_max_iou_median", "max_agreement_median", "zoo_max_agreement_median"}
    assert set(result["novelty"]) == contract | beside
    assert all(0 <= result["novelty"][k] <= 1 for k in ("max_agreement_median", "zoo_max_agreement_median"))
    # every weight-space baseline got the generated models' selection (subsample, the default), on validation data
    chosen = result["baseline_selection"]
    assert {chosen[g]["mode"] for g in ("noise", "average", "weight_gauss", "noise_frontier")} == {"subsample"}
    assert all(chosen[g]["kept_mean"] >= chosen[g]["drawn_mean"] for g in ("noise", "average", "weight_gauss"))
    assert chosen["random_init"]["mode"] == "none" and chosen["anchors"]["mode"].startswith("source anchors")
    ratio = result["source_ratio"]
    assert ratio["as_generated"] == pytest.approx(result["curves"]["generated"][0] / result["curves"]["anchors"][0])
    assert ratio["finetuned"] == pytest.approx(result["curves"]["generated"][1] / result["curves"]["anchors"][1])
    folder = workspace.root / "samples" / result["samples_run"]
    for name in ("weights.safetensors", "samples.parquet", "curves.parquet", "novelty.parquet", "result.json"):
        assert (folder / name).exists(), name
    assert pl.read_parquet(folder / "samples.parquet").height == 4
    plane = pl.read_parquet(folder / "novelty.parquet")
    assert set(plane["group"]) == {"generated", "anchors", "noise", "average", "weight_gauss"}
    assert plane.filter(pl.col("group") == "anchors")["max_iou"].min() == pytest.approx(1.0)  # anchors are the zoo
    frontier = result["noise_frontier"]
    assert [p["scale"] for p in frontier] == [0.025, 0.05, 0.1, 0.2, 0.4]
    distances = [p["min_l2_median"] for p in frontier]
    assert distances == sorted(distances) and all(0 <= p["acc_mean"] <= 1 for p in frontier)
    assert all(p["selection"]["mode"] == "subsample" for p in frontier)
    samples = pl.read_parquet(folder / "samples.parquet")
    assert plane.filter(pl.col("group") == "anchors").height == 4  # one source anchor per generated model
    assert samples["max_agreement"].is_between(0, 1).all() and (samples["decoded_min_l2"] >= 0).all()
    intervals = result["intervals"]  # over the models of each group, per epoch (core/gen/intervals.py)
    assert set(intervals) == set(result["curves"])
    for group, rows in intervals.items():
        assert [r["epoch"] for r in rows] == [0, 1]
        for row, mean in zip(rows, result["curves"][group], strict=True):
            assert row["mean"] == pytest.approx(mean, abs=1e-6) and row["min"] <= row["lo"] <= row["hi"] <= row["max"]
    assert intervals["generated"][0]["n"] == 4
    novelty_ranges = result["novelty_intervals"]
    assert set(novelty_ranges) == set(result["curves"]) - {"random_init"}
    iou = novelty_ranges["generated"]["max_iou"]
    assert iou["median"] == pytest.approx(result["novelty"]["max_iou_median"]) and iou["lo"] <= iou["hi"]
    again = run_cli(*argv)  # the same seed gives the same samples, and the same intervals
    assert again.code == 0 and again.json["curves"] == result["curves"]
    assert again.json["intervals"] == intervals and again.json["novelty_intervals"] == novelty_ranges
    text = run_cli(*[a for a in argv if a != "--json"])
    assert "generated / their source anchors' mean accuracy: " in text.out
    assert "baselines' selection: noise subsample (validation " in text.out
    assert "against the run's own decodes of the anchors: median min L2 " in text.out
    assert "median prediction agreement with the most similar zoo checkpoint " in text.out


def test_sample_command_transfer_and_bad_input(tiny_ae_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    base = ("sample", "--workspace", workspace.root, "--n", 2, "--finetune-epochs", 1, "--json", "--quiet")
    base += ("--no-baselines",)
    transfer = run_cli(*base, "--dataset", "shapes", "--anchors", "ids:1")
    result = transfer.json
    assert transfer.code == 0 and result["dataset"] == "shapes" and "one anchor" in result["fallback"]
    assert set(result["curves"]) == {"generated", "random_init", "anchors"}
    assert any("only 1 anchor(s)" in w for w in result["anchor_warnings"])  # the page warns before; the CLI after
    text = run_cli(*[a for a in base if a != "--json"], "--anchors", "ids:1")
    assert text.code == 0 and "warning: only 1 anchor(s): too few" in text.out
    assert "95% bootstrap interval over models" in text.out and re.search(r"random_init +\d\.\d{3} ± ", text.out)
    assert re.search(r"after 1 epochs: generated (vs random_init: no measurable difference|higher|lower)", text.out)
    decoded = run_cli(*base, "--anchors", "ids:1", "--spread", 0)  # decoding one point samples no density
    assert decoded.code == 0 and decoded.json["anchor_warnings"] == []
    unknown = run_cli(*base, "--anchors", "ids:12345")
    assert unknown.code == 2 and "12345" in unknown.err
    guided = run_cli(*[a for a in base if a != "--json"], "--selection", "guided", "--candidates", 3)
    assert guided.code == 0 and "selection round 0: mean predicted accuracy" in guided.out  # a probe's, not data's
    bootstrap = run_cli(*base, "--selection", "bootstrap", "--rounds", 2, "--candidates", 3)
    assert bootstrap.code == 0
    assert bootstrap.json["ae_kind"] == "hyperrep" and len(bootstrap.json["selection"]["history"]) == 2
    refused = run_cli(*base, "--selection", "subsample", "--candidates", 0)
    assert refused.code == 2 and "candidates" in refused.err


def _draw(setting, **settings) -> torch.Tensor:
    run, prepared, anchors, table, data = setting
    config = SampleConfig(anchors="top:0.5", n=6, seed=2, **settings)
    weights, _, report, _ = draw_models(run, prepared, anchors, config, data, np.random.default_rng(2), "cpu", table)
    return weights, report


def test_spread_zero_decodes_the_anchors_and_the_public_kde_copies_them(setting):
    run, prepared, anchors, _, _ = setting
    decoded_anchors = run.reconstruct(prepared, anchors.rows)
    at_zero, _ = _draw(setting, method="kde", spread=0.0)
    assert torch.cdist(at_zero, decoded_anchors).min(1).values.max() < 1e-4  # every one is an anchor's decode
    copies, _ = _draw(setting, method="kde-per-dim")
    spread, _ = _draw(setting, method="kde", spread=1.0)
    copy_distance = torch.cdist(copies, decoded_anchors).min(1).values
    new_distance = torch.cdist(spread, decoded_anchors).min(1).values
    assert copy_distance.max() < 0.1 * new_distance.median()  # the public sampler lands on decoded anchors


def test_guided_selection_raises_the_predicted_accuracy(setting):
    run, prepared, _, table, _ = setting
    predict = accuracy_predictor(run, prepared, table)
    guided, report = _draw(setting, method="kde", spread=2.0, selection="guided", candidates=8)
    plain, _ = _draw(setting, method="kde", spread=2.0)
    step = report["history"][0]
    assert report["mode"] == "guided" and step["kept_mean"] > step["drawn_mean"]
    guided_pred = predict(run.encode(prepared, guided)).mean()
    plain_pred = predict(run.encode(prepared, plain)).mean()
    assert guided_pred > plain_pred


def test_the_transfer_summary_by_hand():
    curves = pl.DataFrame(
        {
            "group": ["random_init"] * 4 + ["generated"] * 4 + ["anchors"] * 4,
            "epoch": [0, 1, 2, 3] * 3,
            "acc_mean": [0.1, 0.5, 0.7, 0.8] + [0.6, 0.85, 0.9, 0.9] + [0.2, 0.3, 0.4, 0.5],
        }
    )
    summary = transfer_summary(curves, new_head=True)
    assert summary["head"] == "redrawn"
    assert summary["reaches_random_init_final"] == {"random_init": 3, "generated": 1, "anchors": None}
    assert summary["epochs_saved"] == {"random_init": 0, "generated": 2, "anchors": None}
    assert transfer_summary(curves, new_head=False)["head"] == "kept"


def test_the_head_is_kept_for_the_same_classes_and_drawn_anew_for_others(tiny_ae_workspace, tmp_path):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    base = SampleConfig(n=2, finetune_epochs=1, baselines=False, selection="none")
    shifted = generate(workspace, replace(base, dataset="digits:invert")).to_json()
    other = generate(workspace, replace(base, dataset="digits:classes=0-4")).to_json()
    assert shifted["head"] == "kept" and other["head"] == "redrawn"
    assert set(shifted["epochs_saved"]) == {"generated", "random_init", "anchors"}
    weights = SamplesRun.load(workspace, other["samples_run"]).weights()
    assert weights["finetuned"].shape[1] < weights["generated"].shape[1]  # a 5-class head replaced the 10-class one


def test_degenerate_anchors_are_named_before_a_generation(tiny_zoo_workspace):
    zoos = load_zoos(tiny_zoo_workspace)
    table = combined_table(zoos)
    trained = table.filter(pl.col("epoch") == 3).sort("test_acc", descending=True)
    assert anchor_warnings(resolve_anchors(zoos, table, "ids:" + ",".join(map(str, trained["checkpoint"])))) == []

    one = anchor_warnings(resolve_anchors(zoos, table, f"ids:{trained['checkpoint'][0]}"))
    assert len(one) == 1 and one[0].startswith("only 1 anchor(s)")

    # the epoch-0 checkpoints of models that share an initialisation hold the same weights
    init = table.filter(pl.col("epoch") == 0).group_by("init_seed").agg("checkpoint").sort("init_seed")
    shared = next(ids for ids in init["checkpoint"].to_list() if len(ids) >= 2)
    messages = " ".join(anchor_warnings(resolve_anchors(zoos, table, "ids:" + ",".join(map(str, shared)))))
    assert "hold only 1 distinct weight set" in messages

    untrained = table.filter(pl.col("epoch") == 0)["checkpoint"].to_list()
    chance = " ".join(anchor_warnings(resolve_anchors(zoos, table, "ids:" + ",".join(map(str, untrained)))))
    assert "every anchor is at chance level" in chance
