"""Evaluate and fine-tune groups of models side by side: generated models against their baselines.

All groups train together as one vectorised population (same recipe, each model its own data order), so
the curves differ only in where the models started.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import polars as pl
import torch

from core.cluster import ClusterConfig, connect, lost_message, placement, run_shards, shard_rows
from core.errors import Interrupted
from core.zoo.arch import ArchSpec, layer_slices
from core.zoo.data import Dataset
from core.zoo.model_zoo import Zoo
from core.zoo.population import Population, init_vector

DEFAULT_LR, DEFAULT_BATCH_SIZE = 1e-3, 32  # when the zoo's own recipe is unknown (imported without it)


def zoo_recipe(zoo: Zoo, lr: float | None = None, batch_size: int | None = None) -> tuple[float, int]:
    """(learning rate, batch size) for fine-tuning: the given ones, else the zoo's most common."""
    zoo_lr = float(Counter(zoo.table["lr"].to_list()).most_common(1)[0][0])
    zoo_batch = int(Counter(zoo.table["batch_size"].to_list()).most_common(1)[0][0])
    default_lr = zoo_lr if math.isfinite(zoo_lr) and zoo_lr > 0 else DEFAULT_LR
    return lr or default_lr, batch_size or zoo_batch or DEFAULT_BATCH_SIZE


def with_fresh_head(
    spec: ArchSpec, vectors: torch.Tensor, n_classes: int, seed: int, always: bool = False
) -> tuple[ArchSpec, torch.Tensor]:
    """Models for another task: every layer kept but the output layer, drawn anew. Done when the class count
    differs, or `always` (another dataset: its class k means something else)."""
    if n_classes == spec.n_classes and not always:
        return spec, vectors
    target = replace(spec, n_classes=n_classes)
    head = layer_slices(target)[-1]
    fresh = torch.stack([init_vector(target, seed + i, "kaiming_uniform")[head] for i in range(len(vectors))])
    body = vectors[:, : layer_slices(spec)[-1].start]
    return target, torch.cat([body, fresh], dim=1)


def finetune_groups(
    spec: ArchSpec,
    groups: dict[str, torch.Tensor],
    data: Dataset,
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    device: str = "cpu",
    on_epoch: Callable[[int, pl.DataFrame], None] | None = None,
    fresh_head: bool = False,
    cluster: ClusterConfig | None = None,
    classes: dict[str, torch.Tensor] | None = None,
) -> tuple[pl.DataFrame, dict[str, np.ndarray], torch.Tensor]:
    """Per-epoch curves (group, epoch, acc/loss mean and std; epoch 0 = before any training), each model's
    test accuracy per epoch {group: [models, epochs + 1]}, and the final weights of all models in order.
    `fresh_head` redraws every model's output layer (transfer to another dataset). With `cluster`, the models
    train in shards as Ray tasks (core/cluster.py); each model trains as it would in one population. `classes`,
    where given, is filled with each group's predicted test classes before training ({group: int16 [models,
    images]}), taken by the epoch-0 evaluation: the novelty figures need them."""
    names = list(groups)
    vectors = torch.cat([groups[name] for name in names])
    owner = np.concatenate([[name] * len(groups[name]) for name in names])
    spec, vectors = with_fresh_head(spec, vectors, data.n_classes, seed, always=fresh_head)
    n = len(vectors)
    seeds = [seed * 100_003 + i for i in range(n)]
    curves = _Curves(owner, names, epochs, on_epoch, len(data.y_test) if classes is not None else 0)
    final = torch.empty_like(vectors)
    shards = {0: list(range(n))}  # the models of each shard

    def arrived(shard: int, item: dict) -> None:
        if "weights" in item:
            final[shards[shard]] = item["weights"]
        else:
            curves.add(shards[shard], item)

    keep = classes is not None
    if cluster is None:
        for item in finetune_models(spec, data, lr, epochs, batch_size, vectors, seeds, device, keep):
            arrived(0, item)
    else:
        where = placement(cluster, connect(cluster.cluster), n)
        shards = {k: shard_rows(n, where.shards, k) for k in range(where.shards)}
        todo = {k: (vectors[rows], [seeds[i] for i in rows], where.device, keep) for k, rows in shards.items()}
        shared = (spec, data, lr, epochs, batch_size)
        lost = run_shards(finetune_models, shared, todo, where, arrived, cluster.retries)
        if lost:
            raise Interrupted(lost_message(lost, where.shards, "nothing was written; run the same command again"))
    if classes is not None:
        classes.update(curves.per_group(curves.classes))
    return pl.DataFrame(curves.rows), curves.per_model(), final


def finetune_models(
    spec, data: Dataset, lr: float, epochs: int, batch_size: int, vectors, seeds, device: str, with_classes=False
):
    """Train models together (one population, each its own seed), here or in a Ray worker: yields each epoch's
    {"epoch", "loss", "acc"} per model on the test set (epoch 0 before training; `with_classes`: epoch 0 also
    brings "classes", each model's predicted class per test image), then {"weights"}."""
    n = len(vectors)
    population = Population(spec, vectors, seeds, [lr] * n, [0.0] * n, [0.0] * n, device)
    for epoch in range(epochs + 1):
        if epoch > 0:
            population.train_epoch(data.x_train, data.y_train, epoch, batch_size)
        predicted = torch.zeros(n, len(data.y_test), dtype=torch.int16) if with_classes and epoch == 0 else None
        loss, acc = population.evaluate(data.x_test, data.y_test, classes=predicted)
        yield {"epoch": epoch, "loss": loss, "acc": acc} | ({} if predicted is None else {"classes": predicted})
    yield {"weights": population.weights()}


class _Curves:
    """Each model's test figures per epoch, filled as shards report them; once every model has reported an epoch,
    its rows (one per group) are added and `on_epoch` sees the curves so far."""

    def __init__(self, owner: np.ndarray, names: list[str], epochs: int, on_epoch, images: int = 0):
        self.owner, self.names, self.on_epoch = owner, names, on_epoch
        self.loss = np.zeros((len(owner), epochs + 1), dtype=np.float32)
        self.acc = np.zeros((len(owner), epochs + 1), dtype=np.float32)
        self.classes = torch.zeros(len(owner), images, dtype=torch.int16)  # epoch 0's, where asked for
        self.seen = [0] * (epochs + 1)
        self.rows: list[dict] = []

    def add(self, models: list[int], item: dict) -> None:
        epoch = item["epoch"]
        self.loss[models, epoch], self.acc[models, epoch] = item["loss"].numpy(), item["acc"].numpy()
        if "classes" in item:
            self.classes[models] = item["classes"]
        self.seen[epoch] += len(models)
        while self._next < len(self.seen) and self.seen[self._next] == len(self.owner):
            self._close(self._next)

    @property
    def _next(self) -> int:
        return len(self.rows) // len(self.names)

    def _close(self, epoch: int) -> None:
        acc, loss = torch.from_numpy(self.acc[:, epoch]), torch.from_numpy(self.loss[:, epoch])
        for name in self.names:
            mine = torch.from_numpy(self.owner == name)
            self.rows.append(
                {
                    "group": name,
                    "epoch": epoch,
                    "acc_mean": float(acc[mine].mean()),
                    "acc_std": float(acc[mine].std()) if mine.sum() > 1 else 0.0,
                    "loss_mean": float(loss[mine].mean()),
                }
            )
        if self.on_epoch:
            self.on_epoch(epoch, pl.DataFrame(self.rows))

    def per_model(self) -> dict[str, np.ndarray]:
        return self.per_group(self.acc)

    def per_group(self, values):
        """{group: the rows of `values` ([models, ...], in the order the groups were given) of its models}."""
        return {name: values[self.owner == name] for name in self.names}


def transfer_summary(curves: pl.DataFrame, new_head: bool) -> dict:
    """What a fine-tuning says about its starts (Schürholt et al. 2022's protocol): whether the output layer was
    kept or drawn anew, and for each group the first epoch at which its mean accuracy reaches random init's (B_T's)
    final one, with the epochs that saves (None where it never does)."""
    final = curves.filter(pl.col("group") == "random_init").sort("epoch")["acc_mean"].to_list()
    last_epoch, target = len(final) - 1, final[-1]
    reaches = {}
    for (group,), rows in curves.group_by("group", maintain_order=True):
        epochs = rows.sort("epoch").filter(pl.col("acc_mean") >= target)["epoch"].to_list()
        reaches[group] = epochs[0] if epochs else None
    saved = {group: None if epoch is None else last_epoch - epoch for group, epoch in reaches.items()}
    return {"head": "redrawn" if new_head else "kept", "reaches_random_init_final": reaches, "epochs_saved": saved}
