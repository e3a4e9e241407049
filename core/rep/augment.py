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

    @property
    def active(self) -> bool:
        """Whether any model may be permuted (augmentation on)."""
        return self.permutations is not None

    def draw(self, count: int) -> torch.Tensor | None:
        """For each of `count` models, the pool index of its permutation, or -1 for none (None: augmentation off)."""
        if not self.active:
            return None
        pick = torch.randint(0, len(self.permutations), (count,), generator=self.generator, device=self.device)
        permute = torch.rand(count, generator=self.generator, device=self.device) < self.probability
        return torch.where(permute, pick, -1)

    def entries(self, pick: torch.Tensor | None, entry: torch.Tensor) -> torch.Tensor:
        """Flat positions `entry` [count, ...] of each model, read through its drawn permutation: only the entries
        asked for are looked up, never a whole model's index."""
        if pick is None:
            return entry
        chosen = self.permutations[pick.clamp_min(0).view(-1, *([1] * (entry.dim() - 1))), entry]
        return torch.where((pick >= 0).view(-1, *([1] * (entry.dim() - 1))), chosen, entry)

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        pick = self.draw(flat.shape[0])
        if pick is None:
            return flat
        identity = torch.arange(flat.shape[1], device=self.device).expand_as(flat)
        return torch.gather(flat, 1, self.entries(pick, identity))
