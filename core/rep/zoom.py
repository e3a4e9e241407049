"""Zooming into a region of the map: a fresh 2-D projection of only the chosen checkpoints' embeddings.

The global UMAP of a zoo is dominated by its few initialisation families; inside one family the points sit in a
blob. Re-projecting just that blob shows its own structure. PCA rather than UMAP: instant on a few hundred points
(no numba compilation), deterministic (no seed), and its axes are the directions in which the region varies most.
"""

from __future__ import annotations

import numpy as np


def zoom_projection(embeddings: np.ndarray) -> np.ndarray:
    """[N, 2] coordinates of the embeddings [N, D] on their own first two principal axes (zeros where there is no
    spread). Each axis is signed so that its largest loading is positive: the same region always looks the same."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    xy = np.zeros((len(embeddings), 2))
    if len(embeddings) < 2:
        return xy
    centred = embeddings - embeddings.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    xy[:, : len(axes)] = centred @ axes.T
    return xy
