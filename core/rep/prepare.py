"""A zoo made ready for an autoencoder: split by model, aligned, standardised per layer. How standardised weights
become tokens is each autoencoder kind's business (core/rep/methods/).

Everything here is derived from the zoo and a few saved numbers (split, reference, per-layer statistics),
so a run stores those numbers and rebuilds the rest exactly when it is loaded again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from core.errors import UserError
from core.rep.align import align_zoo
from core.zoo.arch import Spec, layer_slices, tensor_slices
from core.zoo.model_zoo import Zoo

STD_FLOOR = 1e-4


@dataclass(frozen=True)
class Split:
    train: list[int]
    val: list[int]
    test: list[int]

    def of(self, model_ids: np.ndarray) -> np.ndarray:
        """'train' / 'val' / 'test' for each checkpoint's model."""
        names = {**{m: "train" for m in self.train}, **{m: "val" for m in self.val}, **{m: "test" for m in self.test}}
        return np.array([names[m] for m in model_ids.tolist()])


def split_models(model_ids: list[int], fractions: tuple[float, float, float], seed: int) -> Split:
    """A seeded split by model, never by checkpoint: all epochs of one model sit on one side."""
    if len(model_ids) < 3:
        raise UserError(f"the zoo has {len(model_ids)} models; the autoencoder needs at least 3 (train/val/test)")
    order = np.random.default_rng([seed, 2]).permutation(sorted(model_ids)).tolist()
    n_test = max(1, round(fractions[2] * len(order)))
    n_val = max(1, round(fractions[1] * len(order)))
    return Split(sorted(order[n_test + n_val :]), sorted(order[n_test : n_test + n_val]), sorted(order[:n_test]))


@dataclass
class PreparedZoo:
    zoo: Zoo
    split: Split
    aligned: torch.Tensor  # [checkpoints, params], aligned weights (or the originals with align off)
    layer_mean: torch.Tensor  # [standardisation slices]: one per layer for CNNs
    layer_std: torch.Tensor  # [standardisation slices]
    standardised: torch.Tensor  # [checkpoints, params]
    sides: np.ndarray  # 'train' / 'val' / 'test' per checkpoint

    def rows(self, side: str) -> np.ndarray:
        return np.flatnonzero(self.sides == side)

    def entry_std(self) -> torch.Tensor:
        """[params]: each weight's standardisation std, to map standardised vectors back."""
        return _per_entry(self.zoo, self.layer_std)

    def entry_mean(self) -> torch.Tensor:
        """[params]: each weight's standardisation mean."""
        return _per_entry(self.zoo, self.layer_mean)

    def standardise(self, vectors: torch.Tensor) -> torch.Tensor:
        return (vectors - self.entry_mean()) / self.entry_std()

    def destandardise(self, standardised: torch.Tensor) -> torch.Tensor:
        return standardised * self.entry_std() + self.entry_mean()


def standardisation_slices(spec: Spec) -> list[slice]:
    """The spans standardised together: each conv or linear layer whole (weights and bias), each tensor of a
    normalisation layer apart (scale ~1, shift ~0, running mean and variance live on unrelated scales)."""
    per_tensor = iter(tensor_slices(spec))
    slices = []
    for layer, span in zip(spec.layers, layer_slices(spec)):
        tensors = [next(per_tensor) for _ in layer.tensors]
        slices += tensors if layer.kind == "norm" else [span]
    return slices


def _per_entry(zoo: Zoo, per_slice: torch.Tensor) -> torch.Tensor:
    sizes = [s.stop - s.start for s in standardisation_slices(zoo.spec)]
    return torch.repeat_interleave(per_slice, torch.tensor(sizes))


def best_reference_row(table: pl.DataFrame, models: list[int]) -> int:
    """The checkpoint with the highest validation accuracy among the last epochs of `models`."""
    candidates = table.filter(pl.col("model_id").is_in(models))
    last = candidates.filter(pl.col("epoch") == pl.col("epoch").max().over("model_id"))
    metric = "val_acc" if last["val_acc"].is_not_nan().all() else "test_acc"
    return int(last.sort(metric, descending=True)["checkpoint_row"][0])


def prepare(
    zoo: Zoo,
    split: Split,
    align: bool,
    align_iterations: int = 2,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> PreparedZoo:
    """Align (optional) and standardise; `stats` = saved (layer_mean, layer_std) to reuse a run's numbers."""
    table = zoo.table.with_row_index("checkpoint_row")
    model_ids = table["model_id"].to_numpy()
    if align:
        reference = best_reference_row(table, split.train)
        families = table["init_seed"].to_numpy() if "init_seed" in table.columns else model_ids
        aligned, _ = align_zoo(zoo.spec, zoo.weights, families, table["epoch"].to_numpy(), reference, align_iterations)
    else:
        aligned = zoo.weights
    sides = split.of(model_ids)
    if stats is None:
        train = aligned[torch.from_numpy(np.flatnonzero(sides == "train"))]
        means, stds = [], []
        for span in standardisation_slices(zoo.spec):
            values = train[:, span]
            means.append(values.mean())
            stds.append(values.std().clamp_min(STD_FLOOR))
        stats = (torch.stack(means), torch.stack(stds))
    layer_mean, layer_std = stats
    prepared = PreparedZoo(zoo, split, aligned, layer_mean, layer_std, aligned, sides)
    prepared.standardised = prepared.standardise(aligned)
    return prepared
