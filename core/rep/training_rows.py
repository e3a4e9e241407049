"""An autoencoder's training models: standardised rows in memory when they fit their share of the memory budget
(the fast path: a step indexes a tensor), else read from the zoo's shards a batch at a time (`StoredRows`). Both
kinds use it: the per-neuron autoencoder reads whole models per batch, SANE its windows' entries
(core/rep/windows.py `StoredEntries`). The rows a step sees are the same either way, so a run trained from the
shards equals one trained in memory.
"""

from __future__ import annotations

import numpy as np
import torch

from core.rep.prepare import PreparedZoo
from core.store.budget import fits


class StoredRows:
    """Standardised training models read from the zoo's store on demand. Row `m` is the zoo row `rows[m]`."""

    def __init__(self, prepared: PreparedZoo, rows: np.ndarray, device: str):
        self.prepared, self.rows, self.device = prepared, rows, device

    def __len__(self) -> int:
        return len(self.rows)

    def models(self, model: torch.Tensor) -> torch.Tensor:
        """Whole standardised rows [len(model), params]."""
        return self.prepared.standardised_rows(self.rows[model.cpu().numpy()]).to(self.device)


def training_rows(
    prepared: PreparedZoo, rows: np.ndarray, device: str, reader: type[StoredRows] = StoredRows
) -> torch.Tensor | StoredRows:
    """The standardised models `rows` in memory on `device` when they fit a quarter of the memory budget, else a
    `reader` (StoredRows or a kind's own subclass) that takes each step's rows from the zoo's shards."""
    if fits(4 * len(rows) * prepared.zoo.spec.n_params):
        return prepared.standardised_rows(rows).to(device)
    return reader(prepared, rows, device)


def model_rows(flat: torch.Tensor | StoredRows, model: torch.Tensor) -> torch.Tensor:
    """Whole standardised training models [len(model), params], from memory or from the store."""
    return flat.models(model) if isinstance(flat, StoredRows) else flat[model]
