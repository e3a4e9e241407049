"""The Generate page's ensemble chart, its metric and the comparison's ensemble cells (ui/ensembles.py)."""

from types import SimpleNamespace

import pytest

from ui.ensembles import (
    ENSEMBLE_STYLE,
    ensemble_caption,
    ensemble_columns,
    ensemble_figure,
    ensemble_metric,
    groups_help,
)


def summary(mean: float, spread: float = 0.02) -> dict:
    return {"mean": mean, "lo": mean - spread, "hi": mean + 2 * spread}


def table(sizes: list[int], acc: float, nll: float) -> dict:
    """{N: {figure: summary}} as core/gen/ensemble.py writes it, better with every doubling."""
    return {str(n): {"acc": summary(acc + 0.01 * i), "nll": summary(nll - 0.1 * i)} for i, n in enumerate(sizes)}


@pytest.fixture
def ensembles() -> dict:
    return {
        "generated": table([1, 2, 4, 6], 0.80, 0.9),
        "finetuned": table([1, 2, 4, 6], 0.85, 0.6),
        "anchors": table([1, 2, 4, 6], 0.82, 0.8),
        "noise": table([1, 2, 4, 6], 0.78, 1.0),
        "average": table([1, 2, 4, 6], 0.30, 2.0),
        "deep": table([1, 2, 4], 0.88, 0.5),  # a zoo with fewer models than the run's n
    }


def run(ensembles: dict | None, n: int = 6) -> SimpleNamespace:
    return SimpleNamespace(n=n, ensembles=ensembles)


@pytest.mark.parametrize("figure", ["acc", "nll"])
def test_the_chart_has_one_trace_per_group_over_the_member_counts(ensembles, figure):
    chart = ensemble_figure(ensembles, figure)
    names = [t.name for t in chart.data]
    assert names == [ENSEMBLE_STYLE[g][0] for g in ensembles] and len(set(names)) == 6
    assert [list(t.x) for t in chart.data] == [[1, 2, 4, 6]] * 5 + [[1, 2, 4]]
    shown = {t.name: t.visible for t in chart.data}  # the averages far below: from the legend only
    assert shown.pop("average of 3 anchors") == "legendonly" and set(shown.values()) == {True}
    generated = chart.data[0]
    assert list(generated.y) == pytest.approx([ensembles["generated"][str(n)][figure]["mean"] for n in (1, 2, 4, 6)])
    assert chart.layout.xaxis.type == "log" and list(chart.layout.xaxis.tickvals) == [1, 2, 4, 6]
    assert chart.layout.yaxis.title.text and chart.layout.xaxis.title.text


def test_the_deep_ensemble_is_the_dashed_line_and_every_trace_draws_its_interval(ensembles):
    chart = ensemble_figure(ensembles, "acc")
    dashes = {t.name: t.line.dash for t in chart.data}
    assert dashes["deep ensemble"] == "dash"
    assert [name for name, dash in dashes.items() if dash == "dash"] == ["deep ensemble"]
    for trace in chart.data:
        assert trace.error_y.visible is not False and not trace.error_y.symmetric
        assert list(trace.error_y.array) == pytest.approx([0.04] * len(trace.x))  # hi - mean
        assert list(trace.error_y.arrayminus) == pytest.approx([0.02] * len(trace.x))  # mean - lo


def test_every_group_is_explained_in_the_help():
    assert "deep ensemble: N zoo models trained independently: the ensemble to reach" in groups_help()
    assert all(label in groups_help() for label, *_ in ENSEMBLE_STYLE.values())


def test_the_metric_compares_the_generated_ensemble_of_n_with_the_anchors(ensembles):
    metric = ensemble_metric(run(ensembles))
    assert metric == pytest.approx({"n": 6, "acc": 0.83, "nll": 0.6, "anchors_acc": 0.85, "anchors_nll": 0.5})
    assert ensemble_metric(run(None)) is None
    both = ensemble_metric(run(ensembles | {"anchors_finetuned": table([1, 2, 4, 6], 0.86, 0.7)}))
    assert both == pytest.approx(metric | {"finetuned_acc": 0.88, "anchors_finetuned_acc": 0.89})


def test_comparison_cells_hold_the_ensemble_of_n_and_are_empty_for_old_runs(ensembles):
    assert ensemble_columns(run(ensembles)) == pytest.approx({"ensemble acc": 0.83, "ensemble NLL": 0.6})
    assert ensemble_columns(run(None)) == {"ensemble acc": None, "ensemble NLL": None}


def test_the_caption_says_how_the_ensembles_were_made_and_what_a_selection_repeated():
    settings = {"split": "digits test (359 images)", "anchors": "source anchors", "deep_inits": 3}
    settings["distinct"] = {"generated": 4, "deep": 5}
    caption = ensemble_caption(settings, 5)
    assert caption.startswith("On digits test (359 images); error bars: 95% of the ensembles")
    assert "anchors: source anchors" in caption and "deep ensemble: 3 distinct initialisations" in caption
    assert "4 distinct of the 5 generated models" in caption
    assert "distinct of the" not in ensemble_caption(settings, 4) and ensemble_caption(None, 4).startswith("On the")
    assert "fine-tuned" not in caption
    later = ensemble_caption(settings | {"anchors_finetuned": "not kept: a run keeps them where ..."}, 5)
    assert "source anchors, fine-tuned: not kept" in later
