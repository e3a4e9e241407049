"""Linear probes of model properties (Schürholt et al. 2021): closed-form ridge regression from features (an
embedding, flat weights W, weight statistics s(W)) to test accuracy, epoch and generalisation gap, scored on
held-out models as R^2 (the 2021 paper's measure) and as Kendall's tau between predicted and true values (the
rank agreement the later weight-space literature reports)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from scipy.stats import kendalltau

from core.zoo.arch import Spec, tensor_slices

PROPERTIES = ("test_acc", "epoch", "ggap")
_QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)


def weight_statistics(spec: Spec, weights: torch.Tensor) -> np.ndarray:
    """s(W) of Unterthiner et al. 2020: per layer, for each tensor it stores apart (weights, biases; a
    BatchNorm's scale, shift, running mean and variance), the mean, variance and the 1/25/50/75/99
    percentiles."""
    features = []
    q = torch.tensor(_QUANTILES)
    for span in tensor_slices(spec):
        part = weights[:, span]
        features += [part.mean(1, keepdim=True), part.var(1, keepdim=True), torch.quantile(part, q, dim=1).T]
    return torch.cat(features, dim=1).numpy()


def pooled_statistics(weights: torch.Tensor) -> np.ndarray:
    """Architecture-agnostic statistics of each model's parameters taken together: the log of their count, mean,
    variance and the 1/25/50/75/99 percentiles. The s(W) baseline for zoos of several architectures."""
    q = torch.tensor(_QUANTILES)
    rows = max(1, 2**24 // weights.shape[1])  # torch.quantile takes at most 2^24 entries at once
    quantiles = torch.cat([torch.quantile(weights[i : i + rows], q, dim=1).T for i in range(0, len(weights), rows)])
    count = torch.full((len(weights), 1), float(np.log(weights.shape[1])))
    return torch.cat([count, weights.mean(1, keepdim=True), weights.var(1, keepdim=True), quantiles], dim=1).numpy()


def _r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    denominator = ((truth - truth.mean()) ** 2).sum()
    return float(1 - ((truth - predicted) ** 2).sum() / denominator) if denominator > 0 else float("nan")


@dataclass(frozen=True)
class Ridge:
    """A fitted linear probe: features standardised with the training rows' mean and std, then a linear map."""

    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.coef + self.intercept


def fit_ridge(features: np.ndarray, target: np.ndarray, sides: np.ndarray) -> Ridge:
    """A closed-form ridge regression fit on the train rows, lambda chosen on the val rows (rows with a
    non-finite target are left out).

    One thin SVD of the train rows, X = U S V^T, gives every lambda's solution V diag(s / (s^2 + lambda)) U^T y
    at the cost of min(rows, features)^2 x max(...): flat weights of a ResNet (tens of thousands of features,
    hundreds of rows) never form a features x features Gram matrix."""
    known = np.isfinite(target)
    train, val = ((sides == s) & known for s in ("train", "val"))
    mean, std = features[train].mean(0), features[train].std(0) + 1e-8
    x = (features - mean) / std
    y_mean = float(target[train].mean())
    u, singular, vt = np.linalg.svd(x[train].astype(np.float64), full_matrices=False)
    uty = u.T @ (target[train] - y_mean)
    best = (-np.inf, None)
    for lam in np.logspace(-3, 5, 17):
        coef = vt.T @ (singular / (singular**2 + lam) * uty)
        score = _r2(target[val], x[val] @ coef + y_mean)
        # A val target without spread scores every lambda NaN: the first lambda is kept rather than none.
        if best[1] is None or score > best[0]:
            best = (score, coef)
    return Ridge(mean, std, best[1], y_mean)


def _tau(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Kendall's tau-b (ties counted as scipy does); NaN where either side is constant."""
    if len(truth) < 2 or np.ptp(truth) == 0 or np.ptp(predicted) == 0:
        return float("nan")
    return float(kendalltau(truth, predicted).statistic)


def probe_scores(features: np.ndarray, target: np.ndarray, sides: np.ndarray) -> dict[str, float]:
    """{"r2", "tau"} of `fit_ridge`'s probe on the test rows (which never enter the fit or the choice of lambda)."""
    test = (sides == "test") & np.isfinite(target)
    predicted = fit_ridge(features, target, sides).predict(features[test])
    return {"r2": _r2(target[test], predicted), "tau": _tau(target[test], predicted)}


def ridge_probe(features: np.ndarray, target: np.ndarray, sides: np.ndarray) -> float:
    """Test R^2 of `fit_ridge`'s probe."""
    return probe_scores(features, target, sides)["r2"]


def probe_all(
    features: dict[str, np.ndarray], table: pl.DataFrame, sides: np.ndarray
) -> dict[str, dict[str, dict[str, float]]]:
    """{"r2": {feature set: {property: score}}, "tau": the same}: every property probed from every feature set."""
    scores = {
        name: {prop: probe_scores(x, table[prop].cast(pl.Float64).to_numpy(), sides) for prop in PROPERTIES}
        for name, x in features.items()
    }
    return {m: {name: {p: s[m] for p, s in by.items()} for name, by in scores.items()} for m in ("r2", "tau")}
