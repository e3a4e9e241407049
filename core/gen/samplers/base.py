"""What every sampler is: fitted on the anchors' latent codes, it draws new codes around them.

    sampler = make_sampler("kde", spread=1.0).fit(anchor_codes, zoo_codes)
    codes = sampler.sample(16, rng)
    codes, centres = sampler.draw(16, rng)   # the same, with the anchor row each draw is centred on

A draw is a random anchor's code plus noise whose root-mean-square length is `spread` times the anchors' median
nearest-neighbour distance (their typical spacing), so one spread means the same thing in every run and every
autoencoder kind: 0 returns the anchors' codes, 1 moves as far as the next anchor typically is. Samplers differ in
the shape of the noise (core/gen/samplers/*.py). With one anchor, or anchors that all coincide, there is no spacing:
the unit is then the zoo's median nearest-neighbour distance (from `zoo_codes`, a sample of the zoo, or a function
that encodes it: a generation encodes that sample only when a sampler asks), and `fallback` says so. To add a
sampler, subclass `Sampler` in a module of this folder and register it in `__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
from scipy.spatial.distance import cdist

from core.errors import UserError
from core.gen.samplers.draws import Draws, HeldDraws

# Points whose nearest-neighbour distance estimates the median (a fixed random subset beyond it), and the size of
# one block of the distance matrix: memory stays at 8 x BLOCK_VALUES bytes (32 MiB) however many anchors there
# are, where the whole matrix for 50,000 anchors was 20 GB.
MEDIAN_POINTS = 4096
BLOCK_VALUES = 1 << 22

# Codes [Z, code] of a sample of the zoo, or a function returning them (called only where they are needed).
ZooCodes = np.ndarray | Callable[[], np.ndarray]


def zoo_sample(zoo_codes: ZooCodes) -> np.ndarray:
    """The zoo sample's codes as float64, encoded now if `zoo_codes` is the function that encodes them."""
    return np.asarray(zoo_codes() if callable(zoo_codes) else zoo_codes, dtype=np.float64)


def median_nearest_distance(codes: np.ndarray) -> float:
    """The median over points of the distance to their nearest other point (0 for fewer than two). Beyond
    MEDIAN_POINTS points, the median over a fixed random subset of them (each still against every point)."""
    if len(codes) < 2:
        return 0.0
    rows = np.arange(len(codes))
    if len(codes) > MEDIAN_POINTS:
        rows = np.sort(np.random.default_rng(0).choice(len(codes), MEDIAN_POINTS, replace=False))
    block = max(1, BLOCK_VALUES // len(codes))
    nearest = []
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        distances = cdist(codes[chunk], codes)
        distances[np.arange(len(chunk)), chunk] = np.inf  # not the point itself
        nearest.append(distances.min(axis=1))
    return float(np.median(np.concatenate(nearest)))


class Sampler:
    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, spread: float = 1.0, token_width: int | None = None) -> None:
        if not (np.isfinite(spread) and spread >= 0):
            raise UserError(f"spread must be a finite number >= 0, got {spread}")
        self.spread = spread
        self.token_width = token_width  # codes are sequences of token latents this wide (samplers may ignore it)
        self.fallback: str | None = None
        self.anchors = np.zeros((0, 0))
        self.unit = 0.0

    def fit(self, anchors: np.ndarray, zoo_codes: ZooCodes) -> Sampler:
        """Fit on anchor codes [A, code]; `zoo_codes` [Z, code] give the unit when the anchors have no spacing."""
        if len(anchors) == 0:
            raise UserError("no anchors selected: choose at least one checkpoint to sample around")
        self.fallback = None
        self.anchors = anchors.astype(np.float64)
        self.unit = median_nearest_distance(self.anchors)
        if self.unit <= 0:
            self.fallback = "one anchor (or identical anchors): spread in units of the zoo's nearest-neighbour distance"
            self.unit = median_nearest_distance(zoo_sample(zoo_codes))
        self._fit()
        return self

    def recentre(self, codes: np.ndarray) -> Sampler:
        """Draw around `codes` from now on, with the unit and noise shape fitted on the anchors: a bootstrap round
        moves the centres, never what a spread means (re-measuring the spacing of draws that were themselves
        spread out would compound it round after round)."""
        self.anchors = codes.astype(np.float64)
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, code] float32 codes: a random anchor each, plus noise of RMS length spread x unit."""
        return self.draw(n, rng)[0]

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(codes [n, code] as `sample` draws them, the centre of each [n]: its row of the codes the sampler was
        fitted on or recentred on last), so that a generated model's source anchor is known."""
        centres = rng.integers(0, len(self.anchors), n)
        codes = self.anchors[centres] + self.spread * self.unit * self._noise(n, rng)
        return codes.astype(np.float32), centres

    def draws(self, n: int, rng: np.random.Generator, chunk: int) -> Draws:
        """`draw`'s n draws, to be handed out `chunk` at a time (core/gen/samplers/draws.py): a latent code is
        small beside its decoded weights, so they are held."""
        return HeldDraws(*self.draw(n, rng))

    def _fit(self) -> None:
        """Estimate the noise's shape from `self.anchors`."""

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, code] noise whose expected squared length is 1."""
        raise NotImplementedError
