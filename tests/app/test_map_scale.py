"""The map at scale (ui/map_scale.py and its use in ui/figures.py) and the Zoo page's paged table (ui/paging.py)."""

import math

import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest

from core.errors import ZooError
from ui import paging
from ui.figures import COLOURINGS, map_figure, selected_checkpoints
from ui.map_scale import MAX_DRAWN_POINTS, REPRESENTATIVE_GRID, density, in_polygon, inside_shapes, representatives


def test_one_representative_per_occupied_cell_the_one_nearest_its_centre():
    # a 2 x 2 grid over [0, 1]^2: cell (0, 0) holds points 0 and 1 (centre 0.25, 0.25: point 1 is nearer),
    # cell (1, 1) points 2 and 3 (centre 0.75: point 2), cell (1, 0) point 4 alone, cell (0, 1) none
    x = np.array([0.0, 0.1, 0.9, 1.0, 0.55])
    y = np.array([0.0, 0.1, 0.9, 1.0, 0.2])
    assert representatives(x, y, grid=2).tolist() == [1, 2, 4]
    assert representatives(np.zeros(0), np.zeros(0)).tolist() == []


def test_density_counts_and_averages_the_values_of_each_cell():
    x, y = np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0])
    centres_x, centres_y, counts, mean = density(x, y, np.array([0.2, 0.4, np.nan]), bins=2)
    assert centres_x.tolist() == [0.25, 0.75] and centres_y.tolist() == [0.25, 0.75]
    assert counts.tolist() == [[2, 0], [0, 1]]  # rows along y
    assert mean[0, 0] == pytest.approx(0.3) and np.isnan(mean[1, 1]) and np.isnan(mean[0, 1])


def test_points_inside_a_lasso_and_a_box():
    triangle = np.array([0.0, 2.0, 0.0]), np.array([0.0, 0.0, 2.0])  # x + y < 2 in the first quadrant
    x, y = np.array([0.5, 1.5, 3.0, 0.1, -0.1]), np.array([0.5, 1.5, 0.0, 1.8, 0.5])
    assert in_polygon(x, y, *triangle).tolist() == [True, False, False, True, False]
    selection = {"box": [{"x": [2.5, 3.5], "y": [-1, 1]}], "lasso": [{"x": list(triangle[0]), "y": list(triangle[1])}]}
    assert inside_shapes(x, y, selection).tolist() == [True, False, True, True, False]
    assert not inside_shapes(x, y, {"lasso": [{"x": "bad", "y": None}]}).any()  # malformed: nothing, no error


def big_table(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "checkpoint": np.arange(n),
            "split": ["train"] * n,
            "umap_x": rng.normal(size=n),
            "umap_y": rng.normal(size=n),
            "model_id": np.arange(n) // 4,
            "epoch": np.arange(n) % 4,
            "seed": np.arange(n) // 4,
            "init_seed": np.arange(n) % 3,
            "architecture": ["resnet"] * n,
            "test_acc": rng.uniform(0.1, 0.9, size=n),
            "ggap": rng.uniform(0, 0.1, size=n),
        }
    )


@pytest.mark.parametrize("colour", ["test accuracy", "init"])
def test_a_map_too_large_to_draw_is_a_density_image_under_representative_points(colour):
    table = big_table(MAX_DRAWN_POINTS * 2)
    figure = map_figure(table, colour)
    heatmaps = [t for t in figure.data if isinstance(t, go.Heatmap)]
    points = [t for t in figure.data if isinstance(t, go.Scattergl)]
    assert len(heatmaps) == 1 and heatmaps[0].hoverinfo == "skip"
    drawn = [int(c[0]) for trace in points for c in trace.customdata]
    assert len(drawn) == len(set(drawn)) and len(drawn) <= REPRESENTATIVE_GRID**2 < table.height
    expected = representatives(table["umap_x"].to_numpy(), table["umap_y"].to_numpy())
    assert sorted(drawn) == table["checkpoint"].to_numpy()[expected].tolist()
    if COLOURINGS[colour][1]:  # the points' colours and the image's share the whole zoo's range
        low, high = table["test_acc"].min(), table["test_acc"].max()
        assert (points[0].marker.cmin, points[0].marker.cmax) == (low, high) == (heatmaps[0].zmin, heatmaps[0].zmax)


def test_a_large_map_leaves_out_points_without_a_position():
    table = big_table(MAX_DRAWN_POINTS + 10).with_columns(
        pl.when(pl.col("checkpoint") < 5).then(float("nan")).otherwise(pl.col("umap_x")).alias("umap_x")
    )
    drawn = [int(c[0]) for t in map_figure(table, "epoch").data if isinstance(t, go.Scattergl) for c in t.customdata]
    assert drawn and min(drawn) >= 5


def test_a_small_map_draws_every_point_as_before():
    figure = map_figure(big_table(100), "test accuracy")
    assert not any(isinstance(t, go.Heatmap) for t in figure.data) and len(figure.data[0].customdata) == 100


def test_a_box_on_a_large_map_selects_every_checkpoint_inside_not_only_those_drawn():
    table = big_table(MAX_DRAWN_POINTS + 1000)
    box = {"points": [{"customdata": [7]}], "box": [{"x": [0, 1], "y": [0, 1]}], "lasso": []}
    inside = table.filter(pl.col("umap_x").is_between(0, 1) & pl.col("umap_y").is_between(0, 1))["checkpoint"]
    assert selected_checkpoints(box, table) == sorted({7, *inside.to_list()})
    assert selected_checkpoints(box, big_table(100)) == [7]  # every point drawn: the points are the selection


def test_a_clicked_point_of_a_large_map_reads_back_from_its_typed_array_customdata():
    """The browser returns a typed-array row as an object keyed by index (as Chromium sent it on a 30,000-point map)."""
    clicked = {"points": [{"customdata": {"0": 403, "1": 80, "2": 15, "3": 0.778, "4": 0.016}}], "box": [], "lasso": []}
    assert selected_checkpoints(clicked, big_table(MAX_DRAWN_POINTS + 1)) == [403]
    assert selected_checkpoints({"points": [{"customdata": {"1": 80}}]}) == []  # no id: nothing, no error


def test_the_table_reads_one_page_at_a_time(tmp_path):
    path = tmp_path / "models.parquet"
    pl.DataFrame({"checkpoint": range(1234), "test_acc": [i / 1234 for i in range(1234)]}).write_parquet(path)
    assert paging.row_count(path) == 1234 and paging.page_count(1234) == math.ceil(1234 / paging.PAGE_ROWS)
    assert paging.page_count(0) == 1
    page = paging.read_page(path, 2)
    assert page["checkpoint"].to_list() == list(range(1000, 1234)) and page.columns == ["checkpoint", "test_acc"]
    assert paging.read_page(path, 3).height == 0
    path.write_bytes(b"not a parquet file")
    with pytest.raises(ZooError, match="models.parquet: not a readable table"):
        paging.read_page(path, 0)
