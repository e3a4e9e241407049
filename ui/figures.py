"""Plotly figures of the app, and reading the map's selection back. Pure functions: no Streamlit here, so
each is unit-tested directly (AppTest cannot draw a selection)."""

from __future__ import annotations

import numpy as np
import pandas  # noqa: F401 (imported whole before any figure is built: see below)
import plotly.graph_objects as go
import polars as pl
from plotly.colors import qualitative

from core.gen.frontier import frontier_envelope
from core.rep.zoom import zoom_projection
from ui.map_scale import MAX_DRAWN_POINTS, density, inside_shapes, representatives

# Why pandas is imported above: plotly checks for pandas by reading sys.modules, outside the import lock, whenever it
# validates an array. With two sessions (a reload, a second tab), one could build its first figure while the
# other's thread was still importing pandas, and fail on the half-imported module ("partially initialized module
# 'pandas' has no attribute 'Series'"; seen in the browser test). Every module that draws imports this one.

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
LOSS_COLUMNS = {  # history column -> legend name
    "loss": "training loss (total)",
    "reconstruction": "reconstruction (training)",
    "contrastive": "contrastive (training)",
    "val_reconstruction": "reconstruction (validation)",
    "behaviour": "behavioural (training)",
    "val_behaviour": "behavioural (validation)",
}
_HOVER = (
    "checkpoint %{customdata[0]}<br>model %{customdata[1]}, epoch %{customdata[2]}<br>"
    "test accuracy %{customdata[3]:.3f}<br>generalisation gap %{customdata[4]:.3f}<extra></extra>"
)


def standard_layout(figure: go.Figure, x: str, y: str, height: int, **extra) -> go.Figure:
    """Axis titles (with units), height and tight margins: the layout every figure here shares."""
    figure.update_layout(
        xaxis_title=x, yaxis_title=y, height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, **extra
    )
    return figure


def curves_layout(figure: go.Figure, height: int) -> go.Figure:
    """Axes of a fine-tuning chart: accuracy against epoch, the legend below."""
    return standard_layout(
        figure,
        "fine-tuning epoch (0 = as generated)",
        "test accuracy (fraction correct)",
        height,
        xaxis_dtick=1,
        legend={"orientation": "h", "y": -0.2},
    )


def novelty_layout(figure: go.Figure, height: int) -> go.Figure:
    """Axes of the novelty plane (Zeng et al.): accuracy as generated against error overlap with the zoo."""
    return standard_layout(
        figure,
        "max IoU of errors with any zoo model (0 = new, 1 = copy)",
        "test accuracy as generated (fraction)",
        height,
        legend={"orientation": "h", "y": -0.2},
    )


def map_table(embeddings: pl.DataFrame, zoo_table: pl.DataFrame) -> pl.DataFrame:
    """One row per checkpoint with its map position and the zoo's properties."""
    return embeddings.select("checkpoint", "split", "umap_x", "umap_y").join(zoo_table, on="checkpoint", how="left")


RUN_SYMBOLS = ("star", "diamond", "triangle-up", "square", "pentagon", "hexagram", "star-triangle-up", "cross")


UMAP_AXES = ("UMAP 1 (no unit)", "UMAP 2 (no unit)")


def map_figure(
    table: pl.DataFrame,
    colour: str,
    samples: pl.DataFrame | None = None,
    selected: list[int] | None = None,
    axes: tuple[str, str] = UMAP_AXES,
) -> go.Figure:
    """The UMAP map of the zoo (WebGL), coloured by `colour` (a COLOURINGS label); the `selected` checkpoints
    ringed over the rest, dimmed; and generated samples on top, one legend entry per samples run (a click on it
    shows or hides the run). Zoo points carry their checkpoint id as customdata[0]; sample points carry -1 and
    the ring none, so a selection reads back zoo checkpoints only (see `selected_checkpoints`). Above
    MAX_DRAWN_POINTS checkpoints, a density image of all of them and one representative point per region
    (ui/map_scale.py)."""
    table = table.with_columns(pl.col("ggap").fill_nan(None).fill_null(0.0))
    figure = go.Figure()
    chosen = set(selected or [])
    drawn, colour_range, compact = table, None, table.height > MAX_DRAWN_POINTS
    if compact:
        table = table.filter(pl.col("umap_x").is_finite() & pl.col("umap_y").is_finite())  # grid cells need both
        density_trace, colour_range = _density_trace(table, colour)
        figure.add_trace(density_trace)
        drawn = table[representatives(table["umap_x"].to_numpy(), table["umap_y"].to_numpy())]
    for trace in _zoo_traces(drawn, colour, colour_range, compact):
        # the selection at full strength, the rest faded: this alone shows a large selection (rings would merge)
        trace.marker.opacity = [0.95 if c[0] in chosen else 0.2 for c in trace.customdata] if chosen else 0.9
        figure.add_trace(trace)
    if chosen:
        figure.add_trace(_selection_ring(drawn.filter(pl.col("checkpoint").is_in(selected))))
    if samples is not None and samples.height:
        accuracy = table["test_acc"].fill_nan(None)
        scale = (accuracy.min() or 0.0, accuracy.max() or 1.0)
        for i, ((run,), group) in enumerate(samples.partition_by("samples_run", as_dict=True).items()):
            figure.add_trace(_samples_trace(run, group, RUN_SYMBOLS[i % len(RUN_SYMBOLS)], scale))
    return standard_layout(
        figure,
        *axes,
        600,
        dragmode="lasso",
        legend={"orientation": "h", "y": -0.15},
        hoverdistance=12,
    )


def _zoo_traces(
    table: pl.DataFrame, colour: str, colour_range: tuple[float, float] | None = None, compact: bool = False
) -> list[go.Scattergl]:
    """The zoo's points: one trace with a colour bar for a continuous colouring (on `colour_range` when given,
    the whole zoo's when these are its representatives), one per category otherwise; `compact`: as arrays (see
    `_points`)."""
    column, continuous = COLOURINGS[colour]
    custom = ["checkpoint", "model_id", "epoch", "test_acc", "ggap"]
    if continuous:
        marker = {
            "size": 6,
            "color": table[column].fill_nan(None).to_list(),
            "colorscale": "Viridis",
            "colorbar": {"title": {"text": colour}},
            "showscale": True,
        }
        if colour_range is not None:
            marker |= {"cmin": colour_range[0], "cmax": colour_range[1], "size": 4}
        if compact:
            marker["color"] = table[column].cast(pl.Float64).to_numpy()
        return [_points(table, "zoo checkpoints", marker, custom, compact, showlegend=False)]
    palette = qualitative.Plotly + qualitative.Dark24
    groups = table.with_columns(pl.col(column).cast(pl.String).fill_null("n/a")).partition_by(
        column, maintain_order=True, as_dict=True
    )
    ordered = sorted(groups.items(), key=lambda kv: _natural(kv[0][0]))
    return [
        _points(group, f"{colour} {key[0]}", {"size": 6, "color": palette[i % len(palette)]}, custom, compact)
        for i, (key, group) in enumerate(ordered)
    ]


def _density_trace(table: pl.DataFrame, colour: str) -> tuple[go.Heatmap, tuple[float, float] | None]:
    """Every checkpoint as a density image: each cell coloured by the mean of a continuous colouring over its
    checkpoints (on the colouring's whole range, returned for the points drawn over it), or by the log of its
    count in greys for a categorical one. No hover: the points over it carry it."""
    column, continuous = COLOURINGS[colour]
    x, y = table["umap_x"].to_numpy(), table["umap_y"].to_numpy()
    values = table[column].cast(pl.Float64).fill_null(np.nan).to_numpy() if continuous else np.ones(len(x))
    centres_x, centres_y, counts, mean = density(x, y, values)
    style, colour_range = {"colorscale": "Greys", "zmin": 0.0}, None
    z = np.where(counts > 0, np.log10(np.maximum(counts, 1)) + 1, np.nan)
    if continuous:
        finite = values[np.isfinite(values)]
        colour_range = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        z, style = mean, {"colorscale": "Viridis", "zmin": colour_range[0], "zmax": colour_range[1]}
    heatmap = go.Heatmap(
        x=centres_x, y=centres_y, z=z, showscale=False, hoverinfo="skip", name="all checkpoints (density)", **style
    )
    return heatmap, colour_range


def _points(
    rows: pl.DataFrame, name: str, marker: dict, custom: list[str], compact: bool = False, **extra
) -> go.Scattergl:
    """Points with their hover data; `compact`: as numpy arrays, which plotly sends as base64 bytes without
    validating them element by element as it does lists (5 s for 14,000 points' hover data on a busy 2-core
    machine). Lists otherwise: the figure's JSON then reads as plain values."""
    if compact:
        x, y = rows["umap_x"].to_numpy(), rows["umap_y"].to_numpy()
        customdata = rows.select(pl.col(custom).cast(pl.Float64)).to_numpy(order="c")
    else:
        x, y, customdata = rows["umap_x"].to_list(), rows["umap_y"].to_list(), rows.select(custom).rows()
    return go.Scattergl(
        x=x,
        y=y,
        mode="markers",
        name=name,
        customdata=customdata,
        hovertemplate=_HOVER,
        marker=marker,
        **extra,
    )


def _selection_ring(rows: pl.DataFrame) -> go.Scattergl:
    """A ring around each selected checkpoint: the selection stays visible after the page reruns or is left, when
    the chart's own box or lasso is gone. No customdata and no hover, so it never enters a new selection."""
    return go.Scattergl(
        x=rows["umap_x"].to_list(),
        y=rows["umap_y"].to_list(),
        mode="markers",
        name=f"selected ({rows.height})",
        marker={"size": 9, "color": "rgba(0,0,0,0)", "line": {"width": 1, "color": "rgba(20,20,20,0.25)"}},
        hoverinfo="skip",
    )


def _samples_trace(run: str, rows: pl.DataFrame, symbol: str, scale: tuple[float, float]) -> go.Scatter:
    """One samples run: its own marker, coloured by accuracy as generated on the zoo's accuracy range (the map's
    colour bar when it shows test accuracy). SVG, not WebGL, so the markers sit over the zoo's canvas, and
    larger than the zoo's points, so the pointer over one gets its hover rather than the checkpoint beneath."""
    return go.Scatter(
        x=rows["umap_x"].to_list(),
        y=rows["umap_y"].to_list(),
        mode="markers",
        name=f"generated: {run}",
        legendgroup=run,
        customdata=[[-1, run, s, a0, af] for s, a0, af in rows.select("sample", "acc_epoch0", "acc_final").rows()],
        hovertemplate="generated: %{customdata[1]} #%{customdata[2]}<br>accuracy as generated "
        "%{customdata[3]:.3f}, after fine-tuning %{customdata[4]:.3f}<extra></extra>",
        marker={
            "symbol": symbol,
            "size": 15,
            "color": rows["acc_epoch0"].to_list(),
            "colorscale": "Viridis",
            "cmin": scale[0],
            "cmax": scale[1],
            "line": {"width": 1.5, "color": "#ff2d55"},
        },
    )


def zoomed_table(table: pl.DataFrame, embeddings: pl.DataFrame, selected: list[int]) -> pl.DataFrame:
    """The selected rows of the map table, placed by a projection of their embeddings alone (core/rep/zoom.py)
    instead of the global map: the map's x and y columns are replaced, so the map figure draws it unchanged."""
    chosen = embeddings.filter(pl.col("checkpoint").is_in(selected)).sort("checkpoint")
    xy = zoom_projection(np.stack(chosen["embedding"].to_numpy()))
    positions = pl.DataFrame({"checkpoint": chosen["checkpoint"], "umap_x": xy[:, 0], "umap_y": xy[:, 1]})
    return table.drop("umap_x", "umap_y").join(positions, on="checkpoint", how="inner")


def _natural(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def selected_checkpoints(selection: dict | None, table: pl.DataFrame | None = None) -> list[int]:
    """Checkpoint ids of the zoo points in a Streamlit plotly selection (samples and duplicates dropped). On a map
    too large to draw every point (`table`, the map's, above MAX_DRAWN_POINTS rows), every checkpoint inside the
    selection's boxes and lassos, not only the representatives drawn.

    Point indices are per trace and collide when a colouring splits the zoo into traces; the checkpoint id
    travels with each point as customdata[0] instead. A large map's points carry their customdata as a typed
    array, which comes back from the browser as an object keyed "0", "1", ... (seen in headless Chromium)."""
    if not selection:
        return []
    ids: list[int] = []
    if table is not None and table.height > MAX_DRAWN_POINTS:
        inside = inside_shapes(table["umap_x"].to_numpy(), table["umap_y"].to_numpy(), selection)
        ids += table["checkpoint"].filter(pl.Series(inside)).to_list()
    for point in selection.get("points", []):
        data = point.get("customdata")
        if data is None or len(data) == 0:
            continue
        try:
            checkpoint = int(data["0"] if isinstance(data, dict) else data[0])
        except (TypeError, ValueError, KeyError):
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
    return standard_layout(
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
            go.Scatter(
                x=history["epoch"].to_list(),
                y=history[column].to_list(),
                mode="lines+markers",
                name=LOSS_COLUMNS[column],
            )
        )
    # Full numbers at every tick: a log axis within a decade or two labels only the leading digit ("2, 1, 5").
    # No unit: the reconstruction is layer-normalised, the behavioural loss a distance between outputs (the caption
    # under the chart says which); the legend below, so six curves leave the plot its width.
    return standard_layout(
        figure,
        "epoch",
        "loss (no unit)",
        400,
        yaxis={"type": "log", "tickformat": ".2~g"},
        legend={"orientation": "h", "y": -0.2},
    )


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
    return curves_layout(figure, 460)


SELECTION_WORDS = {
    "none": "no selection",
    "subsample": "best of {candidates} draws on validation",
    "bootstrap": "bootstrapped on validation",
    "diverse": "greedy ensemble selection on validation",
}


def frontier_selection(noise_frontier: list[dict]) -> str:
    """How the frontier's draws were kept (the generated models' own selection), in words; '' for runs from
    before the baselines were selected."""
    how = noise_frontier[0].get("selection") if noise_frontier else None
    if not how:
        return ""
    return SELECTION_WORDS.get(how["mode"], how["mode"]).format(candidates=how.get("candidates", "?"))


def novelty_figure(novelty_table: pl.DataFrame, noise_frontier: list[dict] | None = None) -> go.Figure:
    """Accuracy as generated against the largest overlap of misclassified test images with any zoo model
    (Zeng et al.'s plane): copies sit at the top right. The noise baseline's frontier (its median at each noise
    scale, kept by the generated models' selection), when given, is a line, its upper envelope: samples above it
    are better than adding noise at the same novelty."""
    figure = go.Figure()
    if noise_frontier:
        x, y, text = frontier_envelope(noise_frontier)
        kept = frontier_selection(noise_frontier)
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=f"anchor + noise at {len(x)} scales (median{', ' + kept if kept else ''}; upper envelope)",
                line={"color": GROUP_STYLE["noise"][1], "dash": "dash"},
                text=text,
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
    return novelty_layout(figure, 460)


def end_label(end: int | str) -> str:
    """A latent path's end in words: a checkpoint id, or a generated model named RUN:I (core/gen/path.py)."""
    if isinstance(end, str):
        run, _, index = end.rpartition(":")
        return f"generated model {index} of {run}"
    return f"checkpoint {end}"


def path_figure(path: pl.DataFrame, ends: tuple[int, int | str], at: float | None = None) -> go.Figure:
    """Test accuracy along the straight line between two models: through the autoencoder's latent space
    (decoded) and through weight space (the loss barrier), against the position t on the line; a dotted line marks
    the point `at` chosen for decoding."""
    figure = go.Figure()
    for column, name, colour in (
        ("latent", "latent line, decoded", GROUP_STYLE["generated"][1]),
        ("weights", "weight-space line (aligned weights)", GROUP_STYLE["anchors"][1]),
    ):
        figure.add_trace(
            go.Scatter(
                x=path["t"].to_list(), y=path[column].to_list(), mode="lines+markers", name=name, line={"color": colour}
            )
        )
    if at is not None:
        figure.add_vline(x=at, line={"dash": "dot", "color": "grey", "width": 1})
    return standard_layout(
        figure,
        f"position t on the line (0 = {end_label(ends[0])}, 1 = {end_label(ends[1])})",
        "test accuracy (fraction correct)",
        380,
        legend={"orientation": "h", "y": -0.25},
    )
