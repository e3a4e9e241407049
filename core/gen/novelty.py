"""Are generated models new, or copies of the zoo? (Zeng et al. 2025, "Generative Modeling of Weights:
Generalization or Memorization?")

Two measures per generated model, each next to the same measure among the zoo's own models:
- the smallest L2 distance to any zoo checkpoint (in the aligned weight space the generator works in);
- the largest IoU between its set of misclassified test images and any zoo checkpoint's.
A copy sits at distance ~0 and IoU ~1.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import polars as pl
import torch

from core.zoo.arch import Spec
from core.zoo.data import Dataset
from core.zoo.population import Population


@torch.no_grad()
def error_sets(spec: Spec, vectors: torch.Tensor, data: Dataset, activations: list[str] | None = None) -> torch.Tensor:
    """Bool [models, test images]: which test images each model gets wrong."""
    activations = activations or [spec.activation] * len(vectors)
    wrong = torch.zeros(len(vectors), len(data.y_test), dtype=torch.bool)
    for activation in sorted(set(activations)):
        rows = torch.tensor([i for i, a in enumerate(activations) if a == activation])
        n = len(rows)
        population = Population(
            spec.with_activation(activation), vectors[rows], [0] * n, [0.0] * n, [0.0] * n, [0.0] * n
        )
        for start in range(0, len(data.y_test), 64):
            x = data.x_test[start : start + 64]
            index = torch.arange(start, start + len(x)).expand(n, -1)
            logits = population.net.forward(population.params, population.net.batch_input(data.x_test, index))
            wrong[rows, start : start + len(x)] = logits.argmax(-1) != data.y_test[start : start + len(x)]
    return wrong


def max_iou(errors: torch.Tensor, reference: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """For each row of `errors`, the largest IoU with any row of `reference` (pairs where `exclude` is True
    are skipped, e.g. checkpoints of the same model)."""
    a, b = errors.float(), reference.float()
    intersection = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1) - intersection
    iou = torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))
    if exclude is not None:
        iou = iou.masked_fill(exclude, -1.0)
    return iou.max(dim=1).values


def min_l2(vectors: torch.Tensor, reference: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    distance = torch.cdist(vectors, reference)
    if exclude is not None:
        distance = distance.masked_fill(exclude, float("inf"))
    return distance.min(dim=1).values


def novelty(
    generated: torch.Tensor,
    generated_errors: torch.Tensor,
    zoo: torch.Tensor,
    zoo_errors: torch.Tensor,
    zoo_models: np.ndarray,
) -> dict:
    """Per-model figures for the generated models and the medians next to the zoo's own (each zoo checkpoint
    compared with the checkpoints of the other models)."""
    same_model = torch.from_numpy(zoo_models[:, None] == zoo_models[None, :])
    gen_l2, gen_iou = min_l2(generated, zoo), max_iou(generated_errors, zoo_errors)
    zoo_l2, zoo_iou = min_l2(zoo, zoo, same_model), max_iou(zoo_errors, zoo_errors, same_model)
    return {
        "min_l2": gen_l2.numpy(),
        "max_iou": gen_iou.numpy(),
        "min_l2_median": float(gen_l2.median()),
        "zoo_min_l2_median": float(zoo_l2.median()),
        "max_iou_median": float(gen_iou.median()),
        "zoo_max_iou_median": float(zoo_iou.median()),
    }


def novelty_plane(per_model: dict[str, np.ndarray], figures: dict[str, dict]) -> pl.DataFrame:
    """The accuracy-vs-similarity plane of Zeng et al.: every generated and baseline model, as generated (one row
    per model: group, epoch-0 accuracy, min L2 and max error-IoU)."""
    return pl.concat(
        [
            pl.DataFrame(
                {
                    "group": [name] * len(f["min_l2"]),
                    "acc_epoch0": per_model[name][:, 0],
                    "min_l2": f["min_l2"],
                    "max_iou": f["max_iou"],
                }
            )
            for name, f in figures.items()
        ]
    )


class ZooErrorSets:
    """The error sets of zoos, computed once per zoo and kept: they depend only on the zoo's weights and the
    dataset, and take a few seconds for a 256-model zoo. Aligned weights compute the same functions as the zoo's
    own (alignment only permutes hidden neurons), so every autoencoder run of a zoo shares them, and the app can
    compute them before any run is loaded. A long-lived process (the app) keeps one of these for its lifetime and
    fills it from a background thread; each CLI command makes its own. The key names the zoo (core/pipeline.py),
    so a new zoo is seen.

    Computing holds a lock: a generation that asks while the background thread computes the same zoo waits for
    that result instead of computing it a second time."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._sets: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, spec: Spec, weights: torch.Tensor, data: Dataset, activations: list[str]) -> torch.Tensor:
        """The zoo's error sets under `key`, computed from `weights` (the zoo's, aligned or not) if not kept yet."""
        with self._lock:
            if key not in self._sets:
                if len(self._sets) >= self.capacity:
                    self._sets.popitem(last=False)
                self._sets[key] = error_sets(spec, weights, data, activations)
            self._sets.move_to_end(key)
            return self._sets[key]
