"""The app's figures and the map selection, which AppTest cannot draw."""

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ui.figures import (
    COLOURINGS,
    accuracy_histogram,
    curves_figure,
    loss_figure,
    map_figure,
    map_table,
    novelty_figure,
    selected_checkpoints,
    selection_summary,
)


@pytest.fixture
def table():
    zoo = pl.DataFrame(
        {
            "checkpoint": [10, 11, 12, 13],
            "model_id": [0, 0, 1, 1],
            "epoch": [0, 5, 0, 5],
            "seed": [7, 7, 8, 8],
            "init_seed": [0, 0, 1, 1],
            "architecture": ["cnn-small", "cnn-small", "resnet", "resnet"],
            "test_acc": [0.1, 0.9, 0.12, 0.8],
            "ggap": [0.0, 0.05, float("nan"), 0.02],
        }
    )
    embeddings = pl.DataFrame(
        {"checkpoint": [13, 12, 11, 10], "split": ["train"] * 4, "umap_x": [4.0, 3, 2, 1], "umap_y": [0.0, 1, 0, 1]}
    )
    return map_table(embeddings, zoo)


def test_map_rows_join_positions_to_properties(table):
    row = table.filter(pl.col("checkpoint") == 11).row(0, named=True)
    assert (row["umap_x"], row["test_acc"], row["epoch"]) == (2.0, 0.9, 5)


@pytest.mark.parametrize("colour", list(COLOURINGS))
def test_every_colouring_carries_each_checkpoint_once_as_customdata(table, colour):
    figure = map_figure(table, colour)
    ids = [int(c[0]) for trace in figure.data for c in trace.customdata]
    assert sorted(ids) == [10, 11, 12, 13]
    assert figure.layout.dragmode == "lasso" and figure.layout.xaxis.title.text


def test_categorical_colouring_splits_traces_and_samples_are_drawn_apart(table):
    samples = pl.DataFrame(
        {
            "samples_run": ["kde-1"],
            "sample": [0],
            "acc_epoch0": [0.5],
            "acc_final": [0.9],
            "umap_x": [2.5],
            "umap_y": [0.5],
        }
    )
    samples = pl.concat([samples, samples.with_columns(pl.lit("gauss-2").alias("samples_run"), acc_epoch0=pl.lit(0.2))])
    figure = map_figure(table, "init", samples)
    assert [t.name for t in figure.data] == ["init 0", "init 1", "generated: kde-1", "generated: gauss-2"]
    kde, gauss = figure.data[-2:]
    assert kde.type == "scatter" and kde.customdata[0][0] == -1  # SVG over the zoo's WebGL canvas
    assert kde.marker.symbol != gauss.marker.symbol  # one marker per run
    assert (list(kde.marker.color), list(gauss.marker.color)) == ([0.5], [0.2])  # coloured by accuracy...
    assert (kde.marker.cmin, kde.marker.cmax) == (0.1, 0.9)  # ...on the zoo's accuracy range
    assert kde.marker.size > figure.data[0].marker.size  # the pointer finds a sample before the point beneath


def test_the_selection_is_drawn_back_as_rings_over_dimmed_points(table):
    plain = map_figure(table, "test accuracy")
    figure = map_figure(table, "test accuracy", selected=[11, 13])
    ring = figure.data[-1]
    assert ring.name == "selected (2)" and sorted(ring.x) == [2.0, 4.0] and ring.customdata is None
    assert ring.hoverinfo == "skip"  # the ring neither hovers nor enters a new selection
    opacity = dict(zip([c[0] for c in figure.data[0].customdata], figure.data[0].marker.opacity, strict=True))
    assert opacity[11] == opacity[13] > plain.data[0].marker.opacity / 2 > opacity[10] == opacity[12]


def test_selection_reads_checkpoint_ids_not_per_trace_indices():
    # Two traces (a categorical colouring): point_index 0 appears twice; a generated sample is selected too.
    selection = {
        "points": [
            {"curve_number": 0, "point_index": 0, "customdata": [12, 1, 0, 0.12, 0.0]},
            {"curve_number": 1, "point_index": 0, "customdata": [10, 0, 0, 0.1, 0.0]},
            {"curve_number": 1, "point_index": 1, "customdata": [10, 0, 0, 0.1, 0.0]},
            {"curve_number": 2, "point_index": 0, "customdata": [-1, "kde-1", 0, 0.5, 0.9]},
            {"curve_number": 0, "point_index": 3},
        ],
        "point_indices": [0, 0, 1, 0, 3],
    }
    assert selected_checkpoints(selection) == [10, 12]
    assert selected_checkpoints(None) == [] and selected_checkpoints({"points": []}) == []


def test_selection_summary(table):
    summary = selection_summary(table, [11, 12, 13])
    assert summary["checkpoints"] == 3 and summary["models"] == 2
    assert (summary["acc_min"], summary["acc_max"]) == (0.12, 0.9)
    assert summary["acc_mean"] == pytest.approx((0.9 + 0.12 + 0.8) / 3)
    assert summary["epochs"] == {0: 1, 5: 2}
    assert selection_summary(table, [])["checkpoints"] == 0


def test_curves_show_mean_and_band_per_group():
    curves = pl.DataFrame(
        {
            "group": ["generated"] * 2 + ["random_init"] * 2 + ["noise"] * 2,
            "epoch": [0, 1] * 3,
            "acc_mean": [0.5, 0.8, 0.1, 0.6, 0.4, 0.7],
            "acc_std": [0.1, 0.05, 0.0, 0.1, 0.1, 0.1],
        }
    )
    figure = curves_figure(curves)
    lines = {t.name: list(t.y) for t in figure.data if t.name}
    assert lines["generated"] == [0.5, 0.8] and lines["random init"] == [0.1, 0.6] and "anchor + noise" in lines
    band = next(t for t in figure.data if t.fill == "toself")
    assert list(band.y) == pytest.approx([0.6, 0.85, 0.75, 0.4])
    curves = curves.with_columns(pl.lit(0.3).alias("acc_std"))
    band = next(t for t in curves_figure(curves).data if t.fill == "toself")
    assert max(band.y) == 1.0 and min(band.y) == 0.2  # the band stays within [0, 1]
    assert "anchor + noise" not in {t.name for t in curves_figure(curves, show_simple_baselines=False).data}


def test_accuracy_histogram_has_one_trace_per_saved_epoch(table):
    figure = accuracy_histogram(table)
    assert [t.name for t in figure.data] == ["epoch 0", "epoch 5"]
    assert sorted(figure.data[1].x) == [0.8, 0.9]


def test_the_novelty_plane_draws_the_noise_frontier_as_a_line():
    plane = pl.DataFrame({"group": ["generated", "noise"], "acc_epoch0": [0.9, 0.8], "min_l2": [1.0, 1.0]})
    plane = plane.with_columns(pl.Series("max_iou", [0.5, 0.6]))
    frontier = [
        {"scale": 0.2, "acc_mean": 0.7, "max_iou_median": 0.4},
        {"scale": 0.05, "acc_mean": 0.95, "max_iou_median": 0.8},
    ]
    figure = novelty_figure(plane, frontier)
    line = next(trace for trace in figure.data if trace.mode == "lines+markers")
    assert list(line.x) == [0.4, 0.8] and list(line.y) == [0.7, 0.95]  # ordered along the novelty axis
    assert len(novelty_figure(plane).data) == 2  # without a frontier: the points alone


def test_the_noise_frontier_is_drawn_as_its_upper_envelope_with_its_selection():
    plane = pl.DataFrame({"group": ["generated"], "acc_epoch0": [0.9], "min_l2": [1.0], "max_iou": [0.5]})
    kept = {"mode": "subsample", "candidates": 4, "drawn_mean": 0.8, "kept_mean": 0.85}
    frontier = [  # scale 0.4 collapses: a higher overlap than 0.2's (the zoo's untrained checkpoints), less accurate
        {"scale": 0.4, "acc_mean": 0.3, "max_iou_median": 0.45, "selection": kept},
        {"scale": 0.2, "acc_mean": 0.7, "max_iou_median": 0.3, "selection": kept},
        {"scale": 0.05, "acc_mean": 0.95, "max_iou_median": 0.8, "selection": kept},
    ]
    line = next(trace for trace in novelty_figure(plane, frontier).data if trace.mode == "lines+markers")
    assert list(line.x) == [0.3, 0.45, 0.8] and list(line.y) == [0.7, 0.7, 0.95]  # only rises as novelty falls
    assert "best of 4 draws on validation" in line.name and "upper envelope" in line.name
    assert "scale 0.2 does better" in line.text[1]


def test_the_loss_chart_draws_the_behavioural_loss_beside_the_reconstruction():
    history = pl.DataFrame(
        {"epoch": [1, 2], "loss": [2.0, 0.1], "reconstruction": [1.0, 3.0], "behaviour": [1.9, 0.05]}
    ).with_columns(pl.Series("val_behaviour", [1.8, 0.06]))
    lines = {t.name: list(t.y) for t in loss_figure(history).data}
    assert lines["behavioural (training)"] == [1.9, 0.05] and lines["behavioural (validation)"] == [1.8, 0.06]
    assert lines["reconstruction (training)"] == [1.0, 3.0]


def test_the_loss_chart_names_its_curves_and_writes_whole_tick_labels():
    history = pl.DataFrame({"epoch": [1, 2], "loss": [2.0, 0.1], "val_reconstruction": [1.5, 0.2]})
    figure = loss_figure(history)
    assert [t.name for t in figure.data] == ["training loss (total)", "reconstruction (validation)"]
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis.tickformat == ".2~g"


def test_drawing_modules_import_pandas_whole_before_any_figure():
    """plotly peeks at sys.modules for pandas outside the import lock: a second session building its first figure
    while another thread imports pandas saw a half-imported module. ui.figures imports it whole first."""
    code = (
        "import sys; import ui.figures, ui.compare, ui.ensembles; "
        "assert hasattr(sys.modules['pandas'], 'Series'), 'pandas not imported whole'"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False)
    assert done.returncode == 0, done.stderr
