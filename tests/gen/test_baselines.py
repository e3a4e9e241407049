"""Like-for-like baselines: the weight-space baselines get the generated models' selection, the anchors group is
the generated models' source anchors, novelty is also measured against the run's own decodes and as prediction
agreement, and anchors a rule drops are named."""

import numpy as np
import polars as pl
import pytest
import torch

from core.gen.anchor_weights import AnchorWeights
from core.gen.anchors import anchor_warnings, resolve_anchors
from core.gen.baselines import (
    FRONTIER_SCALES,
    WeightNoise,
    noise_frontier,
    reference_groups,
    simple_baselines,
    source_rows,
)
from core.gen.config import SampleConfig
from core.gen.draw import draw_models
from core.gen.ensemble import validation_scorers
from core.gen.novelty import agreement, max_agreement, max_iou, predicted_classes
from core.gen.selection import Selection
from core.pipeline import generate
from core.rep.prepare import PreparedZoo
from core.rep.run import load_run
from core.store.workspace import Workspace
from core.zoo.data import load_dataset
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.model_zoo import combined_table, load_zoos
from core.zoo.population import evaluate_models, recalibrate_norm_statistics
from tests.conftest import copy_workspace
from tests.gen.budgets import small_budget, whole_budget

N = 6


def _baselines(setting, mode: str, seed: int = 5, bootstrap_rounds: int = 3):
    _, prepared, anchors, _, data = setting
    scorers = validation_scorers(anchors.spec, data.x_val, data.y_val)
    rng, selection = np.random.default_rng(seed), Selection(mode, candidates=4, rounds=bootstrap_rounds)
    groups, reports = simple_baselines(prepared, anchors.rows, N, rng, scorers, selection)
    frontier, frontier_reports = noise_frontier(prepared, anchors.rows, N, rng, scorers, selection)
    return groups, reports, frontier, frontier_reports, scorers[0]


def _drawn_by_hand(setting, n: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """The baselines' n unselected draws, made from every anchor's aligned weights at once, as they were made
    before the anchors were read in chunks: ({noise, average, weight_gauss}, {frontier scale: draws})."""
    _, prepared, anchors, _, _ = setting
    aligned, std = prepared.aligned[torch.from_numpy(anchors.rows)], prepared.entry_std()
    pick = torch.from_numpy(rng.integers(0, len(aligned), n))
    noise = torch.from_numpy(rng.normal(size=(n, aligned.shape[1])).astype(np.float32))
    groups = {"noise": aligned[pick] + 0.1 * noise * std}
    groups["average"] = aligned[torch.from_numpy(rng.integers(0, len(aligned), (n, 3)))].mean(1)
    gauss = torch.from_numpy(rng.normal(size=(n, aligned.shape[1])).astype(np.float32))  # its own noise
    groups["weight_gauss"] = aligned.mean(0) + gauss * aligned.std(0)
    frontier = {}
    for scale in FRONTIER_SCALES:
        pick = torch.from_numpy(rng.integers(0, len(aligned), n))
        noise = torch.from_numpy(rng.normal(size=(n, aligned.shape[1])).astype(np.float32))
        frontier[scale] = aligned[pick] + scale * noise * std
    return groups, frontier


def _same_draws(made: dict, by_hand: dict) -> None:
    """Bit-identical where only the reading changed; the per-weight Gaussian's moments are now accumulated in
    float64 by chunks, so its draws agree to float rounding."""
    for name, expected in by_hand.items():
        if name == "weight_gauss":
            torch.testing.assert_close(made[name], expected, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(made[name], expected), name


@pytest.mark.parametrize("budget", ["whole", "small"])
def test_with_none_the_baselines_are_the_unselected_draws_whatever_the_chunks(setting, budget, monkeypatch):
    if budget == "small":  # a chunk of one checkpoint: draws, reads and moments in many chunks
        small_budget(monkeypatch, setting[1].zoo.spec.n_params)
    groups, reports, frontier, _, _ = _baselines(setting, "none")
    by_hand, frontier_by_hand = _drawn_by_hand(setting, N, np.random.default_rng(5))
    _same_draws(groups, by_hand)
    _same_draws(frontier, frontier_by_hand)
    assert {r["mode"] for r in reports.values()} == {"none"}


def test_subsample_keeps_the_best_of_the_draws_made_before_chunking(setting, monkeypatch):
    small_budget(monkeypatch, setting[1].zoo.spec.n_params)
    kept, reports, _, _, score = _baselines(setting, "subsample")
    by_hand, _ = _drawn_by_hand(setting, 4 * N, np.random.default_rng(5))  # the noise baseline draws first
    best = np.argsort(-score(by_hand["noise"]), kind="stable")[:N]
    assert torch.equal(kept["noise"], by_hand["noise"][torch.from_numpy(best)])
    assert reports["noise"]["history"][0]["kept_mean"] == pytest.approx(float(score(kept["noise"]).mean()))


@pytest.mark.parametrize("mode", ["bootstrap", "diverse"])
def test_a_selection_read_in_chunks_keeps_the_models_of_one_read_whole(setting, mode, monkeypatch):
    whole_budget(monkeypatch)
    whole = _baselines(setting, mode, bootstrap_rounds=2)
    small_budget(monkeypatch, setting[1].zoo.spec.n_params)
    chunked = _baselines(setting, mode, bootstrap_rounds=2)
    _same_draws(chunked[0], {name: whole[0][name] for name in ("noise", "average")})
    _same_draws(chunked[2], whole[2])
    for reports, whole_reports in ((chunked[1], whole[1]), (chunked[3], whole[3])):
        assert [reports[k]["history"] for k in reports if k != "weight_gauss"] == [
            whole_reports[k]["history"] for k in whole_reports if k != "weight_gauss"
        ]


def test_with_subsample_the_kept_baselines_score_at_least_the_unselected_mean(setting):
    selected, reports, frontier, frontier_reports, score = _baselines(setting, "subsample")
    plain, _, plain_frontier, _, _ = _baselines(setting, "none")
    assert score(selected["noise"]).mean() >= score(plain["noise"]).mean()
    assert score(frontier[0.4]).mean() >= score(plain_frontier[0.4]).mean()
    for report in [*reports.values(), *frontier_reports.values()]:
        step = report["history"][-1]
        assert report["mode"] == "subsample" and step["kept_mean"] >= step["drawn_mean"]


def test_the_noise_baseline_reads_only_the_anchors_its_draws_centre_on(setting, monkeypatch):
    _, prepared, anchors, _, _ = setting
    small_budget(monkeypatch, prepared.zoo.spec.n_params)
    read, aligned_rows = [], PreparedZoo.aligned_rows
    monkeypatch.setattr(PreparedZoo, "aligned_rows", lambda self, rows: read.append(rows) or aligned_rows(self, rows))
    sampler = WeightNoise(prepared.entry_std()).fit(AnchorWeights(prepared, anchors.rows), np.zeros(0))
    _, centres = sampler.draw(3, np.random.default_rng(1))
    assert len(read) == 3 and all(len(index) == 1 for index in read)  # one chunk (one row) at a time
    assert np.concatenate(read).tolist() == anchors.rows[centres].tolist()  # those rows, and no others
    assert len(anchors.rows) > 3


def test_guided_selection_leaves_the_baselines_unselected_and_says_why(setting):
    guided, reports, _, frontier_reports, _ = _baselines(setting, "guided")
    plain, _, _, _, _ = _baselines(setting, "none")
    assert all(torch.equal(guided[name], plain[name]) for name in plain)
    for report in [*reports.values(), *frontier_reports.values()]:
        assert report["mode"] == "none" and "probe of the embedding" in report["note"]


def test_the_anchors_group_is_the_source_anchors_of_the_generated_models(setting):
    run, prepared, anchors, table, data = setting
    config = SampleConfig(anchors="top:0.5", n=N, seed=2, spread=1.0)
    drawn = draw_models(run, prepared, anchors, config, data, np.random.default_rng(2), "cpu", table)
    group = reference_groups(anchors, prepared, drawn.sources, N, np.random.default_rng(0))["anchors"]
    row_of = dict(zip(prepared.zoo.table["checkpoint"].to_list(), range(len(prepared.aligned)), strict=True))
    expected = prepared.aligned[torch.tensor([row_of[int(s)] for s in drawn.sources])]
    assert set(drawn.sources.tolist()) <= set(anchors.ids) and torch.equal(group, expected)
    # a point of a latent path has no single source: it is compared with each anchor it decodes
    assert source_rows(anchors, np.array([-1])).tolist() == list(range(len(anchors.ids)))
    first = anchors.ids[1]
    assert source_rows(anchors, np.array([first, first, -1])).tolist() == [1, 1, *range(len(anchors.ids))]


def test_a_spread_0_decoding_is_its_anchors_decodes_and_its_source_ratio_theirs(tiny_ae_workspace, tmp_path):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    config = SampleConfig(method="neighbour", anchors="top:0.5", n=4, spread=0.0, finetune_epochs=0, baselines=False)
    samples = generate(workspace, config)
    record = samples.to_json()
    sources = samples.samples_table()["source_anchor"].to_list()
    run, zoo, data = load_run(workspace), load_zoos(workspace)[0], load_dataset("digits")
    prepared = run.prepare(zoo)
    rows = [zoo.table["checkpoint"].to_list().index(s) for s in sources]
    decoded = recalibrate_norm_statistics(zoo.spec, run.reconstruct(prepared, np.array(rows)), data.x_train)
    decoded_acc = evaluate_models(zoo.spec, decoded, data.x_test, data.y_test)[1].mean()
    anchors_acc = evaluate_models(zoo.spec, prepared.aligned[rows], data.x_test, data.y_test)[1].mean()
    assert record["curves"]["anchors"][0] == pytest.approx(float(anchors_acc), abs=1e-6)
    assert record["source_ratio"]["as_generated"] == pytest.approx(float(decoded_acc / anchors_acc), abs=1e-3)
    assert record["source_ratio"]["finetuned"] is None
    # against its own decodes a spread-0 decoding is a copy: distance 0, error-IoU 1
    assert record["novelty"]["decoded_min_l2_median"] == pytest.approx(0.0, abs=1e-3)
    assert record["novelty"]["decoded_max_iou_median"] == 1.0
    table = samples.samples_table()
    assert (table["decoded_min_l2"] < 1e-3).all() and (table["decoded_max_iou"] == 1.0).all()
    assert record["baseline_selection"]["anchors"]["mode"].startswith("source anchors")


def test_agreement_is_1_for_a_zoo_checkpoint_and_lies_in_0_to_1(tiny_zoo_workspace):
    zoo, data = load_zoos(tiny_zoo_workspace)[0], load_dataset("digits")
    zoo_predictions = predicted_classes(zoo.spec, zoo.weights, data)
    own = agreement(zoo_predictions[[2, 7]], zoo_predictions)
    assert own["max_agreement"].tolist() == [1.0, 1.0]
    noisy = zoo.weights[[2]] + 0.5 * torch.randn(1, zoo.spec.n_params, generator=torch.Generator().manual_seed(0))
    other = agreement(predicted_classes(zoo.spec, noisy, data), zoo_predictions)["max_agreement"]
    assert 0.0 <= other[0] <= 1.0


def test_agreement_by_hand_and_where_error_iou_rises_again():
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert max_agreement(torch.tensor([[0, 1, 2, 3]]), torch.tensor([[0, 1, 0, 0], [1, 1, 2, 3]])).item() == 0.75
    # a collapsed model (always class 0) beside a zoo checkpoint at chance (always class 1): their error sets
    # overlap almost wholly, so error-IoU calls it a near copy; they agree on no image
    collapsed, untrained = torch.zeros(1, 10, dtype=torch.int16), torch.ones(1, 10, dtype=torch.int16)
    assert max_iou(collapsed != labels, untrained != labels).item() == pytest.approx(8 / 10)
    assert max_agreement(collapsed, untrained).item() == 0.0


def test_an_anchor_rule_that_drops_anchors_says_how_many_and_why(tmp_path):
    workspace = Workspace(tmp_path / "mixed")
    config = ZooConfig(models=4, epochs=1, save_epochs=(0, 1), seed=1, init_seeds=2, activations=("relu", "tanh"))
    generate_zoo(workspace, config)
    zoos = load_zoos(workspace)
    table = combined_table(zoos)
    anchors = resolve_anchors(zoos, table, "top:1.0")
    kept = table.filter(pl.col("activation") == anchors.activation).height
    assert len(anchors.ids) == kept and anchors.dropped_count == table.height - kept > 0
    other = "tanh" if anchors.activation == "relu" else "relu"
    dropped = table.height - kept
    said = f"{dropped} of the checkpoints the rule names were dropped ({dropped} {other}): a generation makes"
    assert any(w.startswith(said) for w in anchor_warnings(anchors))
    assert resolve_anchors(zoos, table, f"ids:{anchors.ids[0]}").dropped == ()  # nothing dropped: nothing said
