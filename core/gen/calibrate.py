"""Choose the sampler's spread for the zoo at hand.

A spread is measured in units of the anchors' typical spacing in latent space, and what that unit does to a
decoded model differs from zoo to zoo: spread 1.5 kept 101% of the anchors' accuracy on the digits default and
75-84% on a shapes zoo. So instead of a fixed number, a run asks for a *share of the anchors' validation
accuracy* to keep, and the spread is chosen here: the largest of `SPREADS` whose draws, kept as the run keeps them
(the best 1 in `candidates` on validation accuracy, or all of them), keep at least that share: the share is of
what the run returns, not of draws it throws away, and it is measured against the anchors those draws came from
(as a run's `source_ratio` is). Every spread is tried with the same random draws (common random numbers), so the
measured curve moves with the spread alone and not with the luck of each draw. The trial, the choice and the
reason go into the run's record. The trial draws are decoded and scored a chunk at a time within the memory budget
(core/gen/chunked_draws.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.gen.chunked_draws import DecodedDraws, best_of, measured
from core.gen.samplers.base import Sampler, ZooCodes

SPREADS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
TRIAL_DRAWS = 32  # draws decoded and scored at each spread


@dataclass(frozen=True)
class Calibration:
    target: float  # the share of their source anchors' validation accuracy the kept draws must keep
    anchors_val_acc: float  # the mean over all anchors, for the record
    candidates: int  # draws per kept one (the best on validation accuracy); 1: every draw counts
    tried: tuple[tuple[float, float], ...]  # (spread, its kept draws' validation accuracy / their source anchors')
    spread: float
    reason: str
    # Where no spread kept the target: the same share for the anchors' own decodes (spread 0), which says whether
    # the decoder alone already falls short (None where a spread kept it)
    decodes_kept: float | None = None

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "anchors_val_acc": self.anchors_val_acc,
            "candidates": self.candidates,
            "tried": [{"spread": s, "kept": k} for s, k in self.tried],
            "spread": self.spread,
            "reason": self.reason,
            "decodes_kept": self.decodes_kept,
        }


def calibrate_spread(
    sampler: Sampler,
    anchor_codes: np.ndarray,
    zoo_codes: ZooCodes,
    anchor_scores: np.ndarray,
    target: float,
    seed: int,
    decode: Callable[[np.ndarray], torch.Tensor],
    score: Callable[[torch.Tensor], np.ndarray],
    candidates: int = 1,
    judge: Callable[[torch.Tensor], np.ndarray] | None = None,
    chunk: int | None = None,
) -> Calibration:
    """Set `sampler.spread` to the largest spread in SPREADS whose kept draws' validation accuracy (`score` of the
    decoded weights) is at least `target` x that of the anchors they were drawn around (`anchor_scores`, one per
    row of `anchor_codes`). The draws are kept as the run keeps them: the best 1 in `candidates` of all draws on
    validation accuracy (as selection.py keeps them), or all of them. `judge`, where given, scores the kept draws and is
    what `anchor_scores` were scored by, on other validation images than `score`'s: draws kept for being best on
    some images are judged on others, so the share is not raised by the luck that made them best (judged on the
    images that chose them, a shapes zoo's 144 validation images read 1.01 at the spread chosen, where the run then
    kept 0.93 on the test split). The smallest spread when none keeps the share, and the record says so. Stops
    at the first spread that falls short: a larger one is not expected to do better. `chunk`: how many draws are
    decoded and scored at once (core/gen/chunked_draws.py `draw_chunk`; default: all)."""
    sampler.fit(anchor_codes, zoo_codes)
    kept_count = max(1, TRIAL_DRAWS // candidates)
    size = chunk or kept_count * candidates

    def kept_share(spread: float) -> float:
        """The kept draws' share of their source anchors' validation accuracy at `spread`."""
        sampler.spread = spread
        # the same draws at every spread (common random numbers)
        draws = sampler.draws(kept_count * candidates, np.random.default_rng([seed, 11]), size)
        best, judged = _kept_and_judged(DecodedDraws(draws, decode, size), score, judge or score, kept_count)
        return round(float(judged.mean()) / max(float(anchor_scores[draws.centres[best]].mean()), 1e-12), 4)

    tried, chosen, decodes_kept = [], None, None
    for spread in SPREADS:
        tried.append((spread, kept_share(spread)))
        if tried[-1][1] < target:
            break
        chosen = spread
    how = f"the best {kept_count} of {kept_count * candidates} draws" if candidates > 1 else f"{kept_count} draws"
    if chosen is None:
        chosen, decodes_kept = SPREADS[0], kept_share(0.0)
        reason = f"no spread kept {target:.0%} of the source anchors' validation accuracy; the smallest is used"
        if decodes_kept < target:
            reason += f" (the anchors' own decodes keep {decodes_kept:.1%}: the decoder falls short before any spread)"
    elif chosen == SPREADS[-1]:
        reason = f"every spread tried kept {target:.0%} of the source anchors' validation accuracy; the largest is used"
    else:
        reason = f"the largest spread at which {how} kept {target:.0%} of their source anchors' validation accuracy"
    sampler.spread = chosen
    return Calibration(target, float(anchor_scores.mean()), candidates, tuple(tried), chosen, reason, decodes_kept)


def _kept_and_judged(decoded_draws: DecodedDraws, score, judge, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """(the `keep` best draws by `score`, best first; `judge`'s figures of them, in that order). Where every draw
    is kept, each chunk is judged as it is decoded and none is held; else the best are held, then judged."""
    if keep >= len(decoded_draws):
        scores, judged = measured(decoded_draws, lambda weights: (score(weights), judge(weights)))
        best = np.argsort(-scores, kind="stable")
        return best, judged[best]
    _, best, kept = best_of(decoded_draws, score, keep)
    return best, np.concatenate([judge(part) for part in kept.split(decoded_draws.chunk)])


def describe_calibration(record: dict) -> str:
    """One line for a run's recorded calibration (`Calibration.to_json()`): the spread, why, and what each spread
    tried kept (the CLI prints it; the Generate page shows it with the results)."""
    trial = ", ".join(f"{t['spread']:g}: {t['kept']:.1%}" for t in record["tried"])
    return f"spread {record['spread']:g}: {record['reason']} (kept at each spread tried: {trial})"
