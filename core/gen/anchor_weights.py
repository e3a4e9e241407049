"""The aligned weights the weight-space baselines draw around, read a chunk at a time within the memory budget.

The baselines used to take every anchor's aligned weights as one tensor: a third of the zoo for the default
`top:0.3`, GBs for a zoo of ResNet-18s. A draw needs only the anchors it is centred on, and the per-weight Gaussian
only streamed moments, so `AnchorWeights` reads rows where a draw asks for them; `HeldWeights` gives the same
interface to vectors already in memory (a bootstrap round's kept draws, n of them).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from core.rep.prepare import PreparedZoo
from core.store.budget import chunk_rows

# Copies of a chunk of rows alive at once while the baselines use it: the raw rows and their aligned copy, and a
# draw's noise (float64 from numpy, its float32 cast, scaled twice) or the moments' float64 deviations.
COPIES = 7


class AnchorWeights:
    """The aligned weights of the zoo rows `rows` of `prepared` (the anchors), read on demand: `take` reads the
    rows asked for, at most `chunk` at a time; `chunks` walks all of them in order. `chunk` is also how many
    draws a baseline makes at once, so their noise stays within the chunk's share of the budget too."""

    def __init__(self, prepared: PreparedZoo, rows: np.ndarray):
        self.prepared = prepared
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        self.width = prepared.zoo.spec.n_params
        self.chunk = chunk_rows(self.width, COPIES)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, positions) -> torch.Tensor:
        """[len(positions), params]: the aligned weights of the anchors at `positions` (repeats allowed)."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        taken = torch.empty(len(positions), self.width)
        for start in range(0, len(positions), self.chunk):
            taken[start : start + self.chunk] = self.prepared.aligned_rows(
                self.rows[positions[start : start + self.chunk]]
            )
        return taken

    def chunks(self) -> Iterator[torch.Tensor]:
        """Every anchor's aligned weights, `chunk` rows at a time."""
        for _, aligned in self.prepared.iter_aligned(self.rows, self.chunk):
            yield aligned


class HeldWeights:
    """Weight vectors [rows, params] in memory behind `AnchorWeights`' interface."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
        self.width = self.vectors.shape[1]
        self.chunk = chunk_rows(self.width, COPIES)

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, positions) -> torch.Tensor:
        return self.vectors[torch.from_numpy(np.asarray(positions, dtype=np.int64).reshape(-1))]
