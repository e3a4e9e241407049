"""Plotly figures of the app, and reading the map's selection back. Pure functions: no Streamlit here, so
each is unit-tested directly (AppTest cannot draw a selection)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.colors import qualitative

# Map colourings: label -> (column, continuous?)
COLOURINGS: dict[str, tuple[str, bool]] = {
    "test accuracy": ("test_acc", True),
    "epoch": ("epoch", True),
    "generalisation gap": ("ggap", True),
    "seed": ("seed", True),
    "init": ("init_seed", False),
    "architecture": ("architecture", False),
    "autoencoder split": ("split", False),
}
GROUP_STYLE = {  # fine-tuning groups: (label, colour, dash)
    "generated": ("generated", "#d62728", "solid"),
    "anchors": ("selected zoo models (anchors)", "#1f77b4", "solid"),
    "random_init": ("random init", "#7f7f7f", "solid"),
    "noise": ("anchor + noise", "#9467bd", "dot"),
    "average": ("average of 3 anchors", "#8c564b", "dot"),
    "weight_gauss": ("per-weight Gaussian", "#e377c2", "dot"),
}
LOSS_COLUMNS = ("loss", "reconstruction", "contrastive", "val_reconstruction")
_HOVER = (
    "checkpoint %{customdata[0]}<br>model %{customdata[1]}, epoch %{customdata[2]}<br>"
    "test accuracy %{customdata[3]:.3f}<br>generalisation gap %{customdata[4]:.3f}<extra></extra>"
)


def _layout(figure: go.Figure, x: str, y: str, height: int, **extra) -> go.Figure:
    """Axis titles (with units), height and tight margins: the layout every figure here shares."""
    figure.update_layout(
        xaxis_title=x, yaxis_title=y, height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, **extra
    )
    return figure


def map_table(embeddings: pl.DataFrame, zoo_table: pl.DataFrame) -> pl.DataFrame:
    """One row per checkpoint with its map position and the zoo's properties."""
    return embeddings.select("checkpoint", "split", "umap_x", "umap_y").join(zoo_table, on="checkpoint", how="left")


def map_figure(table: pl.DataFrame, colour: str, samples: pl.DataFrame | None = None) -> go.Figure:
    """The UMAP map of the zoo (WebGL), coloured by `colour` (a COLOURINGS label), with generated samples
    drawn over it as stars. Zoo points carry their checkpoint id as customdata[0]; sample points carry -1, so
    a selection reads back zoo checkpoints only (see `selected_checkpoints`)."""
    column, continuous = COLOURINGS[colour]
    custom = ["checkpoint", "model_id", "epoch", "test_acc", "ggap"]
    table = table.with_columns(pl.col("ggap").fill_nan(None).fill_null(0.0))
    figure = go.Figure()
    if continuous:
        figure.add_trace(
            go.Scattergl(
                x=table["umap_x"].to_list(),
                y=table["umap_y"].to_list(),
                mode="markers",
                name="zoo checkpoints",
                customdata=table.select(custom).rows(),
                hovertemplate=_HOVER,
                marker={
                    "size": 6,
                    "color": table[column].fill_nan(None).to_list(),
                    "colorscale": "Viridis",
                    "colorbar": {"title": {"text": colour}},
                    "showscale": True,
                },
                showlegend=False,
            )
        )
    else:
        palette = qualitative.Plotly + qualitative.Dark24
        groups = table.with_columns(pl.col(column).cast(pl.String).fill_null("n/a")).partition_by(
            column, maintain_order=True, as_dict=True
        )
        for i, (key, group) in enumerate(sorted(groups.items(), key=lambda kv: _natural(kv[0][0]))):
            figure.add_trace(
                go.Scattergl(
                    x=group["umap_x"].to_list(),
                    y=group["umap_y"].to_list(),
                    mode="markers",
                    name=f"{colour} {key[0]}",
                    customdata=group.select(custom).rows(),
                    hovertemplate=_HOVER,
                    marker={"size": 6, "color": palette[i % len(palette)]},
                )
            )
    if samples is not None and samples.height:
        figure.add_trace(
            go.Scattergl(
                x=samples["umap_x"].to_list(),
                y=samples["umap_y"].to_list(),
                mode="markers",
                name="generated samples",
                customdata=[
                    [-1, r, s, a0, af]
                    for r, s, a0, af in samples.select("samples_run", "sample", "acc_epoch0", "acc_final").rows()
                ],
                hovertemplate="generated: %{customdata[1]} #%{customdata[2]}<br>accuracy as generated "
                "%{customdata[3]:.3f}, after fine-tuning %{customdata[4]:.3f}<extra></extra>",
                marker={"symbol": "star", "size": 12, "color": "#ff2d55", "line": {"width": 1, "color": "black"}},
            )
        )
    return _layout(
        figure, "UMAP 1 (no unit)", "UMAP 2 (no unit)", 600, dragmode="lasso", legend={"orientation": "h", "y": -0.15}
    )


def _natural(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def selected_checkpoints(selection: dict | None) -> list[int]:
    """Checkpoint ids of the zoo points in a Streamlit plotly selection (samples and duplicates dropped).

    Point indices are per trace and collide when a colouring splits the zoo into traces; the checkpoint id
    travels with each point as customdata[0] instead."""
    if not selection:
        return []
    ids: list[int] = []
    for point in selection.get("points", []):
        data = point.get("customdata")
        if data is None or len(data) == 0:
            continue
        try:
            checkpoint = int(data[0])
        except (TypeError, ValueError):
            continue
        if checkpoint >= 0:
            ids.append(checkpoint)
    return sorted(set(ids))


def selection_summary(table: pl.DataFrame, checkpoints: list[int]) -> dict:
    """Count, model count, accuracy range and epoch counts of the selected checkpoints."""
    chosen = table.filter(pl.col("checkpoint").is_in(checkpoints))
    if not chosen.height:
        return {"checkpoints": 0, "models": 0}
    epochs = chosen.group_by("epoch").len().sort("epoch")
    return {
        "checkpoints": chosen.height,
        "models": chosen["model_id"].n_unique(),
        "acc_min": float(chosen["test_acc"].min()),
        "acc_mean": float(chosen["test_acc"].mean()),
        "acc_max": float(chosen["test_acc"].max()),
        "epochs": dict(zip(epochs["epoch"].to_list(), epochs["len"].to_list(), strict=True)),
    }


def accuracy_histogram(zoo_table: pl.DataFrame) -> go.Figure:
    """Test accuracy of the zoo's checkpoints, one overlaid histogram per saved epoch."""
    figure = go.Figure()
    for (epoch,), group in sorted(zoo_table.partition_by("epoch", as_dict=True).items()):
        figure.add_trace(go.Histogram(x=group["test_acc"].to_list(), name=f"epoch {epoch}", opacity=0.65, nbinsx=40))
    return _layout(
        figure,
        "test accuracy (fraction correct)",
        "checkpoints (count)",
        380,
        barmode="overlay",
        legend_title="saved epoch",
    )


def loss_figure(history: pl.DataFrame) -> go.Figure:
    """Autoencoder training curves: the losses of the history against epoch (log scale)."""
    figure = go.Figure()
    for column in (c for c in LOSS_COLUMNS if c in history.columns):
        figure.add_trace(
            go.Scatter(x=history["epoch"].to_list(), y=history[column].to_list(), mode="lines+markers", name=column)
        )
    return _layout(figure, "epoch", "loss (layer-normalised, no unit)", 360, yaxis_type="log")


def curves_figure(curves: pl.DataFrame, show_simple_baselines: bool = True) -> go.Figure:
    """Mean test accuracy (band: +-1 std over models) per fine-tuning epoch, for each group."""
    figure = go.Figure()
    for group, (label, colour, dash) in GROUP_STYLE.items():
        rows = curves.filter(pl.col("group") == group).sort("epoch")
        if not rows.height or (dash == "dot" and not show_simple_baselines):
            continue
        epochs, mean, std = rows["epoch"].to_list(), rows["acc_mean"].to_numpy(), rows["acc_std"].to_numpy()
        if dash == "solid":
            figure.add_trace(
                go.Scatter(
                    x=epochs + epochs[::-1],
                    y=list(np.minimum(mean + std, 1.0)) + list(np.maximum(mean - std, 0.0))[::-1],
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.15,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
        figure.add_trace(
            go.Scatter(
                x=epochs,
                y=mean.tolist(),
                mode="lines+markers",
                name=label,
                line={"color": colour, "dash": dash, "width": 3 if group == "generated" else 2},
            )
        )
    return _layout(
        figure,
        "fine-tuning epoch (0 = as generated)",
        "test accuracy (fraction correct)",
        460,
        xaxis_dtick=1,
        legend={"orientation": "h", "y": -0.2},
    )


def novelty_figure(novelty_table: pl.DataFrame, noise_frontier: list[dict] | None = None) -> go.Figure:
    """Accuracy as generated against the largest overlap of misclassified test images with any zoo model
    (Zeng et al.'s plane): copies sit at the top right. The noise baseline's frontier (its median at each noise
    scale), when given, is a line: samples above it are better than adding noise at the same novelty."""
    figure = go.Figure()
    if noise_frontier:
        points = sorted(noise_frontier, key=lambda p: p["max_iou_median"])
        figure.add_trace(
            go.Scatter(
                x=[p["max_iou_median"] for p in points],
                y=[p["acc_mean"] for p in points],
                mode="lines+markers",
                name="anchor + noise at 5 scales (median)",
                line={"color": GROUP_STYLE["noise"][1], "dash": "dash"},
                text=[f"noise {p['scale']:g} x layer std" for p in points],
                hovertemplate="%{text}<br>max IoU %{x:.2f}, accuracy %{y:.3f}<extra></extra>",
            )
        )
    for group, (label, colour, _) in GROUP_STYLE.items():
        rows = novelty_table.filter(pl.col("group") == group)
        if rows.height:
            figure.add_trace(
                go.Scatter(
                    x=rows["max_iou"].to_list(),
                    y=rows["acc_epoch0"].to_list(),
                    mode="markers",
                    name=label,
                    marker={"color": colour, "size": 9 if group == "generated" else 7},
                )
            )
    return _layout(
        figure,
        "max IoU of errors with any zoo model (0 = new, 1 = copy)",
        "test accuracy as generated (fraction)",
        460,
        legend={"orientation": "h", "y": -0.2},
    )
