"""A generation's numbers checked before anything is written (core/gen/finite.py), and the bounds that keep a
list of anchors from costing quadratic memory (core/gen/anchors.py, core/gen/samplers/base.py)."""

import numpy as np
import polars as pl
import pytest
import torch

from core.errors import UserError
from core.gen import finite
from core.gen.anchors import select_anchors
from core.gen.samplers import base
from core.gen.samplers.base import median_nearest_distance

GOOD = torch.ones(2, 3)
FIGURES = {"curves": {"generated": [0.1, 0.9]}, "novelty": {"min_l2_median": 2.0}}


def test_finite_results_pass():
    finite.check_results(GOOD, GOOD, FIGURES, spread=1.5, lr=None)
    finite.check_codes(np.zeros((2, 4), dtype=np.float32), spread=1.5)


@pytest.mark.parametrize(
    "generated, finetuned, figures, option",
    [
        (torch.tensor([[1.0, float("nan")], [1.0, 2.0]]), GOOD, FIGURES, "--spread 1e+300: 1 of the 2 generated"),
        (GOOD, torch.tensor([[float("inf")], [1.0]]), FIGURES, "--finetune-lr 0.5: fine-tuning made 1 of the 2"),
        (GOOD, GOOD, {**FIGURES, "novelty": {"min_l2_median": float("nan")}}, "novelty.min_l2_median"),
        (GOOD, GOOD, {"curves": {"generated": [0.1, float("inf")]}}, "curves.generated.1"),
    ],
)
def test_non_finite_results_are_refused_naming_the_option(generated, finetuned, figures, option):
    with pytest.raises(UserError, match="nothing was written") as caught:
        finite.check_results(generated, finetuned, figures, spread=1e300, lr=0.5)
    assert option in str(caught.value)


def test_overflowing_codes_are_refused_before_decoding():
    with pytest.raises(UserError, match="--spread 1e"):
        finite.check_codes(np.array([[np.inf, 0.0]], dtype=np.float32), spread=1e39)


def test_an_id_named_50000_times_is_one_anchor():
    table = pl.DataFrame({"checkpoint": [0, 1, 2, 3], "epoch": [0, 1, 0, 1], "val_acc": [0.1, 0.2, 0.3, 0.4]})
    assert select_anchors(table, "ids:" + ",".join(["3"] * 50_000)) == [3]
    assert select_anchors(table, "ids:2,1,2,3,1") == [2, 1, 3]  # first-named order kept


def test_median_nearest_distance_equals_the_whole_matrix_on_small_sets(monkeypatch):
    codes = np.random.default_rng(1).normal(size=(40, 3))
    whole = np.linalg.norm(codes[:, None] - codes[None], axis=-1) + np.diag([np.inf] * 40)
    monkeypatch.setattr(base, "BLOCK_VALUES", 100)  # blocks of 2 rows
    assert median_nearest_distance(codes) == pytest.approx(np.median(whole.min(axis=1)))
    assert median_nearest_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == 5.0
    assert median_nearest_distance(np.zeros((3, 2))) == 0.0  # coinciding points
    assert median_nearest_distance(np.zeros((1, 2))) == 0.0


def test_median_nearest_distance_of_many_points_is_computed_in_bounded_blocks(monkeypatch):
    shapes = []
    real = base.cdist

    def recorded(a, b):
        shapes.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(base, "cdist", recorded)
    monkeypatch.setattr(base, "BLOCK_VALUES", 1 << 16)
    line = np.arange(10_000, dtype=np.float64)[:, None]  # points 1 apart: every nearest distance is 1
    assert median_nearest_distance(line) == 1.0
    assert max(rows * columns for rows, columns in shapes) <= 1 << 16
    assert sum(rows for rows, _ in shapes) == base.MEDIAN_POINTS  # a subset of the points, each against all
