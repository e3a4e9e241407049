"""Placing new points on a stored UMAP map: umap-learn's `transform` against our nearest-neighbour placement.

The map is fitted on the train and validation checkpoints' embeddings of a finished run; the test
checkpoints play the new points. Quality: for each new point, the share of its 10 nearest map neighbours
(among the fitted points) that are also among its 10 nearest neighbours in embedding space. Cost: seconds to
place all new points, in a process where UMAP is already imported (its import and JIT compilation come
on top for `transform`, and not at all for the nearest-neighbour placement).
Usage: python bench/map_placement.py --workspace WS [--run NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

from core.rep.embed import embedding_matrix, load_embeddings, place_on_map  # noqa: E402
from core.rep.run import load_run  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402


def _recall(new_emb, new_xy, old_emb, old_xy, k: int = 10) -> float:
    near_emb = np.argsort(np.linalg.norm(new_emb[:, None] - old_emb[None], axis=2), axis=1)[:, :k]
    near_map = np.argsort(np.linalg.norm(new_xy[:, None] - old_xy[None], axis=2), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(near_emb, near_map)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--run", default=None)
    args = parser.parse_args()
    workspace = Workspace(args.workspace)
    run = load_run(workspace, args.run, with_model=False)
    table = load_embeddings(run.files)
    embeddings = embedding_matrix(table)
    new = table["split"].to_numpy() == "test"
    import umap

    start = time.perf_counter()
    reducer = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=0, n_jobs=1).fit(embeddings[~new])
    fit_s = time.perf_counter() - start
    old_xy = reducer.embedding_
    start = time.perf_counter()
    transformed = reducer.transform(embeddings[new])
    transform_s = time.perf_counter() - start
    start = time.perf_counter()
    placed = place_on_map(embeddings[~new], old_xy, embeddings[new])
    place_s = time.perf_counter() - start
    result = {
        "fitted_points": int((~new).sum()),
        "new_points": int(new.sum()),
        "umap_fit_s": round(fit_s, 2),
        "umap_transform_s": round(transform_s, 3),
        "knn_place_s": round(place_s, 4),
        "umap_transform_recall10": round(_recall(embeddings[new], transformed, embeddings[~new], old_xy), 3),
        "knn_place_recall10": round(_recall(embeddings[new], placed, embeddings[~new], old_xy), 3),
    }
    print(f"{'method':<16}{'seconds':>10}{'recall@10':>11}")
    print(f"{'umap transform':<16}{transform_s:>10.3f}{result['umap_transform_recall10']:>11.3f}")
    print(f"{'knn placement':<16}{place_s:>10.4f}{result['knn_place_recall10']:>11.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
