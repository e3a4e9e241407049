"""Latent paths: the straight line between two models' embeddings, decoded, beside the straight line between
their (aligned) weights. The ends are two zoo checkpoints, or a checkpoint and a generated model.

Accuracy along the weight-space line is the classic loss barrier between two models; along the latent line it
shows whether the autoencoder's space connects them through working models. None of the papers' tools draws the
two together.

A generated model (`RUN:I`: model I of samples run RUN) is already in the aligned frame: generation decodes it
there (core/gen/draw.py). That frame is its autoencoder run's own (each run aligns the zoo to the best of its own
training models, core/rep/prepare.py), so a path only joins a generated model to the zoo through the run that
decoded it; its embedding is its weights encoded by that run, as the map places it."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from core.errors import UserError, ZooError
from core.gen.anchors import Anchors, resolve_anchors
from core.limits import MAX_SAMPLES
from core.names import shortened
from core.rep.prepare import PreparedZoo
from core.rep.run import AERun, load_run
from core.store.runs import SamplesRun, checked_run_name
from core.store.workspace import Workspace
from core.zoo.data import load_dataset
from core.zoo.model_zoo import combined_table, load_zoos
from core.zoo.population import evaluate_models, recalibrate_norm_statistics

STEPS = 11  # points on each path, ends included

End = int | str  # a checkpoint id, or a generated model as RUN:I


def on_line(ends: np.ndarray, t: np.ndarray) -> np.ndarray:
    """[len(t), code]: the points (1 - t) a + t b of the straight line between the codes ends = [a, b]."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    return (1 - t) * ends[0] + t * ends[1]


def require_ends(anchors: Anchors, to: str | None = None) -> None:
    """Refuse anchors that are not the checkpoint ends of a path: two, or one where the path runs `to` a generated
    model (the rule named two checkpoints, but one was dropped for its architecture or activation, or the rule
    named some other number)."""
    if to is None and len(anchors.ids) != 2:
        raise UserError(
            f"a latent path needs two checkpoints of one architecture and activation; the anchors hold {anchors.ids}"
        )
    if to is not None and len(anchors.ids) != 1:
        raise UserError(f"a latent path to a generated model starts at one checkpoint; the anchors hold {anchors.ids}")


def generated_ref(text: str) -> tuple[str, int]:
    """(samples run, model index) named by `RUN:I`."""
    name, _, index = text.rpartition(":")
    if not (name and index.isascii() and index.isdigit() and len(index) <= len(str(MAX_SAMPLES))):
        raise UserError(
            f"{shortened(text)} does not name a generated model: expected RUN:I (model I of samples run RUN, I below "
            f"{MAX_SAMPLES})"
        )
    return checked_run_name(name), int(index)


def generated_weights(workspace: Workspace, run: AERun, anchors: Anchors, ref: str) -> torch.Tensor:
    """[1, params]: the aligned weights of generated model `ref` (RUN:I), refused unless `run` decoded it (another
    run's frame is another permutation of the zoo) and it has the anchors' architecture and activation."""
    name, index = generated_ref(ref)
    samples = SamplesRun.load(workspace, name)
    if samples.ae_run != run.name:
        raise UserError(
            f"generated model {ref} was decoded by autoencoder run {samples.ae_run}, not {run.name}: each run aligns "
            f"the zoo its own way, so a path to it needs run {samples.ae_run}"
        )
    ours = (anchors.zoo.spec.name, anchors.activation)
    if (samples.architecture, samples.activation) != ours:
        raise UserError(
            f"generated model {ref} is a {samples.architecture} ({samples.activation}) network, checkpoint "
            f"{anchors.ids[0]} a {ours[0]} ({ours[1]}): a path joins models of one architecture and activation"
        )
    if index >= samples.n:
        raise UserError(f"generated model {ref}: samples run {name} holds models 0 to {samples.n - 1}")
    weights = samples.weights()["generated"][index : index + 1]
    if weights.shape[1] != anchors.zoo.spec.n_params or not torch.isfinite(weights).all():
        raise ZooError(f"{samples.weights_path}: model {index} is not {weights.shape[1]} finite weights of the zoo's")
    return weights


def path_ends(
    workspace: Workspace, run: AERun, prepared: PreparedZoo, anchors: Anchors, to: str | None = None
) -> torch.Tensor:
    """[2, params]: the aligned weights of a path's ends: the two anchors, or the one anchor and generated model
    `to` (RUN:I)."""
    require_ends(anchors, to)
    start = prepared.aligned_rows(anchors.rows)
    return start if to is None else torch.cat([start, generated_weights(workspace, run, anchors, to)])


def latent_path(
    workspace: Workspace, run_name: str | None, ends: tuple[int, End], steps: int = STEPS, device: str = "cpu"
) -> pl.DataFrame:
    """Test accuracy at `steps` evenly spaced points t in [0, 1] between checkpoint ends[0] and ends[1] (a
    checkpoint, or a generated model RUN:I): `latent` decodes (1 - t) z_a + t z_b; `weights` evaluates
    (1 - t) w_a + t w_b of the aligned weights (the ends of this line are the models themselves; those of the
    latent line are their reconstructions)."""
    start, end = ends
    if start == end or steps < 2:
        raise UserError("a latent path needs two different models and at least 2 steps")
    to = end if isinstance(end, str) else None
    run = load_run(workspace, run_name)
    zoos = load_zoos(workspace)
    anchors = resolve_anchors(zoos, combined_table(zoos), f"ids:{start}" if to else f"ids:{start},{end}")
    prepared = run.prepare(anchors.zoo)
    end_weights = path_ends(workspace, run, prepared, anchors, to)
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
