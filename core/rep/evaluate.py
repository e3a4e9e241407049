"""How good is a hyper-representation: reconstruction of held-out models and linear probes of their properties.

Figures are on the test models (never seen in training): reconstruction R^2 per layer and overall, the
accuracy reconstructed models keep, and ridge-probe R^2 for test accuracy, epoch and generalisation gap from
the embedding, the (aligned) flattened weights, and weight statistics s(W). For kinds whose embedding aggregates
several latents (SANE), the embedding probes also for each way of aggregating them.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from core.errors import UserError
from core.rep.embed import embedding_matrix, load_embeddings
from core.rep.prepare import PreparedZoo
from core.rep.probes import PROPERTIES, pooled_statistics, probe_all, weight_statistics
from core.rep.run import AERun, load_run
from core.store.files import read_json, write_json
from core.store.workspace import Workspace, zoo_stamp
from core.zoo.arch import layer_slices
from core.zoo.data import load_dataset
from core.zoo.model_zoo import combined_table, load_zoos
from core.zoo.population import evaluate_models, recalibrate_norm_statistics

KEEP_THRESHOLD = 0.9


def _squares(truth: torch.Tensor, predicted: torch.Tensor) -> tuple[float, float]:
    """(residual, total) sums of squares; R^2 = 1 - residual / total, and pooling sums over architectures
    gives the R^2 of them all."""
    return float((truth - predicted).pow(2).sum()), float((truth - truth.mean(0)).pow(2).sum())


def _r2(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    residual, total = _squares(truth, predicted)
    return 1 - residual / total


def evaluate_run(workspace: Workspace, run_name: str | None = None, device: str = "cpu", refresh: bool = False) -> dict:
    """The run's figures (stored as eval.json; computed again with `refresh`, or when the stored file does not
    read as this run's figures)."""
    run = load_run(workspace, run_name)
    if run.files.eval.exists() and not refresh:
        stored = _stored_figures(run)
        if stored is not None:
            return stored
    zoos = load_zoos(workspace)
    run.files.check_zoo(zoo_stamp(zoos[0].manifest))  # the zoo read is still the run's
    parts = [run.prepare(zoo) for zoo in zoos]  # aligned once, used by every figure below
    table = combined_table(zoos)
    sides = run.split.of(table["model_id"].to_numpy())
    result = {
        "run": run.name,
        "kind": run.kind,
        "architectures": [z.spec.name for z in zoos],
        "test_models": len(run.split.test),
        # the learning check's (core/rep/learning_check.py), recorded when the run was trained
        "warnings": run.files.read_config().get("warnings", []),
        **_reconstruction(run, parts, device),
        **_named(_probes(run, parts, table, sides), "probe_{}"),
    }
    if len(run.method.aggregations) > 1:
        result["aggregation"] = run.aggregation
        result |= _named(_aggregation_probes(run, parts, table, sides, device), "probe_{}_by_aggregation")
    if run.history.height:
        result["epochs_trained"] = int(run.history["epoch"].max())
        result["train_seconds"] = float(run.history["elapsed_s"].max())
    write_json(run.files.eval, result)
    return result


STORED_KEYS = ("run", "test_models", "test_checkpoints", "recon_r2", "recon_r2_per_layer", "probe_r2")


def _stored_figures(run: AERun) -> dict | None:
    """eval.json if it holds this run's figures (derived data: a damaged or hand-edited one is recomputed)."""
    try:
        stored = read_json(run.files.eval)
    except UserError:
        return None
    complete = all(k in stored for k in STORED_KEYS) and isinstance(stored["probe_r2"], dict)
    return stored if complete and stored["run"] == run.name else None


def _reconstruction(run: AERun, parts: list[PreparedZoo], device: str) -> dict:
    """R^2 of the test checkpoints' reconstructions (overall, pooled over architectures, and per layer) and the
    accuracy they keep."""
    residual = total = 0.0
    per_layer, accuracies, test_checkpoints = {}, [], 0
    for prepared in parts:
        zoo, test_rows = prepared.zoo, prepared.rows("test")
        if len(test_rows) == 0:  # every model of this architecture is in training or validation
            continue
        original = prepared.aligned[torch.from_numpy(test_rows)]
        rebuilt = run.reconstruct(prepared, test_rows, device)
        squares = _squares(original, rebuilt)
        residual, total, test_checkpoints = residual + squares[0], total + squares[1], test_checkpoints + len(test_rows)
        prefix = f"{zoo.spec.name}/" if len(parts) > 1 else ""
        for layer, span in zip(zoo.spec.layers, layer_slices(zoo.spec)):
            per_layer[prefix + layer.key] = _r2(original[:, span], rebuilt[:, span])
        accuracies.append(_test_accuracies(zoo, original, rebuilt, test_rows))
    return {
        "test_checkpoints": test_checkpoints,
        "recon_r2": 1 - residual / total,
        "recon_r2_per_layer": per_layer,
        **_accuracy_retention(accuracies),
    }


def _named(scores: dict, pattern: str) -> dict:
    """probe_all's {"r2": ..., "tau": ...} as result keys (`probe_r2`, `probe_tau`, ...)."""
    return {pattern.format(measure): table for measure, table in scores.items()}


def _probes(run: AERun, parts: list[PreparedZoo], table: pl.DataFrame, sides: np.ndarray) -> dict:
    """Probe R^2 of the stored embedding beside the baselines: flat aligned weights and s(W) for one architecture;
    for several, whose flat weights do not stack, pooled statistics of all weights."""
    embedding = embedding_matrix(load_embeddings(run.files, table["checkpoint"].to_list()))
    zoos = [p.zoo for p in parts]
    if len(parts) > 1:
        features = {
            "embedding": embedding,
            "stats": np.concatenate([pooled_statistics(z.weights) for z in zoos])[_order(zoos)],
        }
        scores = probe_all(features, table, sides)
        return {m: {"weights": dict.fromkeys(PROPERTIES), **by} for m, by in scores.items()}
    prepared = parts[0]
    features = {
        "embedding": embedding,
        "weights": prepared.aligned.numpy(),
        "stats": weight_statistics(prepared.zoo.spec, prepared.zoo.weights),
    }
    return probe_all(features, table, sides)


def _aggregation_probes(run: AERun, parts: list[PreparedZoo], table, sides, device: str) -> dict[str, dict]:
    """The embedding probes once per way of aggregating latents, side by side, so that the map can use whichever
    probes best (`ae embed --aggregation`)."""
    choices = run.method.aggregations
    per_zoo = [run.method.embed(run.model, p, p.aligned, device, choices) for p in parts]
    zoos = [p.zoo for p in parts]
    features = {how: np.concatenate([part[how] for part in per_zoo])[_order(zoos)] for how in choices}
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
