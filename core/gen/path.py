"""Latent paths: the straight line between two checkpoints' embeddings, decoded, beside the straight line between
their (aligned) weights.

Accuracy along the weight-space line is the classic loss barrier between two models; along the latent line it
shows whether the autoencoder's space connects them through working models. None of the papers' tools draws the
two together."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from core.errors import UserError
from core.gen.anchors import Anchors, resolve_anchors
from core.rep.run import load_run
from core.store.workspace import Workspace
from core.zoo.data import load_dataset
from core.zoo.model_zoo import combined_table, load_zoos
from core.zoo.population import evaluate_models, recalibrate_norm_statistics

STEPS = 11  # points on each path, ends included


def on_line(ends: np.ndarray, t: np.ndarray) -> np.ndarray:
    """[len(t), code]: the points (1 - t) a + t b of the straight line between the codes ends = [a, b]."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    return (1 - t) * ends[0] + t * ends[1]


def require_ends(anchors: Anchors) -> None:
    """Refuse anchors that are not the two ends of a path (the rule named two checkpoints, but one was dropped
    for its architecture or activation, or the rule named some other number)."""
    if len(anchors.ids) != 2:
        raise UserError(
            f"a latent path needs two checkpoints of one architecture and activation; the anchors hold {anchors.ids}"
        )


def latent_path(
    workspace: Workspace, run_name: str | None, ends: tuple[int, int], steps: int = STEPS, device: str = "cpu"
) -> pl.DataFrame:
    """Test accuracy at `steps` evenly spaced points t in [0, 1] between checkpoints `ends`: `latent` decodes
    (1 - t) z_a + t z_b; `weights` evaluates (1 - t) w_a + t w_b of the aligned weights (the ends of this line are
    the checkpoints themselves; those of the latent line are their reconstructions)."""
    if ends[0] == ends[1] or steps < 2:
        raise UserError("a latent path needs two different checkpoints and at least 2 steps")
    run = load_run(workspace, run_name)
    zoos = load_zoos(workspace)
    anchors = resolve_anchors(zoos, combined_table(zoos), f"ids:{ends[0]},{ends[1]}")
    require_ends(anchors)
    prepared = run.prepare(anchors.zoo)
    end_weights = prepared.aligned[torch.from_numpy(anchors.rows)]
    t = np.linspace(0.0, 1.0, steps)
    codes = run.encode(prepared, end_weights, device)
    manifest = anchors.zoo.manifest.get("dataset", {})
    data = load_dataset(manifest.get("name", "unknown"), seed=manifest.get("seed", 0))
    decoded = run.decode(prepared, on_line(codes, t), device)
    decoded = recalibrate_norm_statistics(anchors.spec, decoded, data.x_train)
    mixed = (
        torch.from_numpy(1 - t).float()[:, None] * end_weights[0]
        + torch.from_numpy(t).float()[:, None] * end_weights[1]
    )
    latent = evaluate_models(anchors.spec, decoded, data.x_test, data.y_test)[1]
    weights = evaluate_models(anchors.spec, mixed, data.x_test, data.y_test)[1]
    return pl.DataFrame({"t": t, "latent": latent.numpy(), "weights": weights.numpy()})
