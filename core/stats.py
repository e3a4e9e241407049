"""Intervals for quality figures: a seeded percentile bootstrap (over models, images or any sample), a Student-t
interval of a mean over a handful of seeds, their comparison, and one printed form for the benches and the CLI.

Why here and not in a stage's room: generation (a samples run's intervals over models), the representation's
benches (probes over seeds) and the app all use it, and it needs nothing but numpy and scipy.

    over_seeds = t_interval([0.91, 0.92, 0.90])         # the mean over seeds, 95%
    over_models = bootstrap_interval(accuracies, seed=0)  # the mean over models, 95%
    compare(over_seeds, other)                          # "higher", "lower" or NO_DIFFERENCE
    format_interval(over_seeds)                         # "0.910 ± 0.025 [0.885, 0.935]"

Degenerate cases, by design: one value gives a bootstrap interval of zero width (lo = hi = the value: every
resample is that value) but a t-interval of NaN ends (one seed says nothing about the spread over seeds); a NaN
interval overlaps every interval, so `compare` says NO_DIFFERENCE, and `to_json` writes its ends as null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

LEVEL = 0.95
RESAMPLES = 2000
NO_DIFFERENCE = "no measurable difference"


@dataclass(frozen=True)
class Interval:
    """An estimate (the mean, or the median for a median's interval) with the ends of its interval, over `n`
    values; `how` says which interval it is ("t" over seeds, "bootstrap" over a sample)."""

    estimate: float
    lo: float
    hi: float
    n: int
    how: str = "t"

    @property
    def known(self) -> bool:
        """Whether the interval has ends (a t-interval of one value has none)."""
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    @classmethod
    def from_json(cls, data: dict, name: str = "mean", how: str = "bootstrap") -> Interval:
        """An interval read back from `to_json`'s form (with "n" where the record has it; else 0: not known)."""
        lo, hi = (math.nan if data[k] is None else float(data[k]) for k in ("lo", "hi"))
        return cls(float(data[name]), lo, hi, int(data.get("n", 0)), how)

    def to_json(self, name: str = "mean") -> dict:
        """{name: estimate, "lo", "hi"}; unknown ends as None (JSON has no NaN)."""
        return {name: _plain(self.estimate), "lo": _plain(self.lo), "hi": _plain(self.hi)}


def _plain(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _values(values) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 0:
        raise ValueError("an interval needs at least one value")
    if not np.isfinite(array).all():
        raise ValueError(f"an interval needs finite values, got {array.tolist()}")
    return array


def t_interval(values, level: float = LEVEL) -> Interval:
    """The Student-t interval of the mean: mean ± t(level, n-1) x sd / sqrt(n), right for a handful of seeds
    (for n = 3 the factor is 4.303, not 1.96). One value: NaN ends (see the module's note)."""
    array = _values(values)
    mean, n = float(array.mean()), array.size
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, "t")
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * float(array.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, "t")


def bootstrap_interval(
    values,
    seed: int | Sequence[int] = 0,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    statistic: Callable = np.mean,
) -> Interval:
    """The percentile bootstrap interval of `statistic` (np.mean or np.median; anything with an `axis`): the
    values are resampled with replacement `resamples` times by a generator seeded with `seed` (the same seed,
    the same interval), and the interval runs between the (1 - level)/2 and (1 + level)/2 quantiles of the
    resampled statistic. The estimate is the statistic of the values themselves."""
    array = _values(values)
    if resamples < 1:
        raise ValueError(f"a bootstrap needs at least one resample, got {resamples}")
    if np.ptp(array) == 0:  # identical values: a mean of them can differ from them in the last bit
        return Interval(float(array[0]), float(array[0]), float(array[0]), array.size, "bootstrap")
    rows = np.random.default_rng(seed).integers(0, array.size, size=(resamples, array.size))
    lo, hi = np.quantile(statistic(array[rows], axis=1), [0.5 - level / 2, 0.5 + level / 2])
    return Interval(float(statistic(array)), float(lo), float(hi), array.size, "bootstrap")


def compare(a: Interval, b: Interval) -> str:
    """ "higher" if a's interval lies wholly above b's, "lower" if wholly below, else NO_DIFFERENCE (they overlap,
    touching ends included, or either has no ends)."""
    if not (a.known and b.known):
        return NO_DIFFERENCE
    if a.lo > b.hi:
        return "higher"
    if a.hi < b.lo:
        return "lower"
    return NO_DIFFERENCE


_ZERO = Interval(0.0, 0.0, 0.0, 1)  # what a paired difference is compared with


def compare_paired(difference: Interval) -> str:
    """What the interval of paired differences a - b (one per seed, both sides on the same zoo) says: "higher" if
    it lies wholly above 0, "lower" if wholly below, else NO_DIFFERENCE (it holds 0, or has no ends). Pairing
    cancels what the two sides share (the zoo, its held-out models), so it can separate what unpaired intervals
    cannot."""
    return compare(difference, _ZERO)


def verdict(a: Interval, b: Interval, a_name: str, b_name: str) -> str:
    """The comparison as a sentence: "generated higher than anchors", or "generated vs anchors: no measurable
    difference"."""
    return _sentence(compare(a, b), a_name, b_name)


def paired_verdict(difference: Interval, a_name: str, b_name: str) -> str:
    """`compare_paired` as a sentence: "latent-double higher than default (paired)", or "... vs ...: no measurable
    difference (paired)"."""
    return _sentence(compare_paired(difference), a_name, b_name) + " (paired)"


def _sentence(said: str, a_name: str, b_name: str) -> str:
    return f"{a_name} vs {b_name}: {NO_DIFFERENCE}" if said == NO_DIFFERENCE else f"{a_name} {said} than {b_name}"


def format_interval(interval: Interval, digits: int = 3) -> str:
    """ "0.912 ± 0.004 [0.908, 0.916]": the estimate, half the interval's width and its ends (a bootstrap interval
    need not be symmetric: the ends are exact, ± is half the width). Without ends: "0.912 (1 value: no interval)"."""
    if not interval.known:
        return f"{interval.estimate:.{digits}f} ({interval.n} value: no interval)"
    return (
        f"{interval.estimate:.{digits}f} ± {interval.half_width:.{digits}f} "
        f"[{interval.lo:.{digits}f}, {interval.hi:.{digits}f}]"
    )


def intervals_over(records: Sequence, level: float = LEVEL):
    """The t-interval over seeds of every number in `records` (one record per seed: a number, or a dict or list of
    them nested alike), in the same nesting; entries that are not numbers in every record (None, text, a key
    some lack) are left out."""
    first = records[0]
    if all(_is_number(r) for r in records):
        return t_interval(records, level)
    if isinstance(first, dict) and all(isinstance(r, dict) for r in records):
        shared = [k for k in first if all(k in r for r in records)]
        nested = {k: intervals_over([r[k] for r in records], level) for k in shared}
        return {k: v for k, v in nested.items() if v is not None}
    if isinstance(first, list) and all(isinstance(r, list) and len(r) == len(first) for r in records):
        nested = [intervals_over([r[i] for r in records], level) for i in range(len(first))]
        return nested if all(v is not None for v in nested) else None
    return None


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)


def as_json(nested):
    """`intervals_over`'s result with each Interval as {"mean", "lo", "hi"}."""
    if isinstance(nested, Interval):
        return nested.to_json()
    if isinstance(nested, dict):
        return {k: as_json(v) for k, v in nested.items()}
    if isinstance(nested, list):
        return [as_json(v) for v in nested]
    return nested


def means(nested):
    """`intervals_over`'s result with each Interval as its estimate: the plain figures the benches printed before."""
    if isinstance(nested, Interval):
        return nested.estimate
    if isinstance(nested, dict):
        return {k: means(v) for k, v in nested.items()}
    if isinstance(nested, list):
        return [means(v) for v in nested]
    return nested
