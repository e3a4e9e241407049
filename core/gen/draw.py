"""Drawing new models: fit the sampler on the anchors' codes, draw codes, decode them to weights (re-estimating
BatchNorm statistics, as SANE does), and keep them as the selection says."""

from __future__ import annotations

import numpy as np
import torch

from core.gen.anchors import Anchors
from core.gen.config import SampleConfig
from core.gen.samplers import Sampler, make_sampler
from core.gen.selection import select_models
from core.rep.prepare import PreparedZoo
from core.rep.run import AERun
from core.zoo.data import Dataset
from core.zoo.population import evaluate_models, recalibrate_norm_statistics

SPREAD_CHECKPOINTS = 256  # a random subset of the zoo whose codes scale the one-anchor fallback noise


def draw_models(
    run: AERun,
    prepared: PreparedZoo,
    anchors: Anchors,
    config: SampleConfig,
    source: Dataset,
    rng: np.random.Generator,
    device: str,
) -> tuple[torch.Tensor, Sampler, dict]:
    """(weights [n, params] aligned, the fitted sampler, the selection's report)."""
    spec = anchors.spec
    zoo_rows = np.random.default_rng([config.seed, 1]).permutation(len(anchors.zoo.table))[:SPREAD_CHECKPOINTS]
    anchor_codes = run.encode(prepared, prepared.aligned[torch.from_numpy(anchors.rows)], device)
    zoo_codes = run.encode(prepared, prepared.aligned[torch.from_numpy(np.sort(zoo_rows))], device)

    def decode(codes: np.ndarray) -> torch.Tensor:
        # Decoded BatchNorm statistics are unreliable: re-estimate them on training images (SANE does).
        return recalibrate_norm_statistics(spec, run.decode(prepared, codes, device), source.x_train)

    def score(weights: torch.Tensor) -> np.ndarray:
        return evaluate_models(spec, weights, source.x_val, source.y_val)[1].numpy()

    sampler = make_sampler(config.method, config.bandwidth, config.covariance)
    weights, report = select_models(sampler, anchor_codes, zoo_codes, config.n, rng, decode, score, config.selector)
    return weights, sampler, report
