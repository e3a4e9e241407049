"""Means and standard deviations of a zoo, accumulated chunk by chunk (streamed moments): per layer (a span of
columns) for standardisation, per column for a per-weight Gaussian.

Each chunk's count, mean and sum of squared deviations are merged into the running ones by Chan et al.'s pairwise
update, in float64: summing squares and subtracting the squared mean at the end loses the digits of a layer whose
weights sit far from zero, and the pairwise form gives the whole-tensor figures to rounding whatever the chunking.
"""

from __future__ import annotations

import torch


def merged(running: tuple, n: int, mean: torch.Tensor, m2: torch.Tensor) -> tuple:
    """(count, mean, M2) of the running (count, mean, M2) joined by n values of mean `mean` and M2 `m2` (scalars or
    one per column alike)."""
    count, running_mean, running_m2 = running
    total = count + n
    delta = mean - running_mean
    return total, running_mean + delta * n / total, running_m2 + (m2 + delta**2 * count * n / total)


def unbiased_std(count: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """The unbiased std from (count, M2), 0 for a single value (where torch's `std()` gives nan)."""
    return (m2 / (count - 1).clamp_min(1)).sqrt()


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
            running = (self.count[k], self.mean[k], self.m2[k])
            self.count[k], self.mean[k], self.m2[k] = merged(running, n, mean, ((values - mean) ** 2).sum())

    def mean_std(self, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, unbiased std clamped at `floor`) per span, float32, as torch's `mean()` and `std()` would give."""
        return self.mean.float(), unbiased_std(self.count, self.m2).float().clamp_min(floor)


class ColumnMoments:
    """Running (count, mean, M2) of every column over rows read a chunk at a time: a per-weight Gaussian fitted to
    more checkpoints than memory holds."""

    def __init__(self, columns: int):
        self.count = torch.zeros((), dtype=torch.float64)
        self.mean = torch.zeros(columns, dtype=torch.float64)
        self.m2 = torch.zeros(columns, dtype=torch.float64)

    def add(self, chunk: torch.Tensor) -> None:
        """Fold in a chunk of rows [rows, columns]."""
        if not len(chunk):
            return
        values = chunk.double()
        mean = values.mean(0)
        running = (self.count, self.mean, self.m2)
        self.count, self.mean, self.m2 = merged(running, len(values), mean, ((values - mean) ** 2).sum(0))

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, unbiased std) per column, float32; the std is 0 over a single row."""
        return self.mean.float(), unbiased_std(self.count, self.m2).float()
