"""Draws decoded and scored a chunk at a time (core/gen/chunked_draws.py) keep what decoding them all at once kept:
the same weights, sources and reports at any chunk size, ties to the earlier draw, for every selection, the spread's
calibration and the weight-space baselines; and no call decodes or scores more than a chunk."""

import numpy as np
import pytest
import torch

from core.gen import baselines as baselines_module
from core.gen.baselines import noise_frontier, simple_baselines
from core.gen.calibrate import calibrate_spread
from core.gen.chunked_draws import DecodedDraws, best_of, draw_chunk
from core.gen.config import SampleConfig
from core.gen.draw import draw_models
from core.gen.samplers import make_sampler
from core.gen.samplers.draws import HeldDraws
from core.gen.selection import Selection, select_models
from core.rep.run import AERun
from tests.gen.budgets import small_budget, whole_budget

N, CANDIDATES = 5, 4
ANCHORS = np.random.default_rng(0).normal(size=(7, 6))
MODES = ("none", "subsample", "bootstrap", "diverse")


def _decode(codes: np.ndarray) -> torch.Tensor:
    """A decoder that gives each draw the same numbers in any batch (elementwise), so only chunking can differ."""
    return torch.from_numpy(np.tanh(np.asarray(codes, dtype=np.float32)) * 2)


def _score(weights: torch.Tensor) -> np.ndarray:
    """A per-model score with many ties (rounded), so that which of equal draws is kept shows."""
    return np.round(weights.numpy()[:, :2].sum(1), 0)


def _fine_score(weights: torch.Tensor) -> np.ndarray:
    """A per-model score of aligned weights (small numbers) with some ties."""
    return np.round(weights.numpy()[:, :4].sum(1) * 20)


def _predictions(weights: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-model true-class probabilities on six 'inputs' (its first weights squashed into 0..1) and accuracy."""
    probs = 1 / (1 + np.exp(-weights.numpy().astype(np.float64)))
    return probs, (probs > 0.5).mean(1)


def _select(mode: str, chunk: int | None, counted: list | None = None):
    def decode(codes):
        if counted is not None:
            counted.append(len(codes))
        return _decode(codes)

    selection = Selection(mode, candidates=CANDIDATES, rounds=3)
    weights, info, sources = select_models(
        make_sampler("kde", 1.5), ANCHORS, ANCHORS, N, np.random.default_rng(4), decode, _score, selection,
        predictions=_predictions, chunk=chunk,
    )  # fmt: skip
    info.pop("seconds", None)  # the one figure that is wall-clock time
    return weights, info, sources


@pytest.mark.parametrize("mode", MODES)
def test_a_selection_in_chunks_keeps_what_one_chunk_kept(mode):
    whole = _select(mode, None)
    for chunk in (1, 3, 7):
        weights, info, sources = _select(mode, chunk)
        assert torch.equal(weights, whole[0]) and info == whole[1], (mode, chunk)
        assert np.array_equal(sources, whole[2]), (mode, chunk)


@pytest.mark.parametrize("mode", ("subsample", "bootstrap", "diverse"))
def test_no_call_decodes_more_than_a_chunk(mode):
    counted = []
    _select(mode, 2, counted)
    assert max(counted) <= 2 < N * CANDIDATES
    if mode == "subsample":  # the kept are held, not decoded again
        assert sum(counted) == N * CANDIDATES


def test_the_running_best_breaks_ties_to_the_earlier_draw_as_one_stable_sort_does():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 1.0, 3.0, 2.0])
    draws = HeldDraws(np.arange(8, dtype=np.float32)[:, None], np.zeros(8, dtype=np.int64))
    for chunk in range(1, 9):
        decoded = DecodedDraws(draws, lambda codes: torch.from_numpy(codes), chunk)
        every, best, kept = best_of(decoded, lambda w: scores[w[:, 0].long().numpy()], 3)
        assert best.tolist() == [1, 2, 4] and kept[:, 0].tolist() == [1, 2, 4], chunk
        assert np.array_equal(every, scores)
    five = best_of(DecodedDraws(draws, torch.from_numpy, 3), lambda w: scores[w[:, 0].long().numpy()], 5)[1]
    assert five.tolist() == np.argsort(-scores, kind="stable")[:5].tolist() == [1, 2, 4, 6, 3]


def test_a_diverse_pick_is_decoded_again_in_the_chunk_it_was_scored_in():
    draws = HeldDraws(np.arange(10, dtype=np.float32)[:, None], np.zeros(10, dtype=np.int64))
    batches = []

    def decode(codes):
        batches.append(codes[:, 0].tolist())
        return torch.from_numpy(codes)

    decoded = DecodedDraws(draws, decode, 4)
    list(decoded.chunks())
    batches.clear()
    assert decoded.rows([9, 1, 1])[:, 0].tolist() == [9, 1, 1]
    assert batches == [[0, 1, 2, 3]]  # the last chunk (8, 9) is still held; 1 is decoded with its chunk, once


@pytest.mark.parametrize("candidates", [1, 4])
def test_the_calibration_in_chunks_chooses_as_one_chunk_did(candidates):
    def judge(weights):
        return np.round(3 - np.abs(weights.numpy()[:, 2:4]).sum(1), 1)  # falls as the draws move out

    def calibrate(chunk):
        sampler = make_sampler("neighbour", 9.0)
        scores = np.full(len(ANCHORS), 3.0)
        return calibrate_spread(sampler, ANCHORS, ANCHORS, scores, 0.12, 3, _decode, _score, candidates, judge, chunk)

    whole = calibrate(None)
    assert 1 < len(whole.tried) < 8, whole.tried  # several spreads tried, and one fell short
    assert all(calibrate(chunk) == whole for chunk in (1, 5))


@pytest.mark.parametrize("mode", MODES)
def test_the_baselines_in_chunks_keep_what_one_chunk_kept(setting, mode, monkeypatch):
    _, prepared, anchors, _, _ = setting

    def baselines(chunk: int):
        monkeypatch.setattr(baselines_module, "draw_chunk", lambda width: chunk)
        rng, selection = np.random.default_rng(5), Selection(mode, candidates=CANDIDATES, rounds=2)
        groups, reports = simple_baselines(prepared, anchors.rows, N, rng, (_fine_score, _predictions), selection)
        frontier, frontier_reports = noise_frontier(
            prepared, anchors.rows, N, rng, (_fine_score, _predictions), selection
        )
        for report in [*reports.values(), *frontier_reports.values()]:
            report.pop("seconds", None)
        return groups | {f"noise {s}": m for s, m in frontier.items()}, reports | frontier_reports

    whole = baselines(N * CANDIDATES)
    chunked = baselines(3)
    assert whole[1] == chunked[1]
    for name, models in whole[0].items():
        assert torch.equal(chunked[0][name], models), name


def test_sampling_under_a_small_budget_decodes_and_scores_a_chunk_at_a_time(setting, monkeypatch):
    run, prepared, anchors, table, data = setting
    decoded, decode = [], AERun.decode
    monkeypatch.setattr(
        AERun, "decode", lambda self, p, codes, *a: decoded.append(len(codes)) or decode(self, p, codes, *a)
    )
    config = SampleConfig(anchors="top:0.5", n=3, candidates=CANDIDATES, seed=2)  # the spread calibrated too
    whole_budget(monkeypatch)
    whole = draw_models(run, prepared, anchors, config, data, np.random.default_rng(2), "cpu", table)
    assert max(decoded) >= 3 * CANDIDATES  # one chunk: all draws at once
    small_budget(monkeypatch, prepared.zoo.spec.n_params)
    decoded.clear()
    chunked = draw_models(run, prepared, anchors, config, data, np.random.default_rng(2), "cpu", table)
    assert max(decoded) <= draw_chunk(prepared.zoo.spec.n_params) == 1
    assert np.array_equal(chunked.sources, whole.sources) and chunked.report == whole.report
    torch.testing.assert_close(chunked.weights, whole.weights, rtol=0, atol=1e-5)  # torch's kernels: float rounding
