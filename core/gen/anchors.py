"""Choosing the anchors a generation samples around: a rule (`top:F`, `epoch:E`, `ids:a,b,c`) gives checkpoints,
and a generation keeps those of one architecture and one activation (the most common among them)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import polars as pl

from core.errors import UserError
from core.names import shortened
from core.store.budget import chunk_rows
from core.zoo.arch import Spec
from core.zoo.model_zoo import Zoo


def select_anchors(table: pl.DataFrame, rule: str) -> list[int]:
    """Checkpoint ids for `top:F` (best fraction F by validation accuracy), `epoch:E`, or `ids:a,b,c`."""
    kind, _, value = rule.partition(":")
    try:
        if kind == "top":
            return _best_fraction(table, float(value))
        if kind == "epoch":
            ids = table.filter(pl.col("epoch") == int(value))["checkpoint"].to_list()
            if not ids:
                raise UserError(
                    f"anchors {shortened(rule)}: no checkpoint at epoch {value} (have {sorted(set(table['epoch']))})"
                )
            return ids
        if kind == "ids":
            return _known_ids(table, [int(v) for v in value.split(",") if v.strip()], rule)
    except ValueError as exc:
        raise UserError(f"anchors {shortened(rule)}: expected top:F (0 < F <= 1), epoch:E or ids:a,b,c") from exc
    raise UserError(f"anchors {shortened(rule)}: expected top:F, epoch:E or ids:a,b,c")


def _best_fraction(table: pl.DataFrame, fraction: float) -> list[int]:
    if not 0 < fraction <= 1:
        raise ValueError(fraction)
    metric = "val_acc" if table["val_acc"].is_not_nan().all() else "test_acc"
    count = max(1, round(fraction * table.height))
    return sorted(table.sort(metric, descending=True)["checkpoint"][:count].to_list())


def _known_ids(table: pl.DataFrame, ids: list[int], rule: str) -> list[int]:
    """The ids named, each once, in the order first named: a checkpoint named twice is one anchor (50,000 copies
    of one id would otherwise cost a 50,000-square distance matrix)."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise UserError("anchors: the list of ids is empty")
    known = set(table["checkpoint"].to_list())
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UserError(f"anchors {shortened(rule)}: no checkpoint with id {unknown[:5]} in this zoo")
    return ids


@dataclass(frozen=True)
class Anchors:
    """The anchors of one generation: their zoo (one architecture), rows in it, checkpoint ids and activation."""

    zoo: Zoo
    rows: np.ndarray
    ids: list[int]
    activation: str
    dropped: tuple[str, ...] = ()  # why checkpoints the rule named are not among them, one line per reason
    dropped_count: int = 0  # how many of them

    @property
    def spec(self) -> Spec:
        return self.zoo.spec.with_activation(self.activation)


def resolve_anchors(zoos: list[Zoo], table: pl.DataFrame, rule: str) -> Anchors:
    """The rule's checkpoints, narrowed to the most common architecture among them, then to its most common
    activation: one generation makes models of one architecture. What is dropped, and why, goes into
    `Anchors.dropped` (a generation records it among its anchor warnings, the Generate page shows it before)."""
    named = select_anchors(table, rule)
    architectures = table.filter(pl.col("checkpoint").is_in(named))["architecture"].to_list()
    zoo = {z.spec.name: z for z in zoos}[Counter(architectures).most_common(1)[0][0]]
    row_of = {c: r for r, c in enumerate(zoo.table["checkpoint"].to_list())}
    ids = [c for c in named if c in row_of]
    if not ids:  # every one was skipped on load (non-finite weights)
        raise UserError(f"anchors {shortened(rule)}: none of these checkpoints could be loaded from the zoo")
    rows = np.array([row_of[c] for c in ids])
    activations = zoo.table["activation"].to_numpy()[rows]
    activation = Counter(activations.tolist()).most_common(1)[0][0]
    keep = activations == activation
    other_architecture = len(named) - architectures.count(zoo.spec.name)
    dropped = _dropped(zoo.spec.name, other_architecture, len(named) - other_architecture - len(ids))
    dropped += _dropped_activations(activations[~keep].tolist(), activation, int(keep.sum()))
    kept = [int(i) for i in np.array(ids)[keep]]
    return Anchors(zoo, rows[keep], kept, activation, dropped, len(named) - len(kept))


def _dropped(architecture: str, other_architecture: int, unloadable: int) -> tuple[str, ...]:
    """Lines saying how many named checkpoints were of another architecture, or could not be loaded."""
    lines = ()
    if other_architecture:
        lines += (
            f"{other_architecture} of the checkpoints the rule names were dropped: not of architecture "
            f"{architecture}, the most common among them (a generation makes models of one architecture)",
        )
    if unloadable:
        lines += (f"{unloadable} of the checkpoints the rule names were dropped: skipped on load (non-finite weights)",)
    return lines


def _dropped_activations(others: list[str], activation: str, kept: int) -> tuple[str, ...]:
    """A line saying how many named checkpoints had another activation than the one kept, and which."""
    if not others:
        return ()
    which = ", ".join(f"{count} {name}" for name, count in sorted(Counter(others).items()))
    return (
        f"{len(others)} of the checkpoints the rule names were dropped ({which}): a generation makes models of "
        f"one activation, and kept the {kept} {activation} ones, the most common; name checkpoints of one "
        "activation (e.g. by ids) to sample around the others",
    )


def distinct_rows(zoo: Zoo, rows: np.ndarray) -> int:
    """How many distinct weight vectors the zoo's `rows` hold, read a chunk at a time and kept as one digest per
    row: the anchors' weights (a third of the zoo for `top:0.3`) are never in memory at once."""
    digests, step = set(), chunk_rows(zoo.spec.n_params)
    for start in range(0, len(rows), step):
        weights = (zoo.rows(rows[start : start + step]) + 0.0).numpy()  # + 0.0: -0.0 becomes 0.0, equal as bytes too
        digests.update(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in weights)
    return len(digests)


FEW_ANCHORS = 3  # fewer anchors give a density almost nothing to estimate: the samples stay near copies
CHANCE_MARGIN = 0.05  # anchors this close to 1/classes accuracy have not learned the task


def anchor_warnings(anchors: Anchors) -> list[str]:
    """Why these anchors make a poor generation, in words a user can act on; empty when nothing is wrong.

    A lasso around one dot of the map can hold many checkpoints with the same weights (the epoch-0 checkpoints of
    models that share an initialisation): a generation from them decodes copies and reports an error overlap of
    1.00, so the page warns before anything runs."""
    distinct = distinct_rows(anchors.zoo, anchors.rows)
    accuracy = anchors.zoo.table["test_acc"].to_numpy()[anchors.rows]
    chance = 1.0 / anchors.spec.n_classes
    warnings = list(anchors.dropped)  # also where the rest is fine: the user asked for those checkpoints
    if len(anchors.ids) < FEW_ANCHORS:
        warnings.append(
            f"only {len(anchors.ids)} anchor(s): too few to estimate a density from; select at least {FEW_ANCHORS}"
        )
    if distinct * 2 <= len(anchors.ids):  # a few shared initialisations in a large selection do no harm
        warnings.append(
            f"the {len(anchors.ids)} anchors hold only {distinct} distinct weight set(s) (identical checkpoints, "
            "e.g. epoch-0 models sharing an initialisation): generated models will stay close to copies of them"
        )
    if np.nanmax(accuracy) <= chance + CHANCE_MARGIN:
        warnings.append(
            f"every anchor is at chance level (best test accuracy {np.nanmax(accuracy):.1%}, chance "
            f"{chance:.1%}): generated models will be too; select trained checkpoints"
        )
    return warnings
