"""core/stats.py against figures worked out by hand."""

import math

import numpy as np
import pytest

from core.errors import UserError
from core.parsing import seed_list
from core.stats import (
    NO_DIFFERENCE,
    Interval,
    as_json,
    bootstrap_interval,
    compare,
    compare_paired,
    format_interval,
    intervals_over,
    means,
    paired_verdict,
    t_interval,
    verdict,
)


def test_t_interval_of_three_seeds_uses_the_t_quantile_of_two_degrees_of_freedom():
    # mean 2, sample sd 1, t(0.975, 2) = 4.303: 2 ± 4.303 / sqrt(3) = 2 ± 2.484
    interval = t_interval([1.0, 2.0, 3.0])
    assert interval.estimate == 2.0 and interval.n == 3
    assert interval.half_width == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    assert (interval.lo, interval.hi) == pytest.approx((2 - 2.4843, 2 + 2.4843), abs=1e-3)


def test_t_interval_of_two_seeds_and_of_identical_ones():
    # t(0.975, 1) = 12.706; sd of (0, 1) is 1/sqrt(2): half width 12.706 / 2
    assert t_interval([0.0, 1.0]).half_width == pytest.approx(12.706 / 2, abs=1e-3)
    same = t_interval([0.5, 0.5, 0.5])
    assert (same.lo, same.estimate, same.hi) == (0.5, 0.5, 0.5)


def test_one_seed_has_no_t_interval_and_compares_as_no_difference():
    one = t_interval([0.9])
    assert one.estimate == 0.9 and not one.known
    assert one.to_json() == {"mean": 0.9, "lo": None, "hi": None}
    assert compare(one, Interval(0.1, 0.0, 0.2, 3)) == NO_DIFFERENCE
    assert format_interval(one) == "0.900 (1 value: no interval)"


def test_bootstrap_of_identical_values_has_zero_width():
    interval = bootstrap_interval([0.7] * 16, seed=3)
    assert (interval.lo, interval.estimate, interval.hi) == (0.7, 0.7, 0.7)
    assert bootstrap_interval([0.4], seed=0).half_width == 0


def test_bootstrap_is_deterministic_for_a_seed_and_brackets_the_mean():
    values = np.random.default_rng(0).normal(0.9, 0.02, size=40)
    a, b = bootstrap_interval(values, seed=5), bootstrap_interval(values, seed=5)
    assert a == b and a.how == "bootstrap" and a.n == 40
    assert a.lo < values.mean() < a.hi
    assert bootstrap_interval(values, seed=6) != a
    # about 1.96 standard errors each side (0.02 / sqrt(40) = 0.0032): a loose bound, not a timing
    assert 0.003 < a.half_width < 0.01


def test_bootstrap_of_a_median_and_fewer_resamples():
    values = [0.1, 0.2, 0.3, 0.4, 0.5]
    interval = bootstrap_interval(values, seed=0, statistic=np.median, resamples=50)
    assert interval.estimate == 0.3 and 0.1 <= interval.lo <= interval.hi <= 0.5


def test_intervals_refuse_no_values_and_non_finite_ones():
    with pytest.raises(ValueError, match="at least one"):
        t_interval([])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_interval([0.1, float("nan")])


@pytest.mark.parametrize(
    ("a", "b", "said"),
    [
        ((0.5, 0.4, 0.6), (0.8, 0.7, 0.9), "lower"),
        ((0.8, 0.7, 0.9), (0.5, 0.4, 0.6), "higher"),
        ((0.5, 0.4, 0.6), (0.65, 0.55, 0.75), NO_DIFFERENCE),  # overlapping
        ((0.5, 0.4, 0.6), (0.7, 0.6, 0.8), NO_DIFFERENCE),  # touching ends
        ((0.5, 0.3, 0.9), (0.6, 0.55, 0.65), NO_DIFFERENCE),  # one inside the other
    ],
)
def test_compare_says_which_is_higher_only_where_intervals_do_not_overlap(a, b, said):
    assert compare(Interval(*a, n=3), Interval(*b, n=3)) == said


def test_verdict_and_format():
    hi, lo = Interval(0.912, 0.908, 0.916, 3), Interval(0.5, 0.4, 0.6, 3)
    assert format_interval(hi) == "0.912 ± 0.004 [0.908, 0.916]"
    assert verdict(hi, lo, "generated", "random init") == "generated higher than random init"
    assert verdict(hi, hi, "generated", "anchors") == f"generated vs anchors: {NO_DIFFERENCE}"


def test_paired_differences_separate_what_overlapping_intervals_cannot():
    # Three zoos: the variant beats the defaults on each by 0.02 to 0.03, but the zoos differ by 0.1, so the two
    # unpaired intervals overlap; the differences' interval (t, 2 degrees of freedom) lies above 0.
    defaults, variant = [0.80, 0.90, 0.85], [0.82, 0.93, 0.875]
    assert compare(t_interval(variant), t_interval(defaults)) == NO_DIFFERENCE
    differences = t_interval(np.subtract(variant, defaults))
    assert differences.estimate == pytest.approx(0.025)  # (0.02 + 0.03 + 0.025) / 3
    assert differences.lo == pytest.approx(0.025 - 4.302653 * 0.005 / math.sqrt(3), abs=1e-6)
    assert compare_paired(differences) == "higher"
    assert paired_verdict(differences, "latent-double", "default") == "latent-double higher than default (paired)"
    assert compare_paired(Interval(-0.01, -0.02, -0.001, 3)) == "lower"
    holds_zero = Interval(0.01, -0.02, 0.04, 3)
    assert paired_verdict(holds_zero, "a", "b") == f"a vs b: {NO_DIFFERENCE} (paired)"
    assert compare_paired(Interval(0.0, 0.0, 0.02, 3)) == NO_DIFFERENCE  # touching 0
    assert compare_paired(t_interval([0.5])) == NO_DIFFERENCE  # one seed: no ends


def test_intervals_over_seeds_keep_the_nesting_of_the_records():
    records = [
        {"r2": 0.8, "probe": {"acc": 0.5}, "curve": [0.1, 0.2], "name": "a", "odd": None},
        {"r2": 0.9, "probe": {"acc": 0.7}, "curve": [0.3, 0.4], "name": "a", "odd": 1.0},
    ]
    nested = intervals_over(records)
    assert set(nested) == {"r2", "probe", "curve"}
    plain = means(nested)
    assert plain["r2"] == pytest.approx(0.85) and plain["probe"]["acc"] == pytest.approx(0.6)
    assert plain["curve"] == pytest.approx([0.2, 0.3])
    out = as_json(nested)
    assert out["probe"]["acc"]["mean"] == pytest.approx(0.6)
    # sd of (0.8, 0.9) is 0.05 * sqrt(2); over sqrt(2) seeds: 0.05; times t(0.975, 1) = 12.706
    assert out["r2"]["lo"] == pytest.approx(0.85 - 12.706 * 0.05, abs=1e-3)


@pytest.mark.parametrize(("text", "seeds"), [("3", (0, 1, 2)), ("1", (0,)), ("0,4,7", (0, 4, 7)), ("5,", (5,))])
def test_bench_seeds_are_a_count_or_a_list(text, seeds):
    assert seed_list(text) == seeds


@pytest.mark.parametrize("text", ["0", "-1,2", "1,1", "x", ""])
def test_bench_seeds_refuse_none_negative_repeated_or_text(text):
    with pytest.raises(UserError, match="--seeds"):
        seed_list(text)
