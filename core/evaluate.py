"""How good is a hyper-representation: reconstruction of held-out models and linear probes of their properties.

Figures are on the test models (never seen in training): reconstruction R^2 per layer and overall, the
accuracy reconstructed models keep, and ridge-probe R^2 for test accuracy, epoch and generalisation gap from
the embedding, the (aligned) flattened weights, and per-layer weight statistics s(W).
"""

from __future__ import annotations

import numpy as np
import torch

from core.arch import layer_slices
from core.data import load_dataset
from core.embed import embedding_matrix, load_embeddings, probe_all, reconstruct, weight_statistics
from core.errors import UserError
from core.population import evaluate_models
from core.train import load_run
from core.workspace import Workspace, read_json, write_json
from core.zoo import load_zoo

KEEP_THRESHOLD = 0.9


def _r2(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    total = (truth - truth.mean(0)).pow(2).sum()
    return float(1 - (truth - predicted).pow(2).sum() / total)


def evaluate_run(workspace: Workspace, run_name: str | None = None, device: str = "cpu", refresh: bool = False) -> dict:
    run = load_run(workspace, run_name)
    cached = run.folder / "eval.json"
    if cached.exists() and not refresh:
        return read_json(cached)
    zoo = load_zoo(workspace)
    prepared = run.prepare(zoo)
    test_rows = prepared.rows("test")
    original = prepared.aligned[torch.from_numpy(test_rows)]
    rebuilt = reconstruct(run, prepared, test_rows, device)
    per_layer = {
        layer.key: _r2(original[:, span], rebuilt[:, span])
        for layer, span in zip(zoo.spec.layers, layer_slices(zoo.spec))
    }

    result = {
        "run": run.name,
        "kind": run.kind,
        "test_models": len(prepared.split.test),
        "test_checkpoints": len(test_rows),
        "recon_r2": _r2(original, rebuilt),
        "recon_r2_per_layer": per_layer,
        **_accuracy_retention(zoo, original, rebuilt, test_rows),
    }
    embeddings = load_embeddings(workspace, run.name)
    features = {
        "embedding": embedding_matrix(embeddings),
        "weights": prepared.aligned.numpy(),
        "stats": weight_statistics(zoo.spec, zoo.weights),
    }
    result["probe_r2"] = probe_all(features, zoo.table, prepared.sides)
    history = run.history
    if history.height:
        result["epochs_trained"] = int(history["epoch"].max())
        result["train_seconds"] = float(history["elapsed_s"].max())
    write_json(cached, result)
    return result


def _accuracy_retention(zoo, original: torch.Tensor, rebuilt: torch.Tensor, test_rows: np.ndarray) -> dict:
    """Accuracy of reconstructed models relative to their originals, over test checkpoints that learned
    something (original accuracy at least twice chance): at chance level the ratio says nothing."""
    dataset = zoo.manifest.get("dataset", {})
    try:
        data = load_dataset(dataset.get("name", "unknown"), seed=dataset.get("seed", 0))
    except UserError:
        return {"recon_acc_ratio": None, "recon_keep90_fraction": None, "recon_acc_note": "dataset not available"}
    activations = zoo.table["activation"].to_numpy()[test_rows].tolist()
    _, acc_original = evaluate_models(zoo.spec, original, data.x_test, data.y_test, activations)
    _, acc_rebuilt = evaluate_models(zoo.spec, rebuilt, data.x_test, data.y_test, activations)
    learned = acc_original >= 2.0 / data.n_classes
    ratio = (acc_rebuilt[learned] / acc_original[learned]).numpy()
    return {
        "recon_acc_ratio": float(ratio.mean()),
        "recon_keep90_fraction": float((ratio >= KEEP_THRESHOLD).mean()),
        "recon_acc_checkpoints": int(learned.sum()),
        "original_acc_mean": float(acc_original[learned].mean()),
        "recon_acc_mean": float(acc_rebuilt[learned].mean()),
    }
