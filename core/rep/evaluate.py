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
from core.store.budget import chunk_rows, fits, memory_mb
from core.store.files import read_json, write_json
from core.store.workspace import Workspace, zoo_stamp
from core.zoo.arch import layer_slices
from core.zoo.data import load_dataset
from core.zoo.model_zoo import combined_table, load_zoos
from core.zoo.population import evaluate_models, recalibrate_norm_statistics

KEEP_THRESHOLD = 0.9


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
    left_out = _weights_probe_left_out(parts)
    if left_out:
        result["probe_notes"] = {"weights": left_out}
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


class _Squares:
    """Per-parameter sums over test checkpoints, accumulated a chunk at a time: R^2's residual and total sums of
    squares follow from them exactly (total = sum x^2 - (sum x)^2 / n, in float64)."""

    def __init__(self, n_params: int):
        self.n = 0
        self.sum, self.sum_sq, self.residual = (torch.zeros(n_params, dtype=torch.float64) for _ in range(3))

    def add(self, truth: torch.Tensor, predicted: torch.Tensor) -> None:
        truth = truth.double()
        self.n += len(truth)
        self.sum += truth.sum(0)
        self.sum_sq += truth.pow(2).sum(0)
        self.residual += (truth - predicted.double()).pow(2).sum(0)

    def over(self, span: slice = slice(None)) -> tuple[float, float]:
        """(residual, total) over the parameters of `span`."""
        total = self.sum_sq[span] - self.sum[span].pow(2) / max(self.n, 1)
        return float(self.residual[span].sum()), float(total.sum())


def _reconstruction(run: AERun, parts: list[PreparedZoo], device: str) -> dict:
    """R^2 of the test checkpoints' reconstructions (overall, pooled over architectures, and per layer) and the
    accuracy they keep; the test checkpoints are encoded and decoded a chunk at a time."""
    residual = total = 0.0
    per_layer, accuracies, test_checkpoints = {}, [], 0
    for prepared in parts:
        zoo, test_rows = prepared.zoo, prepared.rows("test")
        if len(test_rows) == 0:  # every model of this architecture is in training or validation
            continue
        squares, chunks = _Squares(zoo.spec.n_params), []
        for start, original in prepared.iter_aligned(test_rows, chunk_rows(zoo.spec.n_params, copies=8)):
            rebuilt = run.decode(prepared, run.encode(prepared, original, device), device)
            squares.add(original, rebuilt)
            chunks.append(_test_accuracies(zoo, original, rebuilt, test_rows[start : start + len(original)]))
        part_residual, part_total = squares.over()
        residual, total, test_checkpoints = (
            residual + part_residual,
            total + part_total,
            test_checkpoints + len(test_rows),
        )
        prefix = f"{zoo.spec.name}/" if len(parts) > 1 else ""
        for layer, span in zip(zoo.spec.layers, layer_slices(zoo.spec)):
            layer_residual, layer_total = squares.over(span)
            per_layer[prefix + layer.key] = 1 - layer_residual / layer_total
        accuracies.append(_joined(chunks))
    return {
        "test_checkpoints": test_checkpoints,
        "recon_r2": 1 - residual / total,
        "recon_r2_per_layer": per_layer,
        **_accuracy_retention(accuracies),
    }


def _joined(chunks: list):
    """The chunks' (original, reconstructed, classes, recalibrated) accuracies as one; None without the dataset."""
    if any(c is None for c in chunks):
        return None
    recalibrated = None if chunks[0][3] is None else torch.cat([c[3] for c in chunks])
    return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks]), chunks[0][2], recalibrated


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
            "stats": np.concatenate([_chunked(pooled_statistics, z) for z in zoos])[_order(zoos)],
        }
    else:
        zoo = parts[0].zoo
        features = {"embedding": embedding, "stats": _chunked(lambda w: weight_statistics(zoo.spec, w), zoo)}
        if not _weights_probe_left_out(parts):
            features["weights"] = parts[0].aligned_rows(np.arange(len(zoo))).numpy()
    scores = probe_all(features, table, sides)
    return {m: {"weights": dict.fromkeys(PROPERTIES), **by} for m, by in scores.items()}


def _weights_probe_left_out(parts: list[PreparedZoo]) -> str | None:
    """Why the flat-weights baseline is not probed (None: it is). It needs the whole zoo in memory (ridge over every
    parameter), and its float64 SVD peaked at about 20x the float32 matrix (a 24 MB zoo: +490 MB), so it runs only
    where that fits a quarter of the memory budget; several architectures' flat weights do not stack."""
    if len(parts) > 1:
        return "several architectures: their flat weights do not stack"
    zoo = parts[0].zoo
    need = 20 * 4 * len(zoo) * zoo.spec.n_params
    if fits(need):
        return None
    return (
        f"left out: ridge over all {len(zoo)} checkpoints' flat weights needs about {need / 2**20:,.0f} MB, more "
        f"than a quarter of the memory budget ({memory_mb():,} MB; raise it with --memory)"
    )


def _chunked(statistics, zoo) -> np.ndarray:
    """Per-checkpoint statistics [checkpoints, k] of the zoo, computed a chunk of checkpoints at a time."""
    return np.concatenate([statistics(chunk) for _, chunk in zoo.iter_chunks()])


def _aggregation_probes(run: AERun, parts: list[PreparedZoo], table, sides, device: str) -> dict[str, dict]:
    """The embedding probes once per way of aggregating latents, side by side, so that the map can use whichever
    probes best (`ae embed --aggregation`)."""
    choices = run.method.aggregations
    per_zoo = []
    for p in parts:
        chunk = chunk_rows(p.zoo.spec.n_params, copies=8)
        embedded = [run.method.embed(run.model, p, part, device, choices) for _, part in p.iter_aligned(chunk=chunk)]
        per_zoo.append({how: np.concatenate([e[how] for e in embedded]) for how in choices})
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
    if not learned.any():  # e.g. a zoo of untrained checkpoints: no ratio to average
        note = "no test checkpoint reaches twice chance accuracy"
        return {"recon_acc_ratio": None, "recon_keep90_fraction": None, "recon_acc_note": note}
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
