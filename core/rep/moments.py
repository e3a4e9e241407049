"""Per-layer mean and standard deviation of a zoo, accumulated chunk by chunk (streamed moments).

Each chunk's count, mean and sum of squared deviations per span are merged into the running ones by Chan et al.'s
pairwise update, in float64: summing squares and subtracting the squared mean at the end loses the digits of a
layer whose weights sit far from zero, and the pairwise form gives the whole-tensor figures to rounding whatever
the chunking.
"""

from __future__ import annotations

import torch


class LayerMoments:
    """Running (count, mean, M2) of every span of columns (e.g. each layer's weights and bias)."""

    def __init__(self, spans: list[slice]):
        self.spans = spans
        self.count = torch.zeros(len(spans), dtype=torch.float64)
        self.mean = torch.zeros(len(spans), dtype=torch.float64)
        self.m2 = torch.zeros(len(spans), dtype=torch.float64)

    def add(self, chunk: torch.Tensor) -> None:
        """Fold in a chunk of rows [rows, columns]."""
        for k, span in enumerate(self.spans):
            values = chunk[:, span].double()
            n = values.numel()
            if not n:
                continue
            mean = values.mean()
            m2 = ((values - mean) ** 2).sum()
            total = self.count[k] + n
            delta = mean - self.mean[k]
            self.m2[k] += m2 + delta**2 * self.count[k] * n / total
            self.mean[k] += delta * n / total
            self.count[k] = total

    def mean_std(self, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, unbiased std clamped at `floor`) per span, float32, as torch's `mean()` and `std()` would give."""
        variance = self.m2 / (self.count - 1).clamp_min(1)
        return self.mean.float(), variance.sqrt().float().clamp_min(floor)
