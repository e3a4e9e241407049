"""The Generate page's comparison of samples runs: the table, the curves and the novelty plane."""

from types import SimpleNamespace

import polars as pl

from ui.compare import comparison_curves, comparison_novelty, comparison_rows, comparison_table


def fake_run(
    name: str, method: str, curve: list[float], seconds: float | None, rows=None, ensembles=None
) -> SimpleNamespace:
    samples = pl.DataFrame({"max_iou": [0.4, 0.6], "acc_epoch0": [curve[0] - 0.01, curve[0] + 0.01]})
    return SimpleNamespace(
        name=name,
        method=method,
        n=2,
        config={"spread": 1.0},
        spread=1.0,  # SamplesRun.spread: the spread drawn at
        selection={"mode": "none"},
        anchors={"count": 5},
        curves={"generated": curve, "random_init": [0.1, 0.5, 0.7]},
        novelty={"max_iou_median": 0.5, "min_l2_median": 3.0},
        extra={} if seconds is None else {"seconds": seconds},
        ensembles=ensembles,
        samples_table=lambda: samples,
        interval_rows=lambda: {"generated": rows} if rows else {},
    )


def test_runs_compare_in_one_table_one_curve_chart_and_one_novelty_plane():
    ensemble = {f: {"mean": m, "lo": m - 0.01, "hi": m + 0.01} for f, m in (("acc", 0.93), ("nll", 0.25))}
    rows = [{"lo": 0.55, "hi": 0.65}, {"lo": 0.7, "hi": 0.9}, {"lo": 0.88, "hi": 0.92}]
    runs = [
        fake_run("kde-1", "kde", [0.6, 0.8, 0.9], 4.2, rows, {"generated": {"2": ensemble}}),
        fake_run("gauss-2", "gauss", [0.3, 0.7, 0.85], None),
    ]
    table = comparison_table(runs)
    # runs made before intervals were recorded have none
    assert table["95% interval as generated"].to_list() == ["0.550–0.650", None]
    assert table["95% interval after fine-tuning"].to_list() == ["0.880–0.920", None]
    assert table["run"].to_list() == ["kde-1", "gauss-2"]
    assert table["acc as generated"].to_list() == [0.6, 0.3] and table["acc after fine-tuning"].to_list() == [0.9, 0.85]
    assert table["fine-tuning epochs"].to_list() == [2, 2]
    # the ensemble of the run's n generated models; empty for runs whose ensembles were not evaluated
    assert table["ensemble acc"].to_list() == [0.93, None] and table["ensemble NLL"].to_list() == [0.25, None]
    assert table["seconds"].to_list() == [4.2, None]  # runs made before durations were recorded
    curves = comparison_curves(runs)
    assert [t.name for t in curves.data] == ["kde-1", "gauss-2", "random init"]
    assert list(curves.data[1].y) == [0.3, 0.7, 0.85]
    plane = comparison_novelty(runs)
    assert [t.name for t in plane.data] == ["kde-1", "gauss-2"] and list(plane.data[0].x) == [0.4, 0.6]


def test_the_page_shows_the_comparison_sideways_one_column_per_run():
    # one row per run needed sideways scrolling (16 columns); one column per run fits the three compared by default
    table = comparison_table(
        [fake_run("kde-1", "kde", [0.9, 0.95], 3.0), fake_run("gauss-2", "gauss", [0.8, 0.9], None)]
    )
    shown = comparison_rows(table)
    assert shown.columns == ["figure", "kde-1", "gauss-2"] and shown.height == len(table.columns) - 1
    cells = {row["figure"]: (row["kde-1"], row["gauss-2"]) for row in shown.iter_rows(named=True)}
    assert cells["sampler"] == ("kde", "gauss") and cells["acc as generated"] == ("0.900", "0.800")
    assert cells["models"] == ("2", "2") and cells["seconds"] == ("3.000", "")  # empty: not recorded
