"""S_Gauss's covariance (Schürholt et al. 2022) as a kernel: an anchor's code plus Gaussian noise shaped by the full
covariance of the anchors' codes (Ledoit-Wolf shrinkage), so draws move along the directions the anchors vary in.
Centred on anchors rather than on their mean, so that spread 0 returns the anchors, as every sampler does."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.covariance import LedoitWolf

from core.gen.samplers.base import Sampler

# A full covariance costs d^2 memory and d^3 time: past this many dimensions (SANE codes hold every token's
# latent, e.g. 12,800 numbers for a 20k-parameter ResNet) the noise takes the diagonal of the covariance only.
MAX_FULL_COVARIANCE_DIM = 4096


class Gauss(Sampler):
    name: ClassVar[str] = "gauss"
    description: ClassVar[str] = "Gaussian: a kernel on each anchor, shaped like the anchors' full covariance"

    def _fit(self) -> None:
        d = self.anchors.shape[1]
        if len(self.anchors) < 2:
            self.factor = np.eye(d) / np.sqrt(d)
            return
        if d > MAX_FULL_COVARIANCE_DIM:
            self.fallback = f"diagonal covariance: {d} dimensions are too many for a full one"
            variance = self.anchors.var(axis=0)
            variance = variance if variance.sum() > 0 else np.ones(d)
            self.factor = np.diag(np.sqrt(variance / variance.sum()))
            return
        covariance = LedoitWolf().fit(self.anchors).covariance_
        covariance /= max(np.trace(covariance), 1e-12)
        self.factor = np.linalg.cholesky(covariance + 1e-9 * np.eye(d))

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(size=(n, len(self.factor))) @ self.factor.T
