"""Selection of sampled models on a score: none, subsample (keep the best), bootstrap (refit on the best)."""

import numpy as np
import pytest
import torch

from core.errors import UserError
from core.gen.samplers import gauss as sample_module
from core.gen.samplers import make_sampler
from core.gen.samplers.base import Sampler
from core.gen.selection import Selection, select_models


class CountingSampler(Sampler):
    """Draws the codes 0, 1, 2, ... in a shuffled order (one dimension), and records what it was fitted on."""

    def __init__(self):
        super().__init__()
        self.fits = []

    def fit(self, anchors, zoo):
        self.fits.append(np.asarray(anchors).copy())
        return self

    def recentre(self, codes):
        return self.fit(codes, None)

    def sample(self, n, rng):
        return self.draw(n, rng)[0]

    def draw(self, n, rng):
        """Code k is drawn around centre k mod (the number of points it was fitted on last)."""
        codes = rng.permutation(n)
        return codes.astype(np.float32)[:, None], codes % len(self.fits[-1])


def decode(codes):
    return torch.from_numpy(np.asarray(codes)).float()


def score(weights):
    return weights[:, 0].numpy()


def test_none_decodes_exactly_n_draws():
    weights, info, _ = select_models(
        CountingSampler(), np.zeros((2, 1)), np.zeros((5, 1)), 3, np.random.default_rng(0), decode, score, Selection()
    )
    assert sorted(weights[:, 0].tolist()) == [0, 1, 2] and info == {"mode": "none"}


def test_subsample_keeps_the_best_n_of_n_times_candidates():
    weights, info, _ = select_models(
        CountingSampler(),
        np.zeros((2, 1)),
        np.zeros((5, 1)),
        3,
        np.random.default_rng(0),
        decode,
        score,
        Selection("subsample", candidates=4),
    )
    assert weights[:, 0].tolist() == [11, 10, 9]  # 12 draws scored 0..11; the best three, best first
    assert info["history"] == [{"round": 0, "drawn_mean": 5.5, "kept_mean": 10.0}]


def test_guided_keeps_the_best_predicted_and_decodes_only_those():
    decoded = []

    def counting_decode(codes):
        decoded.append(len(codes))
        return decode(codes)

    weights, info, _ = select_models(
        CountingSampler(),
        np.zeros((2, 1)),
        np.zeros((5, 1)),
        3,
        np.random.default_rng(0),
        counting_decode,
        score,
        Selection("guided", candidates=4),
        predict=lambda codes: -np.abs(codes[:, 0] - 6.0),  # the probe likes codes near 6
    )
    assert sorted(weights[:, 0].tolist()) == [5, 6, 7] and decoded == [3]  # 12 draws, 3 decoded
    assert info["scored_by"] == "predicted accuracy" and info["history"][0]["kept_mean"] == pytest.approx(-2 / 3)
    with pytest.raises(UserError, match="predictor"):
        select_models(
            CountingSampler(), np.zeros((2, 1)), np.zeros((5, 1)), 3, np.random.default_rng(0), decode, score,
            Selection("guided"),
        )  # fmt: skip


def test_bootstrap_recentres_on_the_kept_codes_each_round():
    sampler = CountingSampler()
    anchors = np.full((2, 1), -1.0)
    _, info, _ = select_models(
        sampler, anchors, np.zeros((5, 1)), 2, np.random.default_rng(0), decode, score, Selection("bootstrap", 3, 3)
    )
    assert len(info["history"]) == 3
    assert np.array_equal(sampler.fits[0], anchors)  # first fit: the anchors; then centred on each round's kept
    assert [sorted(f[:, 0].tolist()) for f in sampler.fits[1:]] == [[4, 5], [4, 5]]


def test_bootstrap_moves_a_real_sampler_towards_what_scores_well():
    rng = np.random.default_rng(0)
    anchors = rng.normal(size=(30, 4))
    target = np.full(4, 2.0)

    def closeness(weights):
        return -((weights.numpy() - target) ** 2).sum(1)

    _, info, _ = select_models(
        make_sampler("gauss"), anchors, anchors, 10, rng, decode, closeness, Selection("bootstrap", 5, 4)
    )
    kept = [step["kept_mean"] for step in info["history"]]
    assert kept == sorted(kept) and kept[-1] > kept[0] + 1.0


def test_bad_selection_settings_are_refused():
    with pytest.raises(UserError, match="selection"):
        Selection("best")
    with pytest.raises(UserError, match="candidates"):
        Selection("subsample", candidates=0)


def test_a_gaussian_over_too_many_dimensions_falls_back_to_a_diagonal(monkeypatch):
    monkeypatch.setattr(sample_module, "MAX_FULL_COVARIANCE_DIM", 3)
    anchors = np.random.default_rng(0).normal(size=(20, 4)) * np.array([1, 2, 3, 4])
    sampler = make_sampler("gauss").fit(anchors, anchors)
    assert "diagonal" in sampler.fallback
    draws = sampler.sample(4000, np.random.default_rng(1))
    noise = (draws - anchors[np.random.default_rng(1).integers(0, len(anchors), 4000)]).std(0)
    assert np.allclose(noise / noise[0], anchors.std(0) / anchors.std(0)[0], rtol=0.15)  # the diagonal's shape
    assert make_sampler("gauss").fit(anchors[:, :3], anchors[:, :3]).fallback is None


def test_a_bootstrap_round_keeps_the_unit_of_spread():
    anchors = np.random.default_rng(0).normal(size=(30, 4))
    sampler = make_sampler("kde", spread=2.0).fit(anchors, anchors)
    unit = sampler.unit
    spread_out = sampler.sample(30, np.random.default_rng(1))
    sampler.recentre(spread_out)
    assert sampler.unit == unit and np.array_equal(sampler.anchors, spread_out.astype(np.float64))


def test_every_kept_model_knows_the_anchor_it_was_drawn_around():
    anchors = np.zeros((3, 1))
    for selection in (Selection(), Selection("subsample", 4), Selection("guided", 4)):
        weights, _, sources = select_models(
            CountingSampler(), anchors, anchors, 5, np.random.default_rng(0), decode, score, selection,
            predict=lambda codes: codes[:, 0],
        )  # fmt: skip
        assert sources.tolist() == (weights[:, 0].numpy().astype(int) % 3).tolist()


def test_bootstrap_traces_each_kept_model_back_to_an_original_anchor():
    # Round 0 draws codes 0..11 around anchors k mod 4 and keeps 11, 10, 9 (anchors 3, 2, 1); round 1 draws around
    # those three kept draws (centre k mod 3 of them) and keeps 11, 10, 9 again: centres 2, 1, 0 of round 1 are
    # the kept draws 9, 10, 11 of round 0, drawn around anchors 1, 2, 3.
    _, _, sources = select_models(
        CountingSampler(), np.zeros((4, 1)), np.zeros((4, 1)), 3, np.random.default_rng(0), decode, score,
        Selection("bootstrap", 4, 2),
    )  # fmt: skip
    assert sources.tolist() == [1, 2, 3]


def test_diverse_keeps_the_complementary_pair_over_a_duplicated_best_model():
    # Candidate probabilities of the true class on four validation inputs: 0 and 1 are the same best model, 2 is
    # worse alone but right where the best is wrong, 3 is poor everywhere. The best pair is {0 or 1, 2}.
    table = np.array([[0.95, 0.95, 0.95, 0.1], [0.95, 0.95, 0.95, 0.1], [0.1, 0.6, 0.6, 0.95], [0.2, 0.2, 0.2, 0.2]])

    def predictions(weights):
        rows = weights[:, 0].long().numpy()
        return table[rows], (table[rows] > 0.5).mean(1)

    weights, info, _ = select_models(
        CountingSampler(), np.zeros((1, 1)), np.zeros((1, 1)), 2, np.random.default_rng(0), decode, score,
        Selection("diverse", candidates=2), predictions=predictions,
    )  # fmt: skip
    first, second = sorted(weights[:, 0].tolist())
    assert first in (0, 1) and second == 2  # one copy of the best (ties go to the earlier draw), then its complement
    assert info["distinct"] == 2 and info["candidates_scored"] == 4 and info["seconds"] >= 0
    assert info["val_nll_ensemble"] < info["val_nll_best_single"]
    with pytest.raises(UserError, match="diverse"):
        select_models(
            CountingSampler(), np.zeros((1, 1)), np.zeros((1, 1)), 2, np.random.default_rng(0), decode, score,
            Selection("diverse"),
        )  # fmt: skip
