"""S_KDE (Schürholt et al. 2022), sampled from the joint density: a Gaussian kernel on every anchor's code, one
kernel centre per draw and noise in every dimension at once, each dimension's width in proportion to the anchors'
spread along it (the kernel of a KDE on per-dimension standardised codes)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.gen.samplers.base import Sampler


class KDE(Sampler):
    name: ClassVar[str] = "kde"
    description: ClassVar[str] = "KDE: a kernel on each anchor, shaped like the anchors' spread per dimension"

    def _fit(self) -> None:
        spread = self.anchors.std(axis=0) if len(self.anchors) > 1 else np.zeros(self.anchors.shape[1])
        if not (spread > 0).any():
            spread = np.ones(self.anchors.shape[1])
        self.shape = spread / np.linalg.norm(spread)

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(size=(n, len(self.shape))) * self.shape
