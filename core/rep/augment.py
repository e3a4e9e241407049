"""Augmented views of weight vectors for contrastive training: function-preserving permutations of hidden units
(Schürholt et al. 2021), then the kinds' own token-space noise and erasing."""

from __future__ import annotations

import torch

from core.rep.align_resnet import random_resnet_permutations
from core.rep.tokens import random_permutation_indices
from core.zoo.arch import Spec

PERMUTATION_POOL = 256  # precomputed permutations per zoo, drawn from at every step (the paper precomputes many)


class Permuter:
    """Rows of a flat-weight batch, each replaced by a random function-preserving permutation of itself with the
    given probability (a no-op at probability 0)."""

    def __init__(self, spec: Spec, probability: float, seed: int, generator: torch.Generator, device: str):
        self.probability, self.generator, self.device = probability, generator, device
        self.permutations = None
        if probability > 0:
            cpu = torch.Generator().manual_seed(seed)
            draw = random_permutation_indices if spec.plain_units else random_resnet_permutations
            self.permutations = draw(spec, PERMUTATION_POOL, cpu).to(device)

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        if self.permutations is None:
            return flat
        rows = flat.shape[0]
        pick = torch.randint(0, len(self.permutations), (rows,), generator=self.generator, device=self.device)
        permute = torch.rand(rows, generator=self.generator, device=self.device) < self.probability
        identity = torch.arange(flat.shape[1], device=self.device)
        gather = torch.where(permute.unsqueeze(1), self.permutations[pick], identity)
        return torch.gather(flat, 1, gather)
