"""Draws decoded and scored a chunk at a time, so that keeping the best n of n x candidates holds a chunk of decoded
models and the n kept, not all of them.

Selection (core/gen/selection.py), the spread's calibration (core/gen/calibrate.py) and the weight-space baselines
(core/gen/baselines.py) decode many draws only to score them and keep a few: 16 x 4 ResNet-18s are 2.9 GB of
float32, over the default 2 GiB budget, where their scores are 64 numbers. Here the draws are decoded `chunk` at a
time (`draw_chunk`: sized from the budget); `best_of` keeps a running best n with their weights, `measured` gathers
small per-draw figures (a diverse selection's validation probabilities), and `DecodedDraws.rows` decodes the
picked draws again where they were not kept. The results are those of decoding all draws at once where decoding and
scoring give a model the same numbers in any batch: the draws are the same (core/gen/samplers/draws.py), a running
best n picks what one stable sort of all scores picks (ties to the earlier draw), and a draw decoded again is decoded
in the same chunk as before. torch's CPU kernels are not quite batch-invariant (measured on the digits
autoencoder: decoded weights differ in the last bit, at most 8.3e-7, between batches of 1 to 3 models and larger
ones, one thread or two), so a small budget's decodes can differ from one chunk's by float rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import torch

from core.gen.samplers.draws import Draws
from core.store.budget import chunk_rows

# Copies of a chunk of decoded models alive while it is scored, as when anchors are decoded (core/rep/run.py
# `decode_chunks`): the decoder's tokens, the decoded weights, BatchNorm re-estimation's copy, and scoring's
# activations.
DECODE_COPIES = 8


def draw_chunk(n_params: int) -> int:
    """How many draws of a model of `n_params` are decoded and scored at once within the memory budget."""
    return chunk_rows(n_params, DECODE_COPIES)


class DecodedDraws:
    """`draws` decoded by `decode` (codes [c, code] -> weights [c, params]) `chunk` at a time. The last chunk
    decoded is kept, so that a selection whose draws fit one chunk decodes none of them twice."""

    def __init__(self, draws: Draws, decode: Callable[[np.ndarray], torch.Tensor], chunk: int):
        self.draws, self.decode, self.chunk = draws, decode, max(1, chunk)
        self._last: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.draws)

    def chunks(self, starts=None) -> Iterator[tuple[int, torch.Tensor]]:
        """(start, decoded weights of draws start..start + chunk) in order: every chunk, or those at `starts`."""
        for start, codes in self.draws.chunks(self.chunk, starts):
            if self._last is None or self._last[0] != start:
                self._last = None  # let go before the next chunk is decoded (a caller may still hold it)
                self._last = (start, self.decode(codes))
            yield self._last

    def rows(self, index) -> torch.Tensor:
        """Decoded weights [len(index), params] of the draws at `index` (repeats allowed). A draw is decoded again
        with the chunk it was first decoded in, so it gets the same numbers."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        starts = set((index // self.chunk * self.chunk).tolist())
        held = [self._last] if self._last is not None and self._last[0] in starts else []  # used before it is let go
        found = None
        for start, weights in itertools.chain(held, self.chunks(sorted(starts - {s for s, _ in held}))):
            found = weights.new_empty((len(index), weights.shape[1])) if found is None else found
            here = np.flatnonzero((index >= start) & (index < start + len(weights)))
            found[torch.from_numpy(here)] = weights[torch.from_numpy(index[here] - start)]
        return found if found is not None else torch.zeros(0, 0)


def decoded(draws: Draws, decode: Callable[[np.ndarray], torch.Tensor], chunk: int) -> torch.Tensor:
    """Every draw decoded [N, params], a chunk at a time into one tensor (for selections that keep all they draw)."""
    return DecodedDraws(draws, decode, chunk).rows(np.arange(len(draws)))


def measured(decoded_draws: DecodedDraws, measure: Callable[[torch.Tensor], tuple]) -> tuple[np.ndarray, ...]:
    """`measure`'s per-draw figures (a tuple of arrays, one row per model) of every draw, concatenated in order."""
    parts = [measure(weights) for _, weights in decoded_draws.chunks()]
    return tuple(np.concatenate([np.asarray(part[k]) for part in parts]) for k in range(len(parts[0])))


def best_of(
    decoded_draws: DecodedDraws, score: Callable[[torch.Tensor], np.ndarray], keep: int
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(every draw's score [N] as float64, the `keep` best draws best first [keep], their weights [keep, params]).
    The best are what a stable sort of all scores puts first (ties to the earlier draw): among the kept so far
    (in draw order) and the next chunk, a stable sort keeps the best, and a draw not among the best of those is
    behind `keep` others in the sort of all."""
    scores, kept, rows = np.zeros(0), np.zeros(0, dtype=np.int64), {}
    for start, weights in decoded_draws.chunks():
        scores = np.concatenate([scores, np.asarray(score(weights), dtype=np.float64)])
        candidates = np.concatenate([np.sort(kept), np.arange(start, start + len(weights))])
        kept = candidates[np.argsort(-scores[candidates], kind="stable")[:keep]]
        rows = {i: rows[i] if i in rows else weights[i - start].clone() for i in kept.tolist()}
    found = None
    for slot, i in enumerate(kept.tolist()):  # each kept row freed as it is placed
        row = rows.pop(i)
        found = row.new_empty((len(kept), len(row))) if found is None else found
        found[slot] = row
    return scores, kept, found if found is not None else torch.zeros(0, 0)
