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
) -> tuple[pl.DataFrame, dict[str, np.ndarray], torch.Tensor]:
    """Per-epoch curves (group, epoch, acc/loss mean and std; epoch 0 = before any training), each model's
    test accuracy per epoch {group: [models, epochs + 1]}, and the final weights of all models in order.
    `fresh_head` redraws every model's output layer (transfer to another dataset)."""
    names = list(groups)
    vectors = torch.cat([groups[name] for name in names])
    owner = np.concatenate([[name] * len(groups[name]) for name in names])
    spec, vectors = with_fresh_head(spec, vectors, data.n_classes, seed, always=fresh_head)
    n = len(vectors)
    seeds = [seed * 100_003 + i for i in range(n)]
    population = Population(spec, vectors, seeds, [lr] * n, [0.0] * n, [0.0] * n, device)
    accuracies, rows = [], []
    for epoch in range(epochs + 1):
        if epoch > 0:
            population.train_epoch(data.x_train, data.y_train, epoch, batch_size)
        loss, acc = population.evaluate(data.x_test, data.y_test)
        accuracies.append(acc.numpy())
        for name in names:
            mine = owner == name
            rows.append(
                {
                    "group": name,
                    "epoch": epoch,
                    "acc_mean": float(acc[mine].mean()),
                    "acc_std": float(acc[mine].std()) if mine.sum() > 1 else 0.0,
                    "loss_mean": float(loss[mine].mean()),
                }
            )
        if on_epoch:
            on_epoch(epoch, pl.DataFrame(rows))
    per_model = np.stack(accuracies, axis=1)
    return pl.DataFrame(rows), {name: per_model[owner == name] for name in names}, population.weights()


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
