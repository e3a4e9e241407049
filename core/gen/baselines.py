"""What generated models are compared with, made in the same run:

- `random_init`: the zoo's init scheme, fresh seeds;
- `anchors`: the anchor models themselves;
- and the three simple weight-space generators of Zeng et al. (2025) that a generator must beat to show it does
  more than copy: `noise` (an anchor plus Gaussian noise of 10% of each layer's std), `average` (the mean of
  three random aligned anchors) and `weight_gauss` (a per-weight Gaussian fitted to the aligned anchors).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from core.gen.anchors import Anchors
from core.rep.prepare import PreparedZoo
from core.zoo.population import INITS, init_vectors

NOISE_SCALE = 0.1  # the `noise` baseline: std as a fraction of each layer's std over the zoo
# The noise baseline's frontier: the same baseline at these scales, so a generation can be placed against the whole
# trade-off between accuracy and novelty that adding noise buys, not against one point of it.
FRONTIER_SCALES = (0.025, 0.05, 0.1, 0.2, 0.4)
SIMPLE = ("noise", "average", "weight_gauss")


def reference_groups(anchors: Anchors, aligned: torch.Tensor, n: int, rng: np.random.Generator) -> dict:
    """{"random_init": n fresh initialisations, "anchors": up to n of the anchors (aligned)}."""
    init = Counter(anchors.zoo.table["init"].to_list()).most_common(1)[0][0]
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, n)]
    schemes = [init if init in INITS else "kaiming_uniform"] * n
    chosen = torch.from_numpy(rng.choice(len(aligned), min(n, len(aligned)), replace=False))
    return {"random_init": init_vectors(anchors.spec, seeds, schemes), "anchors": aligned[chosen]}


def simple_baselines(aligned: torch.Tensor, prepared: PreparedZoo, n: int, rng: np.random.Generator) -> dict:
    """{noise, average, weight_gauss}: n models each, from the aligned anchors [A, params]."""
    pick = rng.integers(0, len(aligned), n)
    noise = torch.from_numpy(rng.normal(size=(n, aligned.shape[1])).astype(np.float32))
    triples = torch.from_numpy(rng.integers(0, len(aligned), (n, 3)))
    std = aligned.std(0) if len(aligned) > 1 else torch.zeros(aligned.shape[1])
    return {
        "noise": aligned[torch.from_numpy(pick)] + NOISE_SCALE * noise * prepared.entry_std(),
        "average": aligned[triples].mean(1),
        "weight_gauss": aligned.mean(0) + noise * std,
    }


def noise_frontier(aligned: torch.Tensor, prepared: PreparedZoo, n: int, rng: np.random.Generator) -> dict:
    """{scale: n models, each an aligned anchor plus Gaussian noise of `scale` times each layer's std}."""
    std = prepared.entry_std()
    models = {}
    for scale in FRONTIER_SCALES:
        pick = torch.from_numpy(rng.integers(0, len(aligned), n))
        noise = torch.from_numpy(rng.normal(size=(n, aligned.shape[1])).astype(np.float32))
        models[scale] = aligned[pick] + scale * noise * std
    return models
