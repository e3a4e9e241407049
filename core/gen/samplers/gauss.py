"""S_Gauss (Schürholt et al. 2022): one multivariate normal fitted to the anchors' codes."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.covariance import LedoitWolf

from core.gen.samplers.base import Sampler

# A full covariance costs d^2 memory and d^3 time: past this many dimensions (SANE codes hold every token's
# latent, e.g. 12,800 numbers for a 20k-parameter ResNet) the Gaussian falls back to a diagonal one.
MAX_FULL_COVARIANCE_DIM = 4096
COVARIANCES = ("full", "diag")


class Gauss(Sampler):
    name: ClassVar[str] = "gauss"
    description: ClassVar[str] = "Gaussian: one multivariate normal fitted to the anchors"

    def __init__(self, covariance: str = "full") -> None:
        super().__init__()
        self.covariance = covariance  # full (Ledoit-Wolf shrinkage) or diag

    def _fit(self) -> None:
        self.mean = self.anchors.mean(axis=0)
        if self.covariance == "full" and len(self.mean) > MAX_FULL_COVARIANCE_DIM:
            self.fallback = f"diagonal covariance: {len(self.mean)} dimensions are too many for a full one"
        if self.covariance == "diag" or self.fallback:
            self.factor = np.diag(self.scale)
        else:
            covariance = LedoitWolf().fit(self.anchors).covariance_
            self.factor = np.linalg.cholesky(covariance + 1e-9 * np.eye(len(covariance)))

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean + rng.normal(size=(n, len(self.mean))) @ self.factor.T
