"""Choosing the spread per zoo (core/gen/calibrate.py) on a constructed case whose answer is known."""

import numpy as np
import pytest
import torch

from core.gen.calibrate import SPREADS, calibrate_spread
from core.gen.config import SampleConfig
from core.gen.samplers.neighbour import Neighbour
from core.store.runs import SamplesRun
from tests.conftest import copy_workspace

ANCHORS = np.array([[0.0, 0.0], [1.0, 0.0]])  # spacing 1, so the spread is the noise's RMS length
SCORES = np.ones(2)  # each anchor's own 'accuracy' (_score's at distance 0)


def _decode(codes: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(codes, dtype=np.float64))


def _score(weights: torch.Tensor) -> np.ndarray:
    """A model's 'accuracy' falls by 0.1 per unit of distance from the nearest anchor."""
    distance = np.linalg.norm(weights.numpy()[:, None] - ANCHORS[None], axis=2).min(1)
    return 1.0 - 0.1 * distance


def _calibrate(target: float, seed: int = 0):
    sampler = Neighbour(spread=9.0)
    return sampler, calibrate_spread(sampler, ANCHORS, ANCHORS, SCORES, target, seed, _decode, _score)


def test_the_largest_spread_that_keeps_the_share_is_chosen():
    # Mean distance of 2-D Gaussian noise of RMS length s is about 0.89 s (less where the other anchor is nearer):
    # spread 1 keeps about 91%, spread 1.5 about 87%, so a 90% target chooses 1.
    sampler, calibration = _calibrate(0.90)
    assert calibration.spread == 1.0 and sampler.spread == 1.0
    kept = dict(calibration.tried)
    assert kept[1.0] >= 0.90 > kept[1.5]
    assert list(kept) == [s for s in SPREADS if s <= 1.5]  # stops at the first spread that falls short
    assert calibration.to_json()["tried"][0] == {"spread": SPREADS[0], "kept": kept[SPREADS[0]]}


def test_kept_share_falls_with_the_spread_on_common_draws():
    _, calibration = _calibrate(0.0)
    shares = [k for _, k in calibration.tried]
    assert shares == sorted(shares, reverse=True)  # the same draws at every spread: no luck between them
    assert calibration.spread == SPREADS[-1] and "largest" in calibration.reason


def test_no_spread_keeping_the_share_falls_back_to_the_smallest_and_says_so():
    sampler, calibration = _calibrate(0.999)
    assert calibration.spread == SPREADS[0] == sampler.spread
    assert calibration.reason.startswith("no spread kept")
    # the anchors' own decodes are the anchors here: they keep everything, so the spread is what falls short
    assert calibration.decodes_kept == 1.0 and "decoder" not in calibration.reason


def test_where_the_anchors_own_decodes_fall_short_the_record_says_the_decoder_does():
    def shifted(codes: np.ndarray) -> torch.Tensor:  # every decode 0.5 from its code: 'accuracy' 0.95 at spread 0
        return _decode(codes + np.array([0.3, 0.4]))

    sampler = Neighbour(spread=9.0)
    calibration = calibrate_spread(sampler, ANCHORS, ANCHORS, SCORES, 0.99, 0, shifted, _score)
    assert calibration.spread == SPREADS[0] and calibration.decodes_kept == pytest.approx(0.95)
    assert "the anchors' own decodes keep 95.0%: the decoder falls short" in calibration.reason
    assert calibration.to_json()["decodes_kept"] == calibration.decodes_kept
    assert all(spread > 0 for spread, _ in calibration.tried)  # the decodes' share is not a spread tried


def test_with_selection_the_kept_draws_are_the_best_as_the_run_keeps_them():
    sampler = Neighbour(spread=9.0)
    plain = calibrate_spread(sampler, ANCHORS, ANCHORS, SCORES, 0.0, 0, _decode, _score)
    best_of_4 = calibrate_spread(sampler, ANCHORS, ANCHORS, SCORES, 0.0, 0, _decode, _score, candidates=4)
    for (spread, all_draws), (_, kept) in zip(plain.tried, best_of_4.tried, strict=True):
        assert kept > all_draws, spread  # the same 32 draws: the best 8 of them above the mean of all
    drawn = Neighbour(spread=1.0).fit(ANCHORS, ANCHORS).sample(32, np.random.default_rng([0, 11]))
    by_hand = np.sort(_score(_decode(drawn)))[-8:].mean()  # subsample keeps the best n of n x candidates
    assert dict(best_of_4.tried)[1.0] == pytest.approx(by_hand, abs=1e-4)
    chosen = calibrate_spread(sampler, ANCHORS, ANCHORS, SCORES, 0.9, 0, _decode, _score, candidates=4)
    assert chosen.spread > _calibrate(0.9)[1].spread and "the best 8 of 32 draws" in chosen.reason
    assert chosen.to_json()["candidates"] == 4


def test_the_share_is_of_the_anchors_each_kept_draw_came_from():
    # anchor 0 scores 1.0, anchor 1 scores 0.5: at spread 0 every draw is its anchor's copy and keeps 100% of its
    # own source, however the draws fall between the two (a share of the anchors' mean would be off by their mix)
    sampler = Neighbour(spread=9.0)
    scores = np.array([1.0, 0.5])

    def score(weights: torch.Tensor) -> np.ndarray:
        at_first = np.linalg.norm(weights.numpy() - ANCHORS[0], axis=1) < 0.5
        return np.where(at_first, 1.0, 0.5) - 0.1 * np.linalg.norm(weights.numpy()[:, None] - ANCHORS, axis=2).min(1)

    calibration = calibrate_spread(sampler, ANCHORS, ANCHORS, scores, 0.0, 0, _decode, score, candidates=4)
    assert calibration.anchors_val_acc == 0.75
    drawn, centres = Neighbour(spread=0.25).fit(ANCHORS, ANCHORS).draw(32, np.random.default_rng([0, 11]))
    got = score(_decode(drawn))
    best = np.argsort(-got, kind="stable")[:8]
    assert dict(calibration.tried)[0.25] == pytest.approx(got[best].mean() / scores[centres[best]].mean(), abs=1e-4)


def test_draws_kept_by_one_score_are_judged_by_the_other():
    def luck(weights: torch.Tensor) -> np.ndarray:  # a score that knows nothing: which draws it keeps is chance
        return np.random.default_rng(len(weights)).random(len(weights))

    sampler = Neighbour(spread=9.0)
    calibration = calibrate_spread(sampler, ANCHORS, ANCHORS, SCORES, 0.0, 0, _decode, luck, 4, judge=_score)
    drawn = Neighbour(spread=1.0).fit(ANCHORS, ANCHORS).sample(32, np.random.default_rng([0, 11]))
    kept = np.argsort(-luck(torch.zeros(32)), kind="stable")[:8]
    assert dict(calibration.tried)[1.0] == pytest.approx(_score(_decode(drawn[kept])).mean(), abs=1e-4)
    assert dict(calibration.tried)[1.0] < dict(_calibrate(0.0)[1].tried)[1.0] + 0.05  # no best-of-4 gain by luck


def test_the_same_seed_gives_the_same_choice():
    assert _calibrate(0.9, seed=3)[1] == _calibrate(0.9, seed=3)[1]
    assert _calibrate(0.0, seed=3)[1].tried != _calibrate(0.0, seed=4)[1].tried


def test_sample_with_a_share_to_keep_records_the_chosen_spread(tiny_ae_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    base = ("sample", "--workspace", workspace.root, "--anchors", "top:0.5", "--n", 2, "--finetune-epochs", 0)
    base += ("--no-baselines", "--quiet")
    result = run_cli(*base, "--spread-keep", 0.9, "--json")
    assert result.code == 0
    calibration = result.json["selection"]["spread_calibration"]
    assert calibration["spread"] in SPREADS and calibration["target"] == 0.9
    assert [t["spread"] for t in calibration["tried"]] == list(SPREADS[: len(calibration["tried"])])
    text = run_cli(*base, "--spread-keep", 0.9)
    assert text.code == 0 and f"spread {calibration['spread']:g}: " in text.out
    refused = run_cli(*base, "--spread-keep", 0)
    assert refused.code == 2 and "share of accuracy" in refused.err


def test_without_a_spread_the_run_chooses_one_and_a_given_spread_wins(tiny_ae_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    base = ("sample", "--workspace", workspace.root, "--anchors", "top:0.5", "--n", 2, "--finetune-epochs", 0)
    base += ("--no-baselines", "--quiet", "--json")
    chosen = run_cli(*base).json
    calibration = chosen["selection"]["spread_calibration"]
    assert calibration["target"] == SampleConfig().spread_keep == 0.99 and chosen["config"]["spread"] is None
    assert SamplesRun.load(workspace, chosen["samples_run"]).spread == calibration["spread"] in SPREADS
    given = run_cli(*base, "--spread", 0.7).json
    assert "spread_calibration" not in given["selection"] and given["config"]["spread"] == 0.7
    assert SamplesRun.load(workspace, given["samples_run"]).spread == 0.7
