"""Drawn codes handed out a chunk at a time, so that deciding which draws to keep never holds them all.

A latent sampler's codes are held (`HeldDraws`): the selection keeps n x candidates of them anyway, to decode
again the ones it keeps where they do not fit one chunk. The weight-space baselines' codes are the weights themselves,
GBs for n x candidates ResNet-18s, so they are made a chunk at a time and made again when asked for
(`ReplayedDraws`), from a copy of the random generator as it stood before their noise: numpy cannot skip ahead in a
stream of normal draws (its sampler rejects a varying number of raw values), so the caller's generator is moved past
the noise by making it once, and a replay makes it again. numpy fills a normal array row by row from one stream, so
rows made in chunks are those of one array of them all, and the caller's generator ends where that array leaves it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterator

import numpy as np

# make(start, stop, noise) -> the rows start..stop [stop - start, width] float32; `noise` is their normal noise
# [stop - start, noise width] as float32 (None for draws that take none).
MakeRows = Callable[[int, int, np.ndarray | None], np.ndarray]


class Draws:
    """N drawn codes, and the row of the codes the sampler was fitted on that each is centred on (`centres` [N])."""

    centres: np.ndarray

    def __len__(self) -> int:
        return len(self.centres)

    def chunks(self, size: int, starts: Collection[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(start, codes [start:start + size]) in order, for every chunk or only those starting at `starts`."""
        raise NotImplementedError

    def rows(self, index) -> np.ndarray:
        """Codes [len(index), code] of the draws at `index` (repeats allowed)."""
        raise NotImplementedError


class HeldDraws(Draws):
    """Codes in memory."""

    def __init__(self, codes: np.ndarray, centres: np.ndarray):
        self.codes, self.centres = codes, centres

    def chunks(self, size: int, starts: Collection[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(self), size) if starts is None else sorted(starts):
            yield start, self.codes[start : start + size]

    def rows(self, index) -> np.ndarray:
        return self.codes[np.asarray(index, dtype=np.int64)]


class ReplayedDraws(Draws):
    """Rows made by `make` a chunk at a time, their noise replayed from the generator's state at the draw."""

    def __init__(self, centres: np.ndarray, make: MakeRows, rng: np.random.Generator, noise_width: int, chunk: int):
        self.centres, self.make, self.noise_width, self.chunk = centres, make, noise_width, chunk
        self.start = copy.deepcopy(rng)
        for lo in range(0, len(self), chunk):  # the caller's generator moves past the noise, as making the rows would
            _noise(rng, min(len(self), lo + chunk) - lo, noise_width)

    def chunks(self, size: int, starts: Collection[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        generator, last = copy.deepcopy(self.start), len(self) if starts is None else max(starts, default=-1)
        for lo in range(0, min(len(self), last + 1), size):
            hi = min(len(self), lo + size)
            noise = _noise(generator, hi - lo, self.noise_width)
            if starts is None or lo in starts:  # a chunk not asked for only moves the generator on
                yield lo, self.make(lo, hi, noise)

    def rows(self, index) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        found = None
        for lo, made in self.chunks(self.chunk, set((index // self.chunk * self.chunk).tolist())):
            found = np.empty((len(index), made.shape[1]), dtype=made.dtype) if found is None else found
            here = (index >= lo) & (index < lo + len(made))
            found[here] = made[index[here] - lo]
        return found if found is not None else np.zeros((0, 0), dtype=np.float32)


def made_draws(
    centres: np.ndarray, make: MakeRows, rng: np.random.Generator, noise_width: int, chunk: int, hold: bool
) -> Draws:
    """Draws of rows made by `make`, with `noise_width` normal values a row from `rng`: made now, `chunk` rows at a
    time, and held if `hold`; else made again whenever asked for (`ReplayedDraws`)."""
    if not hold:
        return ReplayedDraws(centres, make, rng, noise_width, chunk)
    made = np.zeros((0, 0), dtype=np.float32)
    for lo in range(0, len(centres), chunk):
        hi = min(len(centres), lo + chunk)
        part = make(lo, hi, _noise(rng, hi - lo, noise_width))
        made = np.empty((len(centres), part.shape[1]), dtype=part.dtype) if lo == 0 else made
        made[lo:hi] = part
    return HeldDraws(made, centres)


def _noise(rng: np.random.Generator, rows: int, width: int) -> np.ndarray | None:
    """[rows, width] standard normal noise as float32 (as the baselines always drew it), or None for no noise."""
    return rng.normal(size=(rows, width)).astype(np.float32) if width else None
