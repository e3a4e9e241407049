"""A zoo made ready for an autoencoder: split by model, aligned, standardised per layer. How standardised weights
become tokens is each autoencoder kind's business (core/rep/methods/).

Everything here is derived from the zoo and a few saved numbers (split, reference, per-layer statistics),
so a run stores those numbers and rebuilds the rest exactly when it is loaded again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from core.errors import UserError
from core.rep.align import family_indices
from core.rep.moments import LayerMoments
from core.store.budget import chunk_rows
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
    """A zoo with its split, alignment and per-layer statistics. Weights are derived on demand, a few rows at a
    time (`aligned_rows`, `standardised_rows`, `iter_aligned`), so preparing a zoo costs the statistics and each
    alignment family's gather index, not a copy of the zoo."""

    zoo: Zoo
    split: Split
    sides: np.ndarray  # 'train' / 'val' / 'test' per checkpoint
    family: np.ndarray | None  # each checkpoint's alignment family (None: not aligned)
    indices: dict[int, torch.Tensor]  # {family: gather index [params]}
    layer_mean: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # [standardisation slices]
    layer_std: torch.Tensor = field(default_factory=lambda: torch.ones(0))  # [standardisation slices]

    def __len__(self) -> int:
        return len(self.zoo)

    def rows(self, side: str) -> np.ndarray:
        return np.flatnonzero(self.sides == side)

    def aligned_rows(self, index) -> torch.Tensor:
        """[len(index), params]: the aligned weights of the zoo's rows `index`."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        weights = self.zoo.rows(index)
        if self.family is None or not len(index):
            return weights
        # One gather per family in the chunk: a per-row index [rows, params] of int64 would take twice the chunk.
        family = self.family[index]
        families = np.unique(family).tolist()
        if len(families) == 1:
            return weights[:, self.indices[families[0]]]
        aligned = torch.empty_like(weights)
        for f in families:
            at = torch.from_numpy(np.flatnonzero(family == f))
            aligned[at] = weights[at][:, self.indices[f]]
        return aligned

    def standardised_rows(self, index) -> torch.Tensor:
        return self.standardise(self.aligned_rows(index))

    def iter_aligned(
        self, rows: np.ndarray | None = None, chunk: int | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """(position in `rows`, aligned weights [chunk, params]) over `rows` (default: every checkpoint), a chunk
        at a time (default: what the memory budget allows)."""
        rows = np.arange(len(self.zoo)) if rows is None else np.asarray(rows)
        chunk = chunk or chunk_rows(self.zoo.spec.n_params)
        for start in range(0, len(rows), chunk):
            yield start, self.aligned_rows(rows[start : start + chunk])

    @property
    def aligned(self) -> torch.Tensor:
        """Every checkpoint's aligned weights in memory, for tests on small zoos; the engine reads rows or chunks."""
        return self.aligned_rows(np.arange(len(self.zoo)))

    @property
    def standardised(self) -> torch.Tensor:
        """Every checkpoint standardised, in memory: for tests, as `aligned`."""
        return self.standardise(self.aligned)

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
    """Align (optional) and standardise; `stats` = saved (layer_mean, layer_std) to reuse a run's numbers, else
    they are the training models' streamed moments (one pass over their checkpoints, a chunk at a time)."""
    table = zoo.table.with_row_index("checkpoint_row")
    model_ids = table["model_id"].to_numpy()
    family, indices = None, {}
    if align:
        reference = best_reference_row(table, split.train)
        family = table["init_seed"].to_numpy() if "init_seed" in table.columns else model_ids
        epochs = table["epoch"].to_numpy()
        indices = family_indices(zoo.spec, zoo.rows, family, epochs, reference, align_iterations)
    prepared = PreparedZoo(zoo, split, split.of(model_ids), family, indices)
    if stats is None:
        moments = LayerMoments(standardisation_slices(zoo.spec))
        for _, chunk in prepared.iter_aligned(prepared.rows("train")):
            moments.add(chunk)
        stats = moments.mean_std(STD_FLOOR)
    prepared.layer_mean, prepared.layer_std = stats
    return prepared
