"""Several samples runs side by side (the Generate page's comparison): one table of their figures, their
generated models' fine-tuning curves together, and their models on one novelty plane. Pure functions of the
runs, so they are unit-tested without Streamlit."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
from plotly.colors import qualitative

from core.store.runs import SamplesRun
from ui.ensembles import ensemble_columns
from ui.figures import GROUP_STYLE, curves_layout, novelty_layout
from ui.intervals import accuracy_range

# What the less obvious rows of the comparison mean (a caption under the table).
MEANINGS = {
    "max IoU (median)": "median over models of the largest overlap of their errors with any zoo model's (1 = a copy)",
    "min L2 (median)": "median over models of the distance to the nearest zoo model",
    "ensemble acc": "test accuracy of the averaged softmax of all the run's generated models (empty: not evaluated)",
    "ensemble NLL": "test NLL of that ensemble, in nats; lower is better (empty: not evaluated)",
}


def comparison_table(runs: list[SamplesRun]) -> pl.DataFrame:
    """One row per run: sampler and settings, generated models' mean accuracy as generated and after fine-tuning
    with their 95% intervals over models, the median novelty figures, the accuracy and NLL of the ensemble of
    its n generated models, and how long the run took (None for runs made before intervals or durations were
    recorded, or whose ensembles were not evaluated)."""
    return pl.DataFrame(
        [
            {
                "run": run.name,
                "sampler": run.method,
                "spread": run.spread,
                "selection": run.selection.get("mode"),
                "models": run.n,
                "anchors": run.anchors["count"],
                "acc as generated": run.curves["generated"][0],
                "95% interval as generated": accuracy_range(run, "generated", 0),
                "fine-tuning epochs": len(run.curves["generated"]) - 1,  # runs may differ: one column each
                "acc after fine-tuning": run.curves["generated"][-1],
                "95% interval after fine-tuning": accuracy_range(run, "generated", -1),
                "max IoU (median)": run.novelty["max_iou_median"],
                "min L2 (median)": run.novelty["min_l2_median"],
                **ensemble_columns(run),
                "seconds": run.extra.get("seconds"),
            }
            for run in runs
        ],
        strict=False,
    )


def comparison_rows(table: pl.DataFrame) -> pl.DataFrame:
    """The comparison sideways, for the page: one row per figure and one column per run, each cell as text (3
    decimals; empty where a run has no such figure). Its width grows with the runs compared (three by default),
    not with its 15 figures: one row per run needed sideways scrolling on a 1,400-pixel screen."""
    runs = table["run"].to_list()
    return pl.DataFrame(
        [
            {"figure": column, **{run: _cell(value) for run, value in zip(runs, table[column].to_list(), strict=True)}}
            for column in table.columns
            if column != "run"
        ],
        schema=["figure", *runs],
    )


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _colour(i: int) -> str:
    palette = qualitative.Plotly
    return palette[i % len(palette)]


def comparison_curves(runs: list[SamplesRun]) -> go.Figure:
    """Each run's generated models' mean test accuracy per fine-tuning epoch, with the first run's random init
    as the reference line (every run fine-tunes random init the same way)."""
    figure = go.Figure()
    for i, run in enumerate(runs):
        curve = run.curves["generated"]
        figure.add_trace(
            go.Scatter(
                x=list(range(len(curve))),
                y=curve,
                mode="lines+markers",
                name=run.name,
                line={"color": _colour(i), "width": 3},
            )
        )
    if runs and "random_init" in runs[0].curves:
        label, colour, _ = GROUP_STYLE["random_init"]
        curve = runs[0].curves["random_init"]
        figure.add_trace(
            go.Scatter(
                x=list(range(len(curve))), y=curve, mode="lines", name=label, line={"color": colour, "dash": "dot"}
            )
        )
    return curves_layout(figure, 420)


def comparison_novelty(runs: list[SamplesRun]) -> go.Figure:
    """Every run's generated models on the novelty plane: accuracy as generated against the largest overlap of
    their test errors with any zoo model's (copies sit at the top right)."""
    figure = go.Figure()
    for i, run in enumerate(runs):
        rows = run.samples_table()
        figure.add_trace(
            go.Scatter(
                x=rows["max_iou"].to_list(),
                y=rows["acc_epoch0"].to_list(),
                mode="markers",
                name=run.name,
                marker={"color": _colour(i), "size": 9},
            )
        )
    return novelty_layout(figure, 420)
