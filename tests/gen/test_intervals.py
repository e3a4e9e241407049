"""core/gen/intervals.py: a samples run's intervals over its models, by hand."""

import numpy as np
import pytest

from core.cli.describe import interval_lines
from core.gen.intervals import accuracy_intervals, novelty_intervals


def test_each_group_gets_a_row_per_epoch_with_its_spread():
    per_model = {
        "generated": np.array([[0.5, 0.9], [0.7, 0.9], [0.6, 0.9]], dtype=np.float32),
        "anchors": np.array([[0.8, 0.85], [0.8, 0.95]], dtype=np.float32),
    }
    out = accuracy_intervals(per_model, seed=0)
    first, last = out["generated"]
    assert first["epoch"] == 0 and last["epoch"] == 1 and first["n"] == 3
    assert first["mean"] == pytest.approx(0.6) and first["std"] == pytest.approx(0.1)  # one degree of freedom taken
    assert (first["min"], first["max"]) == pytest.approx((0.5, 0.7))
    assert 0.5 <= first["lo"] < 0.6 < first["hi"] <= 0.7
    assert last["lo"] == last["hi"] == pytest.approx(0.9) and last["std"] == 0  # identical accuracies: no width
    assert out["anchors"][1]["std"] == pytest.approx(np.std([0.85, 0.95], ddof=1))


def test_intervals_repeat_for_a_seed_and_do_not_depend_on_the_other_groups():
    rng = np.random.default_rng(1)
    generated = rng.uniform(0.6, 0.9, size=(16, 3))
    alone = accuracy_intervals({"generated": generated}, seed=4)
    beside = accuracy_intervals({"noise": rng.uniform(size=(16, 3)), "generated": generated}, seed=4)
    assert alone["generated"] == beside["generated"] == accuracy_intervals({"generated": generated}, 4)["generated"]
    assert accuracy_intervals({"generated": generated}, seed=5)["generated"] != alone["generated"]


def test_novelty_intervals_are_around_the_lower_median_as_novelty_takes_it():
    figures = {"generated": {"max_iou": np.array([0.1, 0.4, 0.2, 0.3]), "min_l2": np.full(4, 2.0)}}
    out = novelty_intervals(figures, seed=0)["generated"]
    assert out["max_iou"]["median"] == pytest.approx(0.2)  # torch's median of four: the second smallest
    assert 0.1 <= out["max_iou"]["lo"] <= 0.2 <= out["max_iou"]["hi"] <= 0.4
    assert out["min_l2"] == {"median": 2.0, "lo": 2.0, "hi": 2.0}


def test_the_cli_prints_each_group_with_its_interval_and_the_comparisons():
    per_model = {
        "generated": np.array([[0.5, 0.9], [0.52, 0.91], [0.51, 0.9]]),
        "random_init": np.array([[0.1, 0.89], [0.11, 0.9], [0.1, 0.92]]),
    }
    lines = interval_lines(accuracy_intervals(per_model, seed=0))
    assert lines[0].endswith("as generated and after 1 epochs:")
    assert lines[1].startswith("  generated    0.510 ± ") and lines[1].endswith("(std 0.006 over 3 models)")
    assert lines[3] == "  as generated: generated higher than random_init"
    assert lines[4] == "  after 1 epochs: generated vs random_init: no measurable difference"
    before = interval_lines(accuracy_intervals({k: v[:, :1] for k, v in per_model.items()}, seed=0))
    assert before[0].endswith("as generated:") and len(before) == 4  # no fine-tuning: epoch 0 alone
    assert interval_lines({}) == []  # a run from before intervals
