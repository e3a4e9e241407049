"""Ensembles of models: average the members' softmax probabilities and measure what the average gains.

An ensemble is the plainest test of whether a generator makes new models (Schürholt et al. 2022 evaluate
generated models as ensembles): copies of one model add nothing to it, models that err differently do. Each
member's probabilities are computed once (core/zoo/population.py, the vectorised forward of many models); every
ensemble after that is an average of stored rows, so many random subsets cost little.

Figures of one ensemble on a split (`ensemble_figures`):
- `acc`: accuracy of the averaged probabilities; `vote_acc`: of the members' majority vote (a tie goes to the
  class with the higher averaged probability);
- `nll`: mean negative log-likelihood of the true class under the averaged probabilities;
- `ece`: expected calibration error, 15 equal-width bins of confidence (the largest averaged probability);
- `brier`: the multi-class Brier score, sum over classes of (p - one-hot)^2, averaged over inputs (0 to 2);
- `disagreement`: the fraction of inputs on which two members' argmax differ, averaged over pairs (0 for one
  member: it has no pair);
- `gain`: `acc` minus the mean accuracy of its members.

`ensemble_table` reports them for ensembles of N = 1, 2, 4, 8, 16, 32 members (up to the group's size) and of the
whole group, over random subsets of the group (seeded; every subset where there are few): each figure as
{"mean", "lo", "hi"}, the mean over subsets and the 2.5th and 97.5th percentiles, so lo..hi holds 95% of the
ensembles of that size one could draw from the group (the spread of ensembles, not an interval of the mean).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from itertools import combinations

import numpy as np
import torch

from core.store.runs import ENSEMBLE_FIGURES
from core.zoo.arch import Spec
from core.zoo.population import evaluate_models, model_probabilities

SIZES = (1, 2, 4, 8, 16, 32)
DRAWS = 20  # random subsets per size: enough for a 95% range of 20 points (the extremes bound it)
ECE_BINS = 15
FIGURES = ENSEMBLE_FIGURES  # what a samples run's record holds per ensemble (checked there)
_TINY = 1e-12  # a probability of 0 costs log(1e-12) = 27.6 nats, not infinity


# ---------------------------------------------------------------- one ensemble


def negative_log_likelihood(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[...]: mean -log p(true class) of probabilities [..., N, K]."""
    true = probs.gather(-1, labels.expand(*probs.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return -true.clamp_min(_TINY).log().mean(-1)


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[...]: mean over inputs of sum over classes of (p - one-hot)^2, for probabilities [..., N, K]."""
    true = probs.gather(-1, labels.expand(*probs.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return (probs.square().sum(-1) - 2 * true + 1).mean(-1)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> torch.Tensor:
    """[...]: sum over equal-width confidence bins of (inputs in the bin / N) x |accuracy - mean confidence| there,
    for probabilities [..., N, K]. A confidence of exactly 1 falls in the last bin."""
    confidence, predicted = probs.max(-1)
    correct = (predicted == labels).to(probs.dtype)
    lead = confidence.shape[:-1]
    flat_conf, flat_correct = confidence.reshape(-1, confidence.shape[-1]), correct.reshape(-1, correct.shape[-1])
    which = (flat_conf * bins).long().clamp(0, bins - 1)
    which = which + bins * torch.arange(len(which)).unsqueeze(1)  # one set of bins per ensemble
    size = len(which) * bins
    gap = torch.zeros(size, dtype=probs.dtype).index_add_(0, which.reshape(-1), (flat_correct - flat_conf).reshape(-1))
    return (gap.abs().view(-1, bins).sum(1) / confidence.shape[-1]).view(lead)


class _Group:
    """A group's members (probabilities [M, N, K]) made ready once for many ensembles of them: flattened, each
    member's votes (one-hot argmax) and accuracy. Computed in the members' precision: float32 from the forward
    pass (a mean of at most a few dozen probabilities loses nothing that matters; float64 took twice as long)."""

    def __init__(self, members: torch.Tensor, labels: torch.Tensor):
        self.shape, self.labels, self.dtype = members.shape, labels, members.dtype
        m, n, k = members.shape
        self.flat = members.reshape(m, n * k)
        predicted = members.argmax(-1)  # [M, N]
        self.votes = torch.nn.functional.one_hot(predicted, k).reshape(m, n * k).to(self.dtype)
        self.member_acc = (predicted == labels).to(self.dtype).mean(1)  # [M]

    def figures(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each figure [D] of D ensembles at once: `weights` [D, M] holds 1 where a member belongs to an
        ensemble (a greedy selection's repeat would be 2)."""
        _, n, k = self.shape
        labels, weights = self.labels, weights.to(self.dtype)
        count = weights.sum(1)
        probs = (weights @ self.flat / count.unsqueeze(1)).view(-1, n, k)
        votes = (weights @ self.votes).view(-1, n, k)
        pairs = count * (count - 1)
        agree = (votes * (votes - 1)).sum(-1).mean(-1)  # ordered pairs of members that agree, averaged over inputs
        acc = (probs.argmax(-1) == labels).to(self.dtype).mean(-1)
        return {
            "acc": acc,
            "vote_acc": ((votes + 0.5 * probs).argmax(-1) == labels).to(self.dtype).mean(-1),
            "nll": negative_log_likelihood(probs, labels),
            "ece": expected_calibration_error(probs, labels),
            "brier": brier_score(probs, labels),
            "disagreement": torch.where(pairs > 0, 1 - agree / pairs.clamp_min(1), torch.zeros_like(agree)),
            "gain": acc - weights @ self.member_acc / count,
        }


def ensemble_figures(members: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The figures (module docstring) of the ensemble of all `members` (probabilities [M, N, K])."""
    figures = _Group(members, labels).figures(torch.ones(1, len(members)))
    return {name: float(values[0]) for name, values in figures.items()}


# ---------------------------------------------------------------- ensembles of every size


def ensemble_sizes(members: int) -> list[int]:
    """SIZES up to `members`, and `members` itself (the whole group)."""
    return sorted({s for s in SIZES if s <= members} | {members})


def subsets(members: int, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """[D, size] member indices: every subset where there are at most `draws`, else `draws` random ones."""
    if math.comb(members, size) <= draws:
        return np.array(list(combinations(range(members), size)))
    return np.stack([np.sort(rng.choice(members, size, replace=False)) for _ in range(draws)])


def ensemble_table(members: torch.Tensor, labels: torch.Tensor, draws: int = DRAWS, seed: int = 0) -> dict:
    """{"N": {figure: {"mean", "lo", "hi"}}} for ensembles of each size of `ensemble_sizes` drawn from the group
    `members` (probabilities [M, N, K]); lo and hi: the 2.5th and 97.5th percentiles over the subsets."""
    rng, group = np.random.default_rng([seed, 27]), _Group(members, labels)
    table = {}
    for size in ensemble_sizes(len(members)):
        chosen = torch.from_numpy(subsets(len(members), size, draws, rng))
        weights = torch.zeros(len(chosen), len(members)).scatter_(1, chosen, 1.0)
        figures = group.figures(weights)
        table[str(size)] = {name: _summary(values.double().numpy()) for name, values in figures.items()}
    return table


def _summary(values: np.ndarray) -> dict[str, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return {"mean": float(values.mean()), "lo": float(lo), "hi": float(hi)}


def evaluate_ensembles(
    spec: Spec, groups: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, seed: int = 0, device: str = "cpu"
) -> tuple[dict, dict]:
    """({group: ensemble_table}, what it cost): each group's members [M, params] evaluated once on (x, y)."""
    started, tables, forward = time.perf_counter(), {}, 0.0
    for name, vectors in groups.items():
        if len(vectors) == 0:
            continue
        begun = time.perf_counter()
        members = model_probabilities(spec, vectors, x, device)
        forward += time.perf_counter() - begun
        tables[name] = ensemble_table(members, y, seed=seed)
    seconds = {"forward": round(forward, 3), "total": round(time.perf_counter() - started, 3)}
    return tables, {"seconds": seconds, "distinct": {k: distinct_models(v) for k, v in groups.items()}}


def distinct_models(vectors: torch.Tensor) -> int:
    """How many different weight vectors [M, params] holds (a greedy selection may keep one model twice)."""
    return len(torch.unique(vectors, dim=0)) if len(vectors) else 0


# ---------------------------------------------------------------- selecting an ensemble


def greedy_ensemble(true_probs: np.ndarray, n: int) -> tuple[np.ndarray, list[float]]:
    """Forward selection with replacement (Caruana et al. 2004, "Ensemble selection from libraries of models"):
    start empty; n times, add the candidate (repeats allowed) whose addition gives the lowest NLL of the averaged
    probabilities. `true_probs` [C, N]: each candidate's probability of the true class on each validation input,
    all the NLL of an average needs. Returns the picks [n] (in order; ties to the lower index) and the
    ensemble's NLL after each."""
    true_probs = np.asarray(true_probs, dtype=np.float64)
    total = np.zeros(true_probs.shape[1])
    picks, path = [], []
    for step in range(1, n + 1):
        nll = -np.log(np.maximum((total + true_probs) / step, _TINY)).mean(1)
        best = int(np.argmin(nll))
        picks.append(best)
        path.append(float(nll[best]))
        total += true_probs[best]
    return np.array(picks, dtype=np.int64), path


def validation_scorers(spec: Spec, x: torch.Tensor, y: torch.Tensor) -> tuple[Callable, Callable]:
    """(score, predictions) of decoded weights [C, params] on validation data (x, y), a dataset's `scored_val`:
    `score` gives each model's accuracy [C]; `predictions` gives (each model's probability of the true class
    [C, N], accuracy [C]), what a greedy ensemble selection needs."""

    def score(weights: torch.Tensor) -> np.ndarray:
        return evaluate_models(spec, weights, x, y)[1].numpy()

    def predictions(weights: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        probs = model_probabilities(spec, weights, x)
        true = probs.gather(-1, y.expand(len(probs), -1).unsqueeze(-1)).squeeze(-1)
        return true.numpy(), (probs.argmax(-1) == y).double().mean(1).numpy()

    return score, predictions
