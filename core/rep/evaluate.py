"""How good is a hyper-representation: reconstruction of held-out models and linear probes of their properties.

Figures are on the test models (never seen in training): reconstruction R^2 per layer and overall, the
accuracy reconstructed models keep, and ridge-probe R^2 for test accuracy, epoch and generalisation gap from
the embedding, the (aligned) flattened weights, and per-layer weight statistics s(W). For SANE runs, the
embedding probes also for each way of aggregating token latents into a model embedding.
"""

from __future__ import annotations

import numpy as np
import torch

from core.zoo.arch import ArchSpec, layer_slices
from core.rep.codes import aggregated_embeddings
from core.zoo.data import load_dataset
from core.rep.embed import (
    PROPERTIES,
    embedding_matrix,
    load_embeddings,
    pooled_statistics,
    probe_all,
    reconstruct,
    weight_statistics,
)
from core.errors import UserError
from core.zoo.population import evaluate_models, recalibrate_norm_statistics
from core.rep.sane import AGGREGATIONS
from core.rep.train import load_run
from core.store.workspace import Workspace, read_json, write_json
from core.zoo.model_zoo import combined_table, load_zoos

KEEP_THRESHOLD = 0.9


def _squares(truth: torch.Tensor, predicted: torch.Tensor) -> tuple[float, float]:
    """(residual, total) sums of squares; R^2 = 1 - residual / total, and pooling sums over architectures
    gives the R^2 of them all."""
    return float((truth - predicted).pow(2).sum()), float((truth - truth.mean(0)).pow(2).sum())


def _r2(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    residual, total = _squares(truth, predicted)
    return 1 - residual / total


def evaluate_run(workspace: Workspace, run_name: str | None = None, device: str = "cpu", refresh: bool = False) -> dict:
    run = load_run(workspace, run_name)
    cached = run.folder / "eval.json"
    if cached.exists() and not refresh:
        return read_json(cached)
    zoos = load_zoos(workspace)
    mixed = len(zoos) > 1
    residual = total = 0.0
    per_layer, accuracies, test_checkpoints = {}, [], 0
    for zoo in zoos:
        prepared = run.prepare(zoo)
        test_rows = prepared.rows("test")
        if len(test_rows) == 0:  # every model of this architecture is in training or validation
            continue
        original = prepared.aligned[torch.from_numpy(test_rows)]
        rebuilt = reconstruct(run, prepared, test_rows, device)
        squares = _squares(original, rebuilt)
        residual, total, test_checkpoints = residual + squares[0], total + squares[1], test_checkpoints + len(test_rows)
        prefix = f"{zoo.spec.name}/" if mixed else ""
        for layer, span in zip(zoo.spec.layers, layer_slices(zoo.spec)):
            per_layer[prefix + layer.key] = _r2(original[:, span], rebuilt[:, span])
        accuracies.append(_test_accuracies(zoo, original, rebuilt, test_rows))

    table = combined_table(zoos)
    result = {
        "run": run.name,
        "kind": run.kind,
        "architectures": [z.spec.name for z in zoos],
        "test_models": len(run.split.test),
        "test_checkpoints": test_checkpoints,
        "recon_r2": 1 - residual / total,
        "recon_r2_per_layer": per_layer,
        **_accuracy_retention(accuracies),
    }
    embeddings = load_embeddings(workspace, run.name)
    sides = run.split.of(table["model_id"].to_numpy())
    if mixed:  # flat weights of different architectures do not stack; pooled statistics of all weights do
        features = {
            "embedding": embedding_matrix(embeddings),
            "stats": np.concatenate([pooled_statistics(z.weights) for z in zoos])[_order(zoos)],
        }
        result["probe_r2"] = {"weights": dict.fromkeys(PROPERTIES), **probe_all(features, table, sides)}
    else:
        zoo, prepared = zoos[0], run.prepare(zoos[0])
        features = {
            "embedding": embedding_matrix(embeddings),
            "weights": prepared.aligned.numpy(),
            "stats": weight_statistics(zoo.spec, zoo.weights)
            if isinstance(zoo.spec, ArchSpec)
            else pooled_statistics(zoo.weights),
        }
        result["probe_r2"] = probe_all(features, table, sides)
    if run.kind == "sane":
        result["aggregation"] = run.aggregation
        result["probe_r2_by_aggregation"] = _aggregation_probes(run, zoos, table, sides, device)
    history = run.history
    if history.height:
        result["epochs_trained"] = int(history["epoch"].max())
        result["train_seconds"] = float(history["elapsed_s"].max())
    write_json(cached, result)
    return result


def _aggregation_probes(run, zoos, table, sides: np.ndarray, device: str) -> dict[str, dict[str, float]]:
    """SANE: the embedding probes once per way of aggregating token latents, side by side, so that the map can
    use whichever probes best (`ae embed --aggregation`)."""
    per_zoo = [
        aggregated_embeddings(run, prepared, prepared.aligned, AGGREGATIONS, device)
        for prepared in (run.prepare(zoo) for zoo in zoos)
    ]
    features = {how: np.concatenate([part[how] for part in per_zoo])[_order(zoos)] for how in AGGREGATIONS}
    return probe_all(features, table, sides)


def _order(zoos) -> np.ndarray:
    """Positions that put the architectures' rows, stacked one architecture after another, in checkpoint order."""
    return np.argsort(np.concatenate([z.table["checkpoint"].to_numpy() for z in zoos]), kind="stable")


def _test_accuracies(zoo, original: torch.Tensor, rebuilt: torch.Tensor, test_rows: np.ndarray):
    """(original, reconstructed) test accuracies, the dataset's class count, and for models with BatchNorm the
    reconstructions' accuracies after re-estimating its statistics on training images (else None); None
    without the dataset."""
    dataset = zoo.manifest.get("dataset", {})
    try:
        data = load_dataset(dataset.get("name", "unknown"), seed=dataset.get("seed", 0))
    except UserError:
        return None
    activations = zoo.table["activation"].to_numpy()[test_rows].tolist()
    _, acc_original = evaluate_models(zoo.spec, original, data.x_test, data.y_test, activations)
    _, acc_rebuilt = evaluate_models(zoo.spec, rebuilt, data.x_test, data.y_test, activations)
    recalibrated = None
    if any(layer.kind == "norm" for layer in zoo.spec.layers):  # running statistics refit to the decoded weights
        refit = recalibrate_norm_statistics(zoo.spec, rebuilt, data.x_train)
        recalibrated = evaluate_models(zoo.spec, refit, data.x_test, data.y_test, activations)[1]
    return acc_original, acc_rebuilt, data.n_classes, recalibrated


def _accuracy_retention(accuracies: list) -> dict:
    """Accuracy of reconstructed models relative to their originals, over test checkpoints that learned
    something (original accuracy at least twice chance): at chance level the ratio says nothing."""
    if any(a is None for a in accuracies):
        return {"recon_acc_ratio": None, "recon_keep90_fraction": None, "recon_acc_note": "dataset not available"}
    acc_original = torch.cat([a[0] for a in accuracies])
    acc_rebuilt = torch.cat([a[1] for a in accuracies])
    learned = acc_original >= 2.0 / accuracies[0][2]
    ratio = (acc_rebuilt[learned] / acc_original[learned]).numpy()
    figures = {
        "recon_acc_ratio": float(ratio.mean()),
        "recon_keep90_fraction": float((ratio >= KEEP_THRESHOLD).mean()),
        "recon_acc_checkpoints": int(learned.sum()),
        "original_acc_mean": float(acc_original[learned].mean()),
        "recon_acc_mean": float(acc_rebuilt[learned].mean()),
    }
    if any(a[3] is not None for a in accuracies):  # with BatchNorm, also after re-estimating its statistics
        acc_recalibrated = torch.cat([a[1] if a[3] is None else a[3] for a in accuracies])
        figures["recon_acc_ratio_recalibrated"] = float((acc_recalibrated[learned] / acc_original[learned]).mean())
    return figures
