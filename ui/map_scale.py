"""The map at scale: what to draw when a zoo has more checkpoints than a browser can draw as points.

Every point as a WebGL marker with its hover data is about 100 bytes of figure JSON: 1,000,000 checkpoints are
100 MB to build, send and parse before the first draw. Above MAX_DRAWN_POINTS the map instead draws
- a density image of every checkpoint (a grid of DENSITY_BINS x DENSITY_BINS cells, each coloured by the mean of
  the colouring over its checkpoints), whose size does not grow with the zoo, and
- over it, one representative checkpoint per occupied cell of a coarser grid (the one nearest the cell's centre),
  as ordinary points with hover and selection: where points overlap, one stands for its neighbours, so the pointer
  anywhere in the cloud is within a few pixels of a checkpoint whose hover it gets.
A box or lasso drawn on the map then selects every checkpoint inside it, not only the representatives
(`inside_shapes`). Pure numpy: unit-tested without a browser.
"""

from __future__ import annotations

import numpy as np

# Up to this many checkpoints every one is a point (the map as it always was). bench/map_million.py at a load of
# about 5 on the shared 2-core machine: 20,000 points drawn one by one took 5.3 s to the first draw, 1,000,000 as
# density and representatives 3.1 s (a page with a 1,000-point chart: 1.7 s).
MAX_DRAWN_POINTS = 10_000
# The image's cells and at most REPRESENTATIVE_GRID^2 representatives (10,000; a 1,000,000-point map of 40 clusters
# has about 6,000): on a 800-pixel-wide chart a representative every 8 pixels, within the map's 12-pixel hover
# distance. bench/map_million.py, on the shared 2-core machine at a load of about 11: 300 bins and a 150 grid drew
# 1,000,000 points in 8.2 s (5.9 s above the floor of a page with a 1,000-point chart), these in 6.0 s (2.1 s).
DENSITY_BINS = 200
REPRESENTATIVE_GRID = 100


def _cells(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each point's column and row on a bins x bins grid over the points' extent, and the grid's edges."""
    x_edges = np.linspace(x.min(), x.max(), bins + 1) if len(x) else np.zeros(bins + 1)
    y_edges = np.linspace(y.min(), y.max(), bins + 1) if len(y) else np.zeros(bins + 1)
    return _bin(x, x_edges, bins), _bin(y, y_edges, bins), x_edges, y_edges


def _bin(values: np.ndarray, edges: np.ndarray, bins: int) -> np.ndarray:
    """The cell of each value on equal-width `edges` (the maximum in the last cell), by arithmetic: a searchsorted
    of a million values took half a second."""
    width = max(edges[1] - edges[0], 1e-300)
    return np.minimum(((values - edges[0]) / width).astype(np.int64), bins - 1)


def representatives(x: np.ndarray, y: np.ndarray, grid: int = REPRESENTATIVE_GRID) -> np.ndarray:
    """Indices (ascending) of one point per occupied cell of a grid x grid grid: the point nearest its cell's
    centre (ties: the first in order)."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    column, row, x_edges, y_edges = _cells(x, y, grid)
    width, height = max(x_edges[1] - x_edges[0], 1e-300), max(y_edges[1] - y_edges[0], 1e-300)
    # in cell units the distance to the centre is below 1/2 (squared, both axes), so cell + distance sorts by
    # cell first and by distance within it: one stable float sort (a three-key lexsort took 1.7 s for 10^6)
    offset_x = (x - x_edges[0]) / width - column - 0.5
    offset_y = (y - y_edges[0]) / height - row - 0.5
    cell = column * grid + row
    order = np.argsort(cell + (offset_x**2 + offset_y**2), kind="stable")
    first = np.ones(len(order), dtype=bool)
    first[1:] = cell[order][1:] != cell[order][:-1]
    return np.sort(order[first])


def density(
    x: np.ndarray, y: np.ndarray, values: np.ndarray, bins: int = DENSITY_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cell centres along x, along y, counts [bins_y, bins_x], mean of the finite `values` per cell, NaN where a
    cell holds no point or none with a value): the rows run along y, as a heatmap's z does."""
    column, row, x_edges, y_edges = _cells(x, y, bins)
    cell = row * bins + column
    counts = np.bincount(cell, minlength=bins * bins)
    finite = np.isfinite(values)
    sums = np.bincount(cell[finite], weights=values[finite], minlength=bins * bins)
    valued = np.bincount(cell[finite], minlength=bins * bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valued > 0, sums / np.maximum(valued, 1), np.nan)
    centres_x, centres_y = (x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2
    return centres_x, centres_y, counts.reshape(bins, bins), mean.reshape(bins, bins)


def inside_shapes(x: np.ndarray, y: np.ndarray, selection: dict | None) -> np.ndarray:
    """Bool mask of the points inside any box or lasso of a Streamlit plotly selection (`box`: x and y ranges;
    `lasso`: the polygon's x and y vertices)."""
    inside = np.zeros(len(x), dtype=bool)
    for box in (selection or {}).get("box", []) or []:
        xs, ys = _coordinates(box)
        if len(xs) >= 2 and len(ys) >= 2:
            inside |= (x >= min(xs)) & (x <= max(xs)) & (y >= min(ys)) & (y <= max(ys))
    for lasso in (selection or {}).get("lasso", []) or []:
        xs, ys = _coordinates(lasso)
        if len(xs) >= 3 and len(xs) == len(ys):
            inside |= in_polygon(x, y, xs, ys)
    return inside


def _coordinates(shape: dict) -> tuple[np.ndarray, np.ndarray]:
    try:
        return np.asarray(shape.get("x", []), dtype=float), np.asarray(shape.get("y", []), dtype=float)
    except (TypeError, ValueError, AttributeError):  # a malformed shape selects nothing
        return np.zeros(0), np.zeros(0)


def in_polygon(x: np.ndarray, y: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd rule: a point is inside when a ray to its right crosses the polygon's edges an odd number of times.
    Only points within the polygon's bounding box are tested, edge by edge."""
    mask = (x >= xs.min()) & (x <= xs.max()) & (y >= ys.min()) & (y <= ys.max())
    candidates = np.flatnonzero(mask)
    px, py = x[candidates], y[candidates]
    odd = np.zeros(len(candidates), dtype=bool)
    for x0, y0, x1, y1 in zip(xs, ys, np.roll(xs, -1), np.roll(ys, -1)):
        spans = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        odd ^= spans & (px < crossing)
    inside = np.zeros(len(x), dtype=bool)
    inside[candidates[odd]] = True
    return inside
