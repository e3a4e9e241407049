"""ui/intervals.py: the Generate page's words for a samples run's intervals."""

from pathlib import Path

from core.store.runs import NOVELTY_MEDIANS, SamplesRun
from ui.intervals import accuracy_note, intervals_caption, novelty_note


def _run(extra: dict) -> SamplesRun:
    return SamplesRun(
        folder=Path("/nowhere/samples/s"),
        **dict.fromkeys(("ae_run", "ae_kind", "method", "dataset", "source_dataset", "architecture"), "x"),
        activation="relu",
        n=4,
        anchors={"rule": "top:0.3", "count": 2, "ids": [0, 1]},
        curves={"generated": [0.5, 0.9]},
        novelty=dict.fromkeys(NOVELTY_MEDIANS, 1.0),
        novelty_baselines={},
        selection={"mode": "none"},
        config={"finetune_epochs": 1},
        extra=extra,
    )


def _rows(*intervals):
    return [
        {"epoch": e, "n": 4, "mean": (lo + hi) / 2, "lo": lo, "hi": hi, "std": 0.1, "min": lo, "max": hi}
        for e, (lo, hi) in enumerate(intervals)
    ]


def test_notes_and_caption_say_the_interval_and_what_it_measures():
    run = _run(
        {
            "intervals": {
                "generated": _rows((0.40, 0.45), (0.90, 0.92)),
                "random_init": _rows((0.08, 0.12), (0.85, 0.95)),
                "anchors": _rows((0.75, 0.80), (0.80, 0.85)),
            },
            "novelty_intervals": {"generated": {"max_iou": {"median": 0.6, "lo": 0.58, "hi": 0.675}}},
        }
    )
    assert accuracy_note(run, "generated", 0) == "95% interval 40.0%–45.0% over 4 models"
    assert accuracy_note(run, "generated", -1) == "95% interval 90.0%–92.0% over 4 models"
    assert novelty_note(run) == "95% interval 0.58–0.68"
    caption = intervals_caption(run)
    assert "as generated: higher than random init, lower than selected zoo models (anchors)" in caption
    assert "after 1 epoch: no measurable difference from random init, higher than selected zoo models" in caption


def test_a_run_from_before_intervals_has_no_notes():
    run = _run({})
    assert accuracy_note(run, "generated", 0) is None and novelty_note(run) is None and intervals_caption(run) is None
    assert accuracy_note(_run({"intervals": {"generated": _rows((0.4, 0.5))}}), "anchors", 0) is None


def test_a_run_without_fine_tuning_is_described_as_generated_only():
    run = _run({"intervals": {"generated": _rows((0.4, 0.5)), "anchors": _rows((0.7, 0.8))}})
    assert "as generated: lower than selected zoo models (anchors)." in intervals_caption(run)
    assert "after 0 epochs" not in intervals_caption(run)
