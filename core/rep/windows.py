"""SANE's training windows: an epoch tiles every model's whole sequence, and a step reads only its windows' tokens.

One random window per model per step (our first loader) saw each token a few times over a whole training run; the
official loader draws about sequence-length / window windows per model per epoch. Here each model's sequence is
cut into consecutive tiles of `window` tokens from a random offset, so every token falls in exactly one tile. A tile
cut short by either end of the sequence is read as a full window slid back inside it, and only the tile's own
tokens count in the loss (`keep`): every token is trained on exactly once per epoch, with full context. The step
gathers the windows' entries from the flat weights directly (through a permutation, when one augments), so its
memory grows with the window, never with the model. When the training models do not fit the memory budget, the
entries are read from the zoo's shards instead (`StoredEntries`): each window reads the span of its model's
stored row that its entries cover, so the step's memory still grows with the window only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.rep.prepare import PreparedZoo
from core.rep.sequence import SequenceLayout
from core.rep.training_rows import StoredRows


@dataclass(frozen=True)
class Windows:
    """A set of windows over models of one architecture: each one's model (row of the training set), first token,
    and the range [keep_from, keep_to) of its positions that count in the loss."""

    model: torch.Tensor  # long [W]
    start: torch.Tensor  # long [W]
    keep_from: torch.Tensor  # long [W]
    keep_to: torch.Tensor  # long [W]

    def __len__(self) -> int:
        return len(self.model)

    def __getitem__(self, picked: torch.Tensor) -> Windows:
        return Windows(self.model[picked], self.start[picked], self.keep_from[picked], self.keep_to[picked])


def epoch_windows(n_models: int, n_tokens: int, window: int, generator: torch.Generator) -> Windows:
    """Every model's sequence tiled by windows of min(window, n_tokens) tokens from a random offset per model."""
    device = generator.device
    length = min(window, n_tokens)
    offsets = torch.randint(0, length, (n_models,), generator=generator, device=device)
    tiles = -(-n_tokens // length) + 1  # enough tiles for any offset; the empty ones are dropped
    tile_start = offsets.unsqueeze(1) - length + length * torch.arange(tiles, device=device)  # [models, tiles]
    keep_start, keep_end = tile_start.clamp(0, n_tokens), (tile_start + length).clamp(0, n_tokens)
    real = keep_end > keep_start
    start = keep_start.clamp(max=n_tokens - length)
    model = torch.arange(n_models, device=device).unsqueeze(1).expand_as(real)
    return Windows(model[real], start[real], (keep_start - start)[real], (keep_end - start)[real])


class StoredEntries(StoredRows):
    """Standardised entries of training models read from the zoo's store on demand: what `window_tokens` reads
    when the training set does not fit in memory (and, for the behavioural loss, whole models: `models`)."""

    def __init__(self, prepared: PreparedZoo, rows: np.ndarray, device: str):
        super().__init__(prepared, rows, device)
        self.entry_mean, self.entry_std = prepared.entry_mean(), prepared.entry_std()

    def entries(self, model: torch.Tensor, entry: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """[W, L, width]: each window's entries `entry` (aligned positions) of its model `model`; padding
        (`real` False) reads as 0. One read per window, of the stored span its entries map to."""
        entry, real = entry.cpu(), real.cpu()
        values = torch.zeros(entry.shape)
        prepared = self.prepared
        for w, row in enumerate(self.rows[model.cpu().numpy()].tolist()):
            aligned = entry[w][real[w]]
            if not len(aligned):
                continue
            stored = aligned if prepared.family is None else prepared.indices[prepared.family[row]][aligned]
            first, last = int(stored.min()), int(stored.max()) + 1
            raw = prepared.zoo.span(row, first, last)[stored - first]
            values[w][real[w]] = (raw - self.entry_mean[aligned]) / self.entry_std[aligned]
        return values.to(self.device)


def read_entries(flat: torch.Tensor | StoredEntries, model: torch.Tensor, entry: torch.Tensor, real: torch.Tensor):
    """[W, L, width]: the entries of windows' models, from rows in memory or from the store."""
    if isinstance(flat, StoredEntries):
        return flat.entries(model, entry, real)
    return flat[model.view(-1, 1, 1), entry] * real


def window_tokens(
    layout: SequenceLayout, flat: torch.Tensor | StoredEntries, windows: Windows, length: int, entries=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens [W, L, width], positions [W, L, 3], loss mask [W, L, width], flat entry index [W, L, width]) of
    windows over the rows of `flat` [models, params] (in memory, or read from the store). `entries` (optional)
    maps each window's flat positions [W, L, width] through its model's permutation. `layout` must be on the
    windows' device."""
    steps = torch.arange(length, device=windows.start.device)
    token = windows.start.unsqueeze(1) + steps  # [W, L]
    entry = layout.index[token]  # [W, L, width]
    if entries is not None:
        entry = entries(entry)
    real = layout.mask[token]
    keep = (steps >= windows.keep_from.unsqueeze(1)) & (steps < windows.keep_to.unsqueeze(1))
    tokens = read_entries(flat, windows.model, entry, real)
    return tokens, layout.positions[token], real & keep.unsqueeze(2), entry


def splice(flat: torch.Tensor, entry: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Rows of `flat` [W, params] with the entries each window read (`entry` [W, L, width], where `mask`) replaced
    by `values` [W, L, width]. Entries read through a permutation go back where it took them from, so a row stays
    the unpermuted model; padding and uncounted entries leave the row as it was. One copy of `flat` (contiguous),
    and a gradient for `values` alone where `flat` needs none."""
    row = torch.arange(len(flat), device=flat.device).view(-1, 1, 1).expand_as(entry)
    return flat.index_put((row[mask], entry[mask]), values.to(flat.dtype)[mask])
