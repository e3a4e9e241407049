"""Embeddings of every checkpoint, their 2-D maps, and linear probes of model properties.

The UMAP map is computed once, when training ends, and stored with the run (`embeddings.parquet`). New points
(generated models) are placed on it by `place_on_map`: the distance-weighted mean of the map positions of
their nearest zoo embeddings. That needs no pickled reducer in the workspace and no numba compilation at
sampling time.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import torch

from core.zoo.arch import Spec, tensor_slices
from core.rep.codes import decode_codes, encode_codes, map_embeddings
from core.errors import UserError
from core.store.layout import embeddings_path
from core.rep.prepare import PreparedZoo
from core.store.workspace import Workspace, read_json, read_parquet, write_json, write_parquet

# numba (under umap-learn) caches its compiled functions here, which saves most of UMAP's start-up cost
# on every later process.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "hyperrep-numba-cache"))

PROPERTIES = ("test_acc", "epoch", "ggap")


@torch.no_grad()
def embed_checkpoints(run, prepared: PreparedZoo, rows=None, device: str = "cpu") -> np.ndarray:
    """Map embeddings [rows, embedding] of the given checkpoints (all by default), for either kind of run."""
    weights = prepared.aligned if rows is None else prepared.aligned[torch.as_tensor(rows)]
    return map_embeddings(run, prepared, weights, device)


@torch.no_grad()
def reconstruct(run, prepared: PreparedZoo, rows: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """Aligned weights [rows, params] decoded from the codes of the given checkpoints."""
    weights = prepared.aligned[torch.as_tensor(rows)]
    return decode_codes(run, prepared, encode_codes(run, prepared, weights, device), device)


def project_2d(embeddings: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(UMAP, PCA) coordinates [N, 2] each. UMAP's neighbourhood shrinks for tiny zoos."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit_transform(embeddings)
    import umap

    warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
    neighbours = max(2, min(15, len(embeddings) - 1))
    reducer = umap.UMAP(
        n_neighbors=neighbours, min_dist=0.1, random_state=seed, init="spectral" if len(embeddings) > 10 else "random"
    )
    return reducer.fit_transform(embeddings), pca


def place_on_map(zoo_embeddings: np.ndarray, zoo_xy: np.ndarray, new_embeddings: np.ndarray, k: int = 8) -> np.ndarray:
    """Map positions for new embeddings: inverse-distance-weighted mean of their k nearest zoo points."""
    k = min(k, len(zoo_embeddings))
    from scipy.spatial.distance import cdist

    distances = cdist(new_embeddings, zoo_embeddings)
    nearest = np.argsort(distances, axis=1)[:, :k]
    weights = 1.0 / (np.take_along_axis(distances, nearest, axis=1) + 1e-9)
    weights /= weights.sum(axis=1, keepdims=True)
    return (zoo_xy[nearest] * weights[:, :, None]).sum(axis=1)


def compute_embeddings(workspace: Workspace, run, zoos, device: str = "cpu") -> pl.DataFrame:
    """Embed every checkpoint of every architecture, project all to 2-D together, and store the table with
    the run (rows in checkpoint order)."""
    from core.zoo.model_zoo import Zoo

    zoos = [zoos] if isinstance(zoos, Zoo) else zoos
    parts = []
    for zoo in zoos:
        prepared = run.prepare(zoo)
        parts.append(
            zoo.table.select("checkpoint").with_columns(
                pl.Series("split", prepared.sides),
                pl.Series("embedding", embed_checkpoints(run, prepared, device=device).astype(np.float32)),
            )
        )
    table = pl.concat(parts).sort("checkpoint")
    umap_xy, pca_xy = project_2d(embedding_matrix(table), run.train_config.seed)
    table = table.with_columns(
        pl.Series("umap_x", umap_xy[:, 0]),
        pl.Series("umap_y", umap_xy[:, 1]),
        pl.Series("pca_x", pca_xy[:, 0]),
        pl.Series("pca_y", pca_xy[:, 1]),
    )
    write_parquet(embeddings_path(workspace, run.name), table)
    return table


def set_aggregation(workspace: Workspace, run_name: str | None, aggregation: str, device: str = "cpu") -> dict:
    """Re-map a SANE run with another aggregation of its token latents (no retraining): its embeddings and
    map are recomputed, its config remembers the choice, and its stored evaluation is dropped (the embedding
    probes change)."""
    from core.rep.sane import AGGREGATIONS
    from core.rep.train import load_run
    from core.zoo.model_zoo import load_zoos

    run = load_run(workspace, run_name)
    if run.kind != "sane":
        raise UserError(f"{run.folder}: a {run.kind} run has one latent per model; only SANE runs aggregate tokens")
    if aggregation not in AGGREGATIONS:
        raise UserError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
    with workspace.lock():
        run.aggregation = aggregation
        table = compute_embeddings(workspace, run, load_zoos(workspace), device)
        write_json(run.folder / "config.json", {**read_json(run.folder / "config.json"), "aggregation": aggregation})
        (run.folder / "eval.json").unlink(missing_ok=True)
    return {"run": run.name, "aggregation": aggregation, "checkpoints": table.height}


def load_embeddings(workspace: Workspace, run_name: str) -> pl.DataFrame:
    return read_parquet(embeddings_path(workspace, run_name))


def embedding_matrix(table: pl.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(np.stack(table["embedding"].to_numpy()), dtype=np.float32)


# ---------------------------------------------------------------- probes


def weight_statistics(spec: Spec, weights: torch.Tensor) -> np.ndarray:
    """s(W) of Unterthiner et al. 2020: per layer, for each tensor it stores apart (weights, biases; a
    BatchNorm's scale, shift, running mean and variance), the mean, variance and the 1/25/50/75/99
    percentiles."""
    features = []
    q = torch.tensor([0.01, 0.25, 0.5, 0.75, 0.99])
    for span in tensor_slices(spec):
        part = weights[:, span]
        features += [part.mean(1, keepdim=True), part.var(1, keepdim=True), torch.quantile(part, q, dim=1).T]
    return torch.cat(features, dim=1).numpy()


def pooled_statistics(weights: torch.Tensor) -> np.ndarray:
    """Architecture-agnostic statistics of each model's parameters taken together: the log of their count, mean,
    variance and the 1/25/50/75/99 percentiles. The s(W) baseline for zoos of several architectures."""
    q = torch.tensor([0.01, 0.25, 0.5, 0.75, 0.99])
    rows = max(1, 2**24 // weights.shape[1])  # torch.quantile takes at most 2^24 entries at once
    quantiles = torch.cat([torch.quantile(weights[i : i + rows], q, dim=1).T for i in range(0, len(weights), rows)])
    count = torch.full((len(weights), 1), float(np.log(weights.shape[1])))
    return torch.cat([count, weights.mean(1, keepdim=True), weights.var(1, keepdim=True), quantiles], dim=1).numpy()


def _r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    denominator = ((truth - truth.mean()) ** 2).sum()
    return float(1 - ((truth - predicted) ** 2).sum() / denominator) if denominator > 0 else float("nan")


def ridge_probe(features: np.ndarray, target: np.ndarray, sides: np.ndarray) -> float:
    """Test R^2 of a closed-form ridge regression fit on the train rows, lambda chosen on the val rows.

    One thin SVD of the train rows, X = U S V^T, gives every lambda's solution V diag(s / (s^2 + lambda)) U^T y
    at the cost of min(rows, features)^2 x max(...): flat weights of a ResNet (tens of thousands of features,
    hundreds of rows) never form a features x features Gram matrix."""
    known = np.isfinite(target)
    train, val, test = ((sides == s) & known for s in ("train", "val", "test"))
    mean, std = features[train].mean(0), features[train].std(0) + 1e-8
    x = (features - mean) / std
    y_mean = target[train].mean()
    u, singular, vt = np.linalg.svd(x[train].astype(np.float64), full_matrices=False)
    uty = u.T @ (target[train] - y_mean)
    best = (-np.inf, None)
    for lam in np.logspace(-3, 5, 17):
        coef = vt.T @ (singular / (singular**2 + lam) * uty)
        score = _r2(target[val], x[val] @ coef + y_mean)
        if score > best[0]:
            best = (score, coef)
    return _r2(target[test], x[test] @ best[1] + y_mean)


def probe_all(features: dict[str, np.ndarray], table: pl.DataFrame, sides: np.ndarray) -> dict[str, dict[str, float]]:
    return {
        name: {prop: ridge_probe(x, table[prop].cast(pl.Float64).to_numpy(), sides) for prop in PROPERTIES}
        for name, x in features.items()
    }
