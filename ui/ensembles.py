"""A samples run as an ensemble (core/gen/ensemble.py, core/gen/ensemble_groups.py): the chart of ensemble
accuracy or NLL against the number of members for each group, and the figures the Generate page's metric and the
run comparison read. Pure functions of the run's record, unit-tested without Streamlit; a run whose ensembles
were never evaluated gives None (no chart, empty cells)."""

from __future__ import annotations

import plotly.graph_objects as go

from core.store.runs import SamplesRun
from ui.figures import standard_layout

# group -> (legend label, colour, dash, what it is). The deep ensemble is the one dashed line: the line to reach.
ENSEMBLE_STYLE = {
    "generated": ("generated", "#d62728", "solid", "the generated models as decoded, before fine-tuning"),
    "finetuned": ("generated, fine-tuned", "#ff7f0e", "solid", "the same models after fine-tuning"),
    "anchors": ("source anchors", "#1f77b4", "solid", "the zoo checkpoint each generated model was drawn around"),
    "anchors_finetuned": (
        "source anchors, fine-tuned",
        "#17becf",
        "solid",
        "the same anchors after the same fine-tuning: what the fine-tuned generated models are compared with",
    ),
    "noise": ("anchor + noise", "#9467bd", "dot", "an anchor plus noise, kept by the same selection"),
    "average": ("average of 3 anchors", "#8c564b", "dot", "the mean of three random anchors, same selection"),
    "deep": ("deep ensemble", "#2ca02c", "dash", "N zoo models trained independently: the ensemble to reach"),
}
# Shown from the legend only: averages of three anchors ensemble tens of points below every other group at small
# sizes (0.45 against 0.94 alone on the digits default), and the axis drawn to fit them flattens the others into
# one line. Off, the axis fits the groups worth telling apart; a click on the legend brings it back.
LEGEND_ONLY = frozenset({"average"})
FIGURES = {  # figure -> (toggle label, axis title)
    "acc": ("Accuracy", "test accuracy, averaged softmax"),
    "nll": ("NLL", "test NLL, averaged softmax (lower: better)"),
}


def groups_help() -> str:
    """What each group is, one line each (the section's help)."""
    return "\n".join(f"- {label}: {what}" for label, _, _, what in ENSEMBLE_STYLE.values())


def ensemble_figure(ensembles: dict, figure: str = "acc", height: int = 380) -> go.Figure:
    """One trace per group: the mean `figure` over random member subsets against the number of members (log2
    axis), with error bars from lo to hi (95% of the subsets of that size); the deep ensemble dashed."""
    plot = go.Figure()
    groups = [g for g in ENSEMBLE_STYLE if g in ensembles] + [g for g in ensembles if g not in ENSEMBLE_STYLE]
    sizes: set[int] = set()
    for group in groups:
        table = ensembles[group]
        counts = sorted(int(n) for n in table)
        sizes.update(counts)
        rows = [table[str(n)][figure] for n in counts]
        label, colour, dash, _ = ENSEMBLE_STYLE.get(group, (group, None, "solid", ""))
        plot.add_trace(
            go.Scatter(
                x=counts,
                y=[r["mean"] for r in rows],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [r["hi"] - r["mean"] for r in rows],
                    "arrayminus": [r["mean"] - r["lo"] for r in rows],
                    "thickness": 1,
                    "width": 3,
                },
                mode="lines+markers",
                name=label,
                visible="legendonly" if group in LEGEND_ONLY else True,
                line={"color": colour, "dash": dash, "width": 3 if group == "generated" else 2},
                hovertemplate=f"{label}<br>%{{x}} members: %{{y:.3f}}<extra></extra>",
            )
        )
    ticks = sorted(sizes)
    return standard_layout(
        plot,
        "members in the ensemble (log scale)",
        FIGURES[figure][1],
        height,
        xaxis={"type": "log", "tickvals": ticks, "ticktext": [str(t) for t in ticks]},
        legend={"orientation": "h", "y": -0.25},
    )


def ensemble_caption(settings: dict | None, n: int) -> str:
    """How the ensembles were made, in one line: the split, what the error bars hold, where the anchors and the deep
    ensemble come from, and how many distinct models a selection that repeats members kept."""
    how = settings or {}
    parts = [
        f"On {how.get('split', 'the test split')}",
        "error bars: 95% of the ensembles of that size drawn at random from the group",
    ]
    if how.get("anchors"):
        parts.append(f"anchors: {how['anchors']}")
    if how.get("anchors_finetuned"):  # why a fine-tuned run has no fine-tuned anchors' line
        parts.append(f"source anchors, fine-tuned: {how['anchors_finetuned']}")
    if how.get("deep_inits") is not None:
        parts.append(f"deep ensemble: {how['deep_inits']} distinct initialisations")
    distinct = how.get("distinct", {}).get("generated")
    if distinct is not None and distinct < n:
        parts.append(f"{distinct} distinct of the {n} generated models (the selection kept some twice)")
    return "; ".join(parts) + "."


def ensemble_row(run: SamplesRun, group: str = "generated", size: int | None = None) -> dict | None:
    """{figure: {"mean", "lo", "hi"}} of the group's ensembles of `size` members (the run's n unless given);
    None for a run without ensembles, a group it has not, or a size the group does not reach."""
    table = (run.ensembles or {}).get(group) or {}
    return table.get(str(run.n if size is None else size))


def ensemble_metric(run: SamplesRun) -> dict | None:
    """The metric "Ensemble of N" (N: the run's n): the generated ensemble's accuracy and NLL, and the same of the
    source anchors' ensemble of as many, to compare with; None where either is missing. Where the run kept both
    fine-tuned groups, also their accuracies ("finetuned_acc", "anchors_finetuned_acc"): like for like after
    fine-tuning."""
    generated, anchors = ensemble_row(run, "generated"), ensemble_row(run, "anchors")
    if generated is None or anchors is None:
        return None
    metric = {
        "n": run.n,
        "acc": generated["acc"]["mean"],
        "nll": generated["nll"]["mean"],
        "anchors_acc": anchors["acc"]["mean"],
        "anchors_nll": anchors["nll"]["mean"],
    }
    tuned, tuned_anchors = ensemble_row(run, "finetuned"), ensemble_row(run, "anchors_finetuned")
    if tuned is not None and tuned_anchors is not None:
        metric |= {"finetuned_acc": tuned["acc"]["mean"], "anchors_finetuned_acc": tuned_anchors["acc"]["mean"]}
    return metric


def ensemble_columns(run: SamplesRun) -> dict:
    """The run comparison's ensemble cells: the generated ensemble of all n models, accuracy and NLL (None for a
    run without ensembles)."""
    row = ensemble_row(run, "generated")
    return {
        "ensemble acc": None if row is None else row["acc"]["mean"],
        "ensemble NLL": None if row is None else row["nll"]["mean"],
    }
