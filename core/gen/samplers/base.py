"""What every sampler is: fitted on the anchors' latent codes, it draws new codes.

    sampler = make_sampler("kde").fit(anchor_codes, zoo_codes)
    codes = sampler.sample(16, rng)

With one anchor (or anchors with no spread) no density can be estimated: every sampler then falls back to noise
around the anchor scaled to the spread of the zoo's codes, and says so in `fallback`. To add a sampler, subclass
`Sampler` in a module of this folder and register it in `__init__.py`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.errors import UserError

FALLBACK_SCALE = 0.25  # one anchor: noise of this fraction of the zoo's per-dimension spread


class Sampler:
    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self) -> None:
        self.fallback: str | None = None
        self.single_anchor = False
        self.anchors = np.zeros((0, 0))
        self.scale = np.zeros(0)

    def fit(self, anchors: np.ndarray, zoo_codes: np.ndarray) -> Sampler:
        """Fit on anchor codes [A, code]; `zoo_codes` [Z, code] (a sample of the zoo) scale the one-anchor
        fallback."""
        if len(anchors) == 0:
            raise UserError("no anchors selected: choose at least one checkpoint to sample around")
        self.fallback = None
        self.anchors = anchors.astype(np.float64)
        spread = anchors.std(axis=0) if len(anchors) > 1 else np.zeros(anchors.shape[1])
        self.single_anchor = len(anchors) < 2 or not (spread > 0).any()
        if self.single_anchor:
            self.fallback = "one anchor: neighbour noise scaled to the whole zoo's spread"
            self.scale = zoo_codes.std(axis=0) * FALLBACK_SCALE
            return self
        self.scale = np.where(spread > 0, spread, spread[spread > 0].min())
        self._fit()
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, code] float32 codes."""
        codes = self.around_anchors(n, rng, self.scale) if self.single_anchor else self._draw(n, rng)
        return codes.astype(np.float32)

    def around_anchors(self, n: int, rng: np.random.Generator, scale: np.ndarray) -> np.ndarray:
        """A random anchor plus Gaussian noise of per-dimension std `scale`, per draw."""
        centres = self.anchors[rng.integers(0, len(self.anchors), n)]
        return centres + rng.normal(size=centres.shape) * scale

    def _fit(self) -> None:
        """Estimate the density from `self.anchors` (standardised by `self.scale` where that helps)."""

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError
