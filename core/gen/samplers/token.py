"""SANE's token mode (Schürholt et al. 2024): noise around an anchor, token by token, each token's noise scaled to
how much that token varies across the anchors.

A code is a sequence of token latents [tokens, width] (SANE: one per weight token; the per-neuron autoencoder's code
is a single token). A draw takes one random anchor's code and adds, at every token position, Gaussian noise of
root-mean-square length `spread` times that position's own unit: the anchors' median nearest-neighbour distance
among their latents at that position. Tokens that vary little across the anchors get little noise, tokens that vary
a lot get more (the neighbour sampler uses one unit for the whole code). The draws are decoded as every SANE code
is, window by window with halo context (core/rep/sane.py).

The official code fits one kernel density per token and samples each with the same fixed random state, which picks
the same anchor at every position: one anchor per draw, as here. Choosing the anchor anew for every token (the
mode as described) was measured on the 48-ResNet zoo (SANE, 12 covering epochs, best 30% as anchors, 16 draws):
0.11-0.12 test accuracy as generated at spreads 0 to 1.5, chance, like averaging anchors' weights (0.13), against
0.91-0.95 for the neighbour sampler: tokens of different anchors do not make a working model.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.errors import UserError
from core.gen.samplers.base import Sampler, ZooCodes, median_nearest_distance, zoo_sample


class TokenKDE(Sampler):
    name: ClassVar[str] = "token"
    description: ClassVar[str] = "Token mode (SANE): an anchor plus noise scaled token by token to the anchors' spread"

    def fit(self, anchors: np.ndarray, zoo_codes: ZooCodes) -> TokenKDE:
        """Fit as every sampler does, then measure each token position's unit; a position where the anchors
        coincide takes the zoo's unit there."""
        super().fit(anchors, zoo_codes)
        units = self._token_units(self.anchors)
        if not (units > 0).all():
            units = np.where(units > 0, units, self._token_units(zoo_sample(zoo_codes)))
        self.token_units = units
        return self

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Noise of RMS length `token_units[t]` / unit at token t, so that `sample`'s scaling by spread x unit
        leaves each token its own unit."""
        count = len(self.token_units)
        width = self.anchors.shape[1] // count
        noise = rng.normal(size=(n, count, width)) / np.sqrt(width)
        relative = self.token_units / self.unit if self.unit > 0 else np.zeros(count)  # no spacing anywhere: none
        return (noise * relative[:, None]).reshape(n, -1)

    def _tokens(self, codes: np.ndarray) -> np.ndarray:
        """Codes [N, tokens * width] as [N, tokens, width]; without a token width, the whole code is one token."""
        width = self.token_width or codes.shape[1]
        if codes.shape[1] % width:
            raise UserError(f"codes of length {codes.shape[1]} are not a sequence of tokens of width {width}")
        return codes.reshape(len(codes), -1, width)

    def _token_units(self, codes: np.ndarray) -> np.ndarray:
        tokens = self._tokens(codes)
        return np.array([median_nearest_distance(tokens[:, t]) for t in range(tokens.shape[1])])
