"""Every checkpoint's embedding and its 2-D maps (UMAP and PCA), stored with the run (`embeddings.parquet`).

The map is computed once, when training ends, embedding the zoo a chunk of checkpoints at a time (the memory
budget, core/store/budget.py, sets the chunk). UMAP is fitted on at most MAP_FIT_MAX checkpoints and places the
rest with `transform`: its nearest-neighbour graph and layout optimisation grow with the points fitted (time and
memory), while `transform` places each other point among its nearest fitted neighbours in time linear in the
points placed. Zoos up to 50,000 checkpoints (every zoo made here so far) are fitted whole, as before. New
points (generated models) are placed on it by `place_on_map`: the distance-weighted mean of the map positions of
their nearest zoo embeddings. That needs no pickled reducer in the workspace and no numba compilation at sampling time.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA

from core.errors import UserError
from core.rep.run import AERun
from core.runtime import cache_jit_functions, use_numba_cache
from core.store.budget import chunk_rows
from core.store.files import write_parquet
from core.store.runs import AERunFiles
from core.store.workspace import Workspace, zoo_stamp
from core.zoo.model_zoo import Zoo

# The most checkpoints UMAP is fitted on; the others are placed on the fitted map by `transform`.
MAP_FIT_MAX = 50_000


def project_2d(embeddings: np.ndarray, seed: int, fit_max: int = MAP_FIT_MAX) -> tuple[np.ndarray, np.ndarray]:
    """(UMAP, PCA) coordinates [N, 2] each: UMAP fitted on a seeded sample of at most `fit_max` points (all of a
    smaller zoo) and the others transformed onto it. UMAP's neighbourhood shrinks for tiny zoos."""
    pca = PCA(n_components=2, random_state=seed).fit_transform(embeddings)
    use_numba_cache()
    # lazy: importing umap compiles numba code (seconds); only computing a map needs it
    import umap

    cache_jit_functions(("umap", "pynndescent"))

    neighbours = max(2, min(15, len(embeddings) - 1))
    reducer = umap.UMAP(
        n_neighbors=neighbours, min_dist=0.1, random_state=seed, init="spectral" if len(embeddings) > 10 else "random"
    )
    with warnings.catch_warnings():  # a fixed random_state makes UMAP single-threaded, and it says so each time
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        # from 4,096 points on, NN-descent compiles in every process (core/runtime.py `cache_jit_functions`)
        warnings.filterwarnings("ignore", message="Cannot cache compiled function")
        # A zoo of separate init families makes a neighbourhood graph of separate components; UMAP lays them out
        # one by one and places them by a spectral embedding of their centres, whose affinities between far
        # centres are 0: scikit-learn then warns about a graph UMAP meant to be disconnected.
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        if len(embeddings) <= fit_max:
            return reducer.fit_transform(embeddings), pca
        fitted = np.sort(np.random.default_rng([seed, 3]).choice(len(embeddings), fit_max, replace=False))
        rest = np.setdiff1d(np.arange(len(embeddings)), fitted)
        xy = np.empty((len(embeddings), 2), dtype=np.float32)
        xy[fitted] = reducer.fit_transform(embeddings[fitted])
        xy[rest] = reducer.transform(embeddings[rest])
        return xy, pca


def place_on_map(zoo_embeddings: np.ndarray, zoo_xy: np.ndarray, new_embeddings: np.ndarray, k: int = 8) -> np.ndarray:
    """Map positions for new embeddings: inverse-distance-weighted mean of their k nearest zoo points."""
    k = min(k, len(zoo_embeddings))
    distances = cdist(new_embeddings, zoo_embeddings)
    nearest = np.argsort(distances, axis=1)[:, :k]
    weights = 1.0 / (np.take_along_axis(distances, nearest, axis=1) + 1e-9)
    weights /= weights.sum(axis=1, keepdims=True)
    return (zoo_xy[nearest] * weights[:, :, None]).sum(axis=1)


def compute_map(workspace: Workspace, run: AERun, zoos: list[Zoo], device: str = "cpu") -> pl.DataFrame:
    """Embed every checkpoint of every architecture, project all to 2-D together, and store the table with
    the run (rows in checkpoint order)."""
    parts = []
    for zoo in zoos:
        prepared = run.prepare(zoo)
        chunk = chunk_rows(zoo.spec.n_params, copies=8)  # the kinds' encoders hold a few copies (tokens, states)
        embedding = np.concatenate(
            [run.embed(prepared, part, device) for _, part in prepared.iter_aligned(chunk=chunk)]
        )
        parts.append(
            zoo.table.select("checkpoint").with_columns(
                pl.Series("split", prepared.sides), pl.Series("embedding", embedding.astype(np.float32))
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
    write_parquet(run.files.embeddings, table)
    return table


def set_aggregation(workspace: Workspace, run: AERun, zoos: list[Zoo], aggregation: str, device: str = "cpu") -> dict:
    """Re-map a run with another aggregation of its latents (no retraining): its embeddings and map are
    recomputed, its config remembers the choice, and its stored evaluation is dropped (the embedding probes
    change)."""
    choices = run.method.aggregations
    if aggregation not in choices:
        raise UserError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(choices)}")
    with workspace.lock():
        run.files.check_zoo(zoo_stamp(zoos[0].manifest))  # the zoos handed in are the run's
        run.aggregation = aggregation
        table = compute_map(workspace, run, zoos, device)
        run.files.write_config({**run.files.read_config(), "aggregation": aggregation})
        run.files.eval.unlink(missing_ok=True)
    return {"run": run.name, "aggregation": aggregation, "checkpoints": table.height}


def load_embeddings(files: AERunFiles, checkpoints: list[int] | None = None) -> pl.DataFrame:
    """The run's map table (checked: core/store/runs.py `AERunFiles.read_map`)."""
    return files.read_map(checkpoints)


def embedding_matrix(table: pl.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(np.stack(table["embedding"].to_numpy()), dtype=np.float32)
