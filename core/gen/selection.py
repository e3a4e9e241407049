"""Keep the best of many sampled models, or refit the density on them, for codes of either kind of autoencoder run.

- `none`: draw n codes and decode them;
- `guided`: draw n x `candidates` codes and keep the n whose embedding a linear probe predicts to be the most
  accurate (the embedding predicts accuracy well, and this needs no data: only the n kept are decoded);
- `subsample`: SANE's "subsampled" sampling (Schürholt, Mahoney and Borth, 2024): draw n x `candidates` codes,
  decode and score them all (validation accuracy), keep the best n;
- `bootstrap`: SANE's "bootstrapped" sampling: `rounds` times, draw n x `candidates`, keep the best n, and centre
  the sampler on their codes (its spread unit stays the anchors'), so the draws walk towards the region that
  decodes well.
Scoring only ranks the draws; the kept models' reported accuracies come from the test split, later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.errors import UserError
from core.gen.samplers.base import Sampler

SELECTIONS = ("none", "guided", "subsample", "bootstrap")


@dataclass(frozen=True)
class Selection:
    mode: str = "none"
    candidates: int = 4  # draws per kept model (guided, subsample, bootstrap)
    rounds: int = 3  # bootstrap: draw-and-keep rounds, the sampler refit between them

    def __post_init__(self) -> None:
        if self.mode not in SELECTIONS:
            raise UserError(f"unknown selection {self.mode!r}; choose one of {', '.join(SELECTIONS)}")
        if self.candidates < 1 or self.rounds < 1:
            raise UserError("selection needs candidates >= 1 and rounds >= 1")


def select_models(
    sampler: Sampler,
    anchor_codes: np.ndarray,
    zoo_codes: np.ndarray,
    n: int,
    rng: np.random.Generator,
    decode: Callable[[np.ndarray], torch.Tensor],
    score: Callable[[torch.Tensor], np.ndarray],
    selection: Selection,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[torch.Tensor, dict]:
    """(weights [n, params], info): n models drawn from `sampler` fitted on the anchors' codes, selected as
    `selection` says (`score` rates decoded weights, `predict` rates codes); `info` has each round's mean score of
    all draws and of the kept ones."""
    sampler.fit(anchor_codes, zoo_codes)
    if selection.mode == "none":
        return decode(sampler.sample(n, rng)), {"mode": "none"}
    if selection.mode == "guided":
        if predict is None:
            raise UserError("guided selection needs an accuracy predictor (a probe of the run's embedding)")
        codes = sampler.sample(n * selection.candidates, rng)
        best, step = _best(np.asarray(predict(codes), dtype=np.float64), n, 0)
        info = {"mode": "guided", "candidates": selection.candidates, "rounds": 1, "history": [step]}
        return decode(codes[best]), info | {"scored_by": "predicted accuracy"}
    rounds = selection.rounds if selection.mode == "bootstrap" else 1
    history = []
    for number in range(rounds):
        codes = sampler.sample(n * selection.candidates, rng)
        weights = decode(codes)
        best, step = _best(np.asarray(score(weights), dtype=np.float64), n, number)
        history.append(step)
        if number < rounds - 1:
            sampler.recentre(codes[best])
    info = {"mode": selection.mode, "candidates": selection.candidates, "rounds": rounds, "history": history}
    return weights[torch.from_numpy(best)], info | {"scored_by": "validation accuracy"}


def _best(scores: np.ndarray, n: int, number: int) -> tuple[np.ndarray, dict]:
    """The indices of the n best scores, and the round's report."""
    best = np.argsort(-scores, kind="stable")[:n]
    return best, {"round": number, "drawn_mean": float(scores.mean()), "kept_mean": float(scores[best].mean())}
