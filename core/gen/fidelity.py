"""Anchors the autoencoder reproduces: a generation samples only around anchors whose own decodes keep their
function.

Why: every draw around an anchor inherits what the decoder loses on it, before any spread. On zoos whose decoder
falls short on part of the anchors (64-model MNIST zoos of mixed learning rates, weight decays, dropout and inits:
held-out reconstructions keep 78-99% of accuracy by zoo), generating around them kept 93% of their accuracy where
the spread's calibration asked for 99%. Leaving out anchors whose decodes keep less than 97% of their validation
accuracy (bench/paper.py's `_frontier`, five such zoos, the same seeds) raised the generated models' share of
their source anchors from 0.967 to 0.999 and the lead over anchor + noise with the same anchors and selection
from +0.050 to +0.092 (paired +0.041 [0.021, 0.061]); on ten seed-recipe zoos, whose decoder keeps nearly all,
nothing changed measurably. What it costs: the anchors left out are ones the decoder cannot make, often among
the best (the generated models' accuracy on the mixed zoos: 0.731 -> 0.706, no measurable difference), and a
generation says how many it left out and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from core.gen.anchors import Anchors
from core.gen.ensemble import validation_scorers
from core.rep.prepare import PreparedZoo
from core.rep.run import AERun
from core.zoo.data import Dataset
from core.zoo.population import recalibrate_norm_statistics

# Above this many anchors the check is not made: each anchor is decoded and scored once (with BatchNorm, its
# statistics re-estimated too), which for a third of a 50,000-checkpoint zoo costs more than the generation.
CHECK_LIMIT = 2048


@dataclass(frozen=True)
class Fidelity:
    """What the check found: of how many anchors, how many it judged (those at twice chance accuracy or more), how
    many it kept, at which share, and why where it kept all."""

    threshold: float
    anchors: int
    judged: int
    kept: int
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def describe_fidelity(record: dict) -> str:
    """One line for a run's recorded check (`Fidelity.to_json()`): what it left out and why, or why nothing."""
    if record["note"]:
        return record["note"]
    anchors, kept, share = record["anchors"], record["kept"], f"{record['threshold']:.0%}"
    if kept < anchors:
        return (
            f"{anchors - kept} of {anchors} anchors left out: the autoencoder does not reproduce them (their decodes "
            f"keep less than {share} of their validation accuracy)"
        )
    unjudged = anchors - record["judged"]
    return f"every anchor's decode keeps {share} of its validation accuracy ({anchors} anchors" + (
        f", {unjudged} below twice chance accuracy not judged)" if unjudged else ")"
    )


def decoded_shares(
    run: AERun, prepared: PreparedZoo, anchors: Anchors, codes: np.ndarray, source: Dataset, device: str
) -> np.ndarray:
    """[anchors] each anchor's decode's validation accuracy over its own (BatchNorm statistics of the decodes
    re-estimated on training images, as a generation's draws are); NaN for an anchor below twice chance accuracy,
    which has nothing to lose (a share of chance is noise: held-out reconstructions are judged the same way)."""
    spec = anchors.spec
    score = validation_scorers(spec, *source.scored_val)[0]
    decoded = np.concatenate(
        [
            score(recalibrate_norm_statistics(spec, part, source.x_train))
            for part in run.decode_chunks(prepared, codes, device)
        ]
    )
    original = np.concatenate([score(part) for _, part in prepared.iter_aligned(anchors.rows)])
    learned = original >= 2.0 / source.n_classes
    return np.where(learned, decoded / np.maximum(original, 1e-12), np.nan)


def faithful_anchors(
    run: AERun,
    prepared: PreparedZoo,
    drawn_from: tuple[Anchors, np.ndarray],
    source: Dataset,
    threshold: float,
    device: str,
    kept: Callable[[Callable[[], np.ndarray]], np.ndarray] | None = None,
) -> tuple[Anchors, np.ndarray, Fidelity | None]:
    """(the anchors whose decodes keep at least `threshold` of their validation accuracy, their codes, what the
    check found) from `drawn_from` (anchors, their codes); anchors below twice chance accuracy are kept unjudged.
    Where no judged anchor keeps the share, every anchor is kept and the record says so (the spread's calibration
    then says the decoder falls short). Not checked (None): threshold 0 or one anchor; above CHECK_LIMIT, said.
    `kept` (given the measurement, returns its result kept from an earlier generation around the same anchors, or
    makes it) spares measuring again what depends only on the run and the anchors."""
    anchors, codes = drawn_from
    count = len(anchors.ids)
    if threshold <= 0 or count < 2:
        return anchors, codes, None
    if count > CHECK_LIMIT:
        note = f"not checked: {count:,} anchors, more than {CHECK_LIMIT:,} (name fewer to check them)"
        return anchors, codes, Fidelity(threshold, count, 0, count, note)

    def measure() -> np.ndarray:
        with torch.no_grad():
            return decoded_shares(run, prepared, anchors, codes, source, device)

    shares = kept(measure) if kept is not None else measure()
    judged = ~np.isnan(shares)
    passed = judged & (shares >= threshold)
    if not passed.any():
        note = "every anchor kept: " + (
            f"none's decode keeps {threshold:.0%} of its validation accuracy (best {np.nanmax(shares):.1%})"
            if judged.any()
            else "none is at twice chance accuracy or more, where a share of its accuracy says something"
        )
        return anchors, codes, Fidelity(threshold, count, int(judged.sum()), count, note)
    keep = passed | ~judged  # an anchor at chance is not judged
    found = Fidelity(threshold, count, int(judged.sum()), int(keep.sum()))
    if keep.all():
        return anchors, codes, found
    narrowed = replace(
        anchors,
        rows=anchors.rows[keep],
        ids=[i for i, k in zip(anchors.ids, keep) if k],
        dropped=(*anchors.dropped, describe_fidelity(found.to_json())),
        dropped_count=anchors.dropped_count + int((~keep).sum()),
    )
    return narrowed, codes[keep], found
