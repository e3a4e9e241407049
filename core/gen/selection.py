"""Keep the best of many sampled models, or refit the density on them, for codes of either kind of autoencoder run.

- `none`: draw n codes and decode them;
- `guided`: draw n x `candidates` codes and keep the n whose embedding a linear probe predicts to be the most
  accurate (the embedding predicts accuracy well, and this needs no data: only the n kept are decoded);
- `subsample`: SANE's "subsampled" sampling (Schürholt, Mahoney and Borth, 2024): draw n x `candidates` codes,
  decode and score them all (validation accuracy), keep the best n;
- `bootstrap`: SANE's "bootstrapped" sampling: `rounds` times, draw n x `candidates`, keep the best n, and centre
  the sampler on their codes (its spread unit stays the anchors'), so the draws walk towards the region that
  decodes well;
- `diverse`: draw n x `candidates`, decode and score them all on validation data, and keep n by greedy forward
  selection with replacement for an ensemble (Caruana et al. 2004): each step adds the draw that most lowers the
  validation NLL of the averaged probabilities, so the n kept err differently (a model may be kept twice: it then
  counts twice in the average).
Scoring only ranks the draws; the kept models' reported accuracies come from the test split, later. Draws are
decoded and scored a chunk at a time within the memory budget (core/gen/chunked_draws.py), to the same kept models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.errors import UserError
from core.gen.chunked_draws import DecodedDraws, best_of, decoded, measured
from core.gen.ensemble import greedy_ensemble
from core.gen.samplers.base import Sampler, ZooCodes
from core.gen.samplers.draws import HeldDraws

SELECTIONS = ("none", "guided", "subsample", "bootstrap", "diverse")


@dataclass(frozen=True)
class Selection:
    mode: str = "none"
    candidates: int = 4  # draws per kept model (guided, subsample, bootstrap, diverse)
    rounds: int = 3  # bootstrap: draw-and-keep rounds, the sampler refit between them

    def __post_init__(self) -> None:
        if self.mode not in SELECTIONS:
            raise UserError(f"unknown selection {self.mode!r}; choose one of {', '.join(SELECTIONS)}")
        if self.candidates < 1 or self.rounds < 1:
            raise UserError("selection needs candidates >= 1 and rounds >= 1")


def select_models(
    sampler: Sampler,
    anchor_codes: np.ndarray,
    zoo_codes: ZooCodes,
    n: int,
    rng: np.random.Generator,
    decode: Callable[[np.ndarray], torch.Tensor],
    score: Callable[[torch.Tensor], np.ndarray],
    selection: Selection,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
    predictions: Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]] | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, dict, np.ndarray]:
    """(weights [n, params], info, sources [n]): n models drawn from `sampler` fitted on the anchors' codes,
    selected as `selection` says (`score` rates decoded weights, `predict` rates codes, `predictions` gives
    decoded weights' true-class probabilities and accuracies on validation data, for `diverse`); `info` has each
    round's mean score of all draws and of the kept ones; `sources` the row of `anchor_codes` each kept model was
    drawn around (for bootstrap rounds, traced back through the draws it was centred on). `chunk`: how many draws
    are decoded and scored at once (core/gen/chunked_draws.py `draw_chunk`; default: all)."""
    sampler.fit(anchor_codes, zoo_codes)
    chunk = chunk or max(1, n * selection.candidates)
    if selection.mode == "none":
        draws = sampler.draws(n, rng, chunk)
        return decoded(draws, decode, chunk), {"mode": "none"}, draws.centres
    if selection.mode == "guided":
        if predict is None:
            raise UserError("guided selection needs an accuracy predictor (a probe of the run's embedding)")
        codes, centres = sampler.draw(n * selection.candidates, rng)
        best, step = _best(np.asarray(predict(codes), dtype=np.float64), n, 0)
        info = {"mode": "guided", "candidates": selection.candidates, "rounds": 1, "history": [step]}
        kept = decoded(HeldDraws(codes[best], centres[best]), decode, chunk)
        return kept, info | {"scored_by": "predicted accuracy"}, centres[best]
    if selection.mode == "diverse":
        return _diverse(sampler, n, rng, decode, selection, predictions, chunk)
    rounds = selection.rounds if selection.mode == "bootstrap" else 1
    history, origin = [], np.arange(len(anchor_codes))  # origin: the anchor row behind each current centre
    for number in range(rounds):
        draws = sampler.draws(n * selection.candidates, rng, chunk)
        scores, best, weights = best_of(DecodedDraws(draws, decode, chunk), score, n)
        history.append(_step(scores, best, number))
        sources = origin[draws.centres][best]
        if number < rounds - 1:
            sampler.recentre(draws.rows(best))
            origin = sources
    info = {"mode": selection.mode, "candidates": selection.candidates, "rounds": rounds, "history": history}
    return weights, info | {"scored_by": "validation accuracy"}, sources


def _best(scores: np.ndarray, n: int, number: int) -> tuple[np.ndarray, dict]:
    """The indices of the n best scores, and the round's report."""
    best = np.argsort(-scores, kind="stable")[:n]
    return best, _step(scores, best, number)


def _step(scores: np.ndarray, best: np.ndarray, number: int) -> dict:
    """A round's report: the mean score of all draws and of the kept."""
    return {"round": number, "drawn_mean": float(scores.mean()), "kept_mean": float(scores[best].mean())}


def _diverse(sampler: Sampler, n: int, rng, decode, selection: Selection, predictions, chunk: int) -> tuple:
    """`diverse`: n x candidates draws decoded and scored on validation data, n kept by greedy ensemble selection
    (core/gen/ensemble.py `greedy_ensemble`); the kept may repeat a model, and the report says how many are
    distinct, what the selection cost and the validation NLL of the best single draw and of the ensemble. Only the
    draws' validation probabilities are kept while scoring; the picked draws are decoded again."""
    if predictions is None:
        raise UserError("diverse selection needs validation predictions of the decoded draws")
    started = time.perf_counter()
    draws = sampler.draws(n * selection.candidates, rng, chunk)
    decoded_draws = DecodedDraws(draws, decode, chunk)
    true_probs, accuracy = measured(decoded_draws, predictions)
    picks, path = greedy_ensemble(true_probs, n)
    weights = decoded_draws.rows(picks)
    info = {
        "mode": "diverse",
        "candidates": selection.candidates,
        "rounds": 1,
        "history": [_step(np.asarray(accuracy, dtype=np.float64), picks, 0)],
        "scored_by": "validation accuracy",
        "candidates_scored": len(draws),
        "distinct": len(np.unique(picks)),
        "val_nll_best_single": path[0],
        "val_nll_ensemble": path[-1],
        "seconds": round(time.perf_counter() - started, 3),
    }
    return weights, info, draws.centres[picks]
