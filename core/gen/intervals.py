"""A samples run's intervals over its models: for each group and fine-tuning epoch the spread of the models' test
accuracies and a bootstrap 95% interval of their mean, and for each generator group a bootstrap interval of the
median novelty figures. The record keeps them (core/store/runs.py `SamplesRun.intervals`, `novelty_intervals`);
the CLI and the Generate page print them beside the means.

Over models, not seeds: one run is one seed. The bootstrap's generator is seeded with the run's seed and the
group's name, so a run made again with the same settings gets the same intervals, and no group's interval depends
on which other groups the run has.
"""

from __future__ import annotations

import zlib

import numpy as np

from core.stats import bootstrap_interval


def _lower_median(values: np.ndarray, axis=None) -> np.ndarray:
    """The median as core/gen/novelty.py takes it (torch's: the lower of the two middle values), so the interval
    is around the record's own median."""
    return np.quantile(values, 0.5, axis=axis, method="lower")


def _stream(seed: int, group: str, *more: int) -> list[int]:
    """The bootstrap's seed for one group's figure: the run's seed, the group's name, and which figure."""
    return [seed, zlib.crc32(group.encode()), *more]


def accuracy_intervals(per_model: dict[str, np.ndarray], seed: int) -> dict[str, list[dict]]:
    """{group: [{"epoch", "n", "mean", "lo", "hi", "std", "min", "max"} for each epoch]} from each group's
    [models, epochs + 1] test accuracies (core/gen/finetune.py `finetune_groups`); std over models with one degree
    of freedom taken (0 for a single model)."""
    out = {}
    for group, accuracy in per_model.items():
        rows = []
        for epoch in range(accuracy.shape[1]):
            values = np.asarray(accuracy[:, epoch], dtype=float)
            interval = bootstrap_interval(values, seed=_stream(seed, group, epoch))
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            spread = {"std": std, "min": float(values.min()), "max": float(values.max())}
            rows.append({"epoch": epoch, "n": len(values), **interval.to_json(), **spread})
        out[group] = rows
    return out


NOVELTY_FIGURES = ("max_iou", "min_l2")


def novelty_intervals(figures: dict[str, dict], seed: int) -> dict[str, dict]:
    """{group: {"max_iou": {"median", "lo", "hi"}, "min_l2": {...}}}: a bootstrap interval of the median of each
    per-model novelty figure (core/gen/novelty.py `novelty`), for every group that has them."""
    return {
        group: {
            name: bootstrap_interval(f[name], seed=_stream(seed, group, k), statistic=_lower_median).to_json("median")
            for k, name in enumerate(NOVELTY_FIGURES)
        }
        for group, f in figures.items()
    }
