"""S_Neigh (Schürholt et al. 2022): an anchor's code plus Gaussian noise scaled to the anchors' spread."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.gen.samplers.base import Sampler


class Neighbour(Sampler):
    name: ClassVar[str] = "neighbour"
    description: ClassVar[str] = "Neighbourhood: an anchor's code plus noise"

    def __init__(self, noise: float = 0.25) -> None:
        super().__init__()
        self.noise = noise  # noise std as a fraction of the anchors' per-dimension std

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.around_anchors(n, rng, self.noise * self.scale)
