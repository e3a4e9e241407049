"""S_Neigh (Schürholt et al. 2022): an anchor's code plus isotropic Gaussian noise."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.gen.samplers.base import Sampler


class Neighbour(Sampler):
    name: ClassVar[str] = "neighbour"
    description: ClassVar[str] = "Neighbourhood: an anchor's code plus noise, the same in every direction"

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = self.anchors.shape[1]
        return rng.normal(size=(n, d)) / np.sqrt(d)
