"""What generated models are compared with, made in the same run:

- `random_init`: the zoo's init scheme, fresh seeds;
- `anchors`: the source anchors of the generated models, one per generated model (the checkpoint each was drawn
  around, so an anchor behind several generated models counts as often); a point of a latent path decodes its
  checkpoint ends, and is compared with each of them. This group used to be a random n of the anchors, but
  selection keeps draws around the best anchors: on a digits zoo (3 seeds) the kept models' own source anchors
  scored 0.938-0.941 against 0.901 for all anchors, so the random group flattered the generator. Nothing needs
  it, so it is gone; the record's `source_ratio` is the generated models' mean accuracy over this group's;
- and the three simple weight-space generators of Zeng et al. (2025) that a generator must beat to show it does
  more than copy: `noise` (an anchor plus Gaussian noise of 10% of each layer's std), `average` (the mean of
  three random aligned anchors) and `weight_gauss` (a per-weight Gaussian fitted to the aligned anchors), and the
  noise baseline's frontier over five noise scales.

Like for like: the weight-space baselines are samplers whose codes are aligned weight vectors, so they go through
the generated models' own selection (core/gen/selection.py) on the same validation data: best n of n x candidates
for `subsample`, refit rounds for `bootstrap`, greedy ensemble selection for `diverse`, none for `none`. Without
it the comparison flattered the generator: on a digits zoo (3 seeds), noise given the same best-of-4 came within
about 1.5 points of the generated models at the same novelty, and with no selection on either side the generator
was within ±0.02 of plain noise. `guided` ranks latent codes by a probe of the embedding; weight vectors have no
code, so the baselines then get no selection, and the run records that (`baseline_selection`).

Within the memory budget: the anchors are a third of the zoo for the default `top:0.3` (GBs for ResNet-18s), so
no baseline holds them at once (core/gen/anchor_weights.py). Noise and average read only the anchors their draws
centre on, a chunk at a time; the per-weight Gaussian fits on moments streamed over the anchors in chunks
(core/rep/moments.py); a bootstrap round's refit works on its n kept draws. The draws are the same as from the
whole tensor: bit for bit for noise and average, to float rounding for the Gaussian (its moments now in float64).
The n x candidates draws a selection scores are made a chunk at a time, and made again where a pick is asked for
(core/gen/samplers/draws.py, core/gen/chunked_draws.py): never all at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch

from core.gen.anchor_weights import AnchorWeights, HeldWeights
from core.gen.anchors import Anchors
from core.gen.chunked_draws import draw_chunk
from core.gen.samplers.base import Sampler, ZooCodes
from core.gen.samplers.draws import Draws, MakeRows, made_draws
from core.gen.selection import Selection, select_models
from core.rep.moments import ColumnMoments
from core.rep.prepare import PreparedZoo
from core.zoo.population import INITS, init_vectors

NOISE_SCALE = 0.1  # the `noise` baseline: std as a fraction of each layer's std over the zoo
# The noise baseline's frontier: the same baseline at these scales, so a generation can be placed against the whole
# trade-off between accuracy and novelty that adding noise buys, not against one point of it.
FRONTIER_SCALES = (0.025, 0.05, 0.1, 0.2, 0.4)
SIMPLE = ("noise", "average", "weight_gauss")
GUIDED_NOTE = "guided selection ranks latent codes by a probe of the embedding; weight-space baselines have no code"


class WeightSampler(Sampler):
    """A baseline whose codes are aligned weight vectors, fitted on `AnchorWeights`: its draws are made a chunk at
    a time (core/gen/samplers/draws.py), held where they fit one chunk and made again when asked for beyond it."""

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        drawn = self._draws(n, rng, self.anchors.chunk, hold=True)
        return drawn.codes, drawn.centres

    def draws(self, n: int, rng: np.random.Generator, chunk: int) -> Draws:
        return self._draws(n, rng, chunk, hold=n <= chunk)

    def _draws(self, n: int, rng: np.random.Generator, chunk: int, hold: bool) -> Draws:
        raise NotImplementedError


class WeightNoise(WeightSampler):
    """The noise baseline as a sampler whose codes are aligned weight vectors: an anchor plus Gaussian noise of
    `scale` x each weight's layer std. Fitted on `AnchorWeights`, it reads only the anchors its draws centre on."""

    name: ClassVar[str] = "weight-noise"
    description: ClassVar[str] = "an anchor's weights plus noise of a fraction of each layer's std"

    def __init__(self, entry_std: torch.Tensor, scale: float = NOISE_SCALE) -> None:
        super().__init__(1.0)
        self.std, self.scale = entry_std.float(), scale

    def fit(self, anchors: AnchorWeights, zoo_codes: ZooCodes) -> WeightNoise:
        self.anchors = anchors  # the unit of spread is the layers' std, not the anchors' spacing
        return self

    def recentre(self, codes: np.ndarray) -> WeightNoise:
        self.anchors = HeldWeights(codes)
        return self

    def _draws(self, n: int, rng: np.random.Generator, chunk: int, hold: bool) -> Draws:
        centres = rng.integers(0, len(self.anchors), n)
        make = _noisy(lambda lo, hi: self.anchors.take(centres[lo:hi]), self.scale, self.std)
        return made_draws(centres, make, rng, self.anchors.width, chunk, hold)


class WeightAverage(WeightSampler):
    """The average of three random aligned anchors (their first is the draw's centre), reading only those."""

    name: ClassVar[str] = "weight-average"
    description: ClassVar[str] = "the mean of three random aligned anchors"

    def fit(self, anchors: AnchorWeights, zoo_codes: ZooCodes) -> WeightAverage:
        self.anchors = anchors
        return self

    def recentre(self, codes: np.ndarray) -> WeightAverage:
        self.anchors = HeldWeights(codes)
        return self

    def _draws(self, n: int, rng: np.random.Generator, chunk: int, hold: bool) -> Draws:
        triples = rng.integers(0, len(self.anchors), (n, 3))
        return made_draws(triples[:, 0], lambda lo, hi, _: self._averages(triples[lo:hi]), rng, 0, chunk, hold)

    def _averages(self, triples: np.ndarray) -> np.ndarray:
        """[len(triples), params]: the mean of the three anchors of each row of `triples`."""
        averages, step = torch.empty(len(triples), self.anchors.width), max(1, self.anchors.chunk // 3)
        for start in range(0, len(triples), step):  # a chunk of anchors read at once: the three behind each draw
            part = triples[start : start + step]
            averages[start : start + step] = self.anchors.take(part).view(len(part), 3, -1).mean(1)
        return averages.numpy()


class WeightGauss(WeightSampler):
    """A per-weight Gaussian fitted to the aligned anchors (their moments streamed a chunk at a time; std 0 for
    one anchor); a bootstrap round moves its mean to the kept draws' and keeps the anchors' std. Every draw is
    centred on the mean (centre 0)."""

    name: ClassVar[str] = "weight-gauss"
    description: ClassVar[str] = "a per-weight Gaussian fitted to the aligned anchors"

    def fit(self, anchors: AnchorWeights, zoo_codes: ZooCodes) -> WeightGauss:
        moments = ColumnMoments(anchors.width)
        for chunk in anchors.chunks():
            moments.add(chunk)
        self.anchors, (self.mean, self.std) = anchors, moments.mean_std()
        return self

    def recentre(self, codes: np.ndarray) -> WeightGauss:
        self.anchors = HeldWeights(codes)
        self.mean = self.anchors.vectors.mean(0)
        return self

    def _draws(self, n: int, rng: np.random.Generator, chunk: int, hold: bool) -> Draws:
        make = _noisy(lambda lo, hi: self.mean, 1.0, self.std)
        return made_draws(np.zeros(n, dtype=np.int64), make, rng, self.anchors.width, chunk, hold)


def _noisy(centres: Callable[[int, int], torch.Tensor], scale: float, std: torch.Tensor) -> MakeRows:
    """make(lo, hi, noise): draws lo..hi as `centres(lo, hi)` plus their Gaussian `noise` times `scale` x `std`."""

    def make(lo: int, hi: int, noise: np.ndarray) -> np.ndarray:
        return (centres(lo, hi) + scale * torch.from_numpy(noise) * std).numpy()

    return make


def baseline_selection(selection: Selection) -> Selection:
    """The selection the weight-space baselines get: the generated models' own, except `guided` (none)."""
    return Selection("none") if selection.mode == "guided" else selection


def selected_models(
    sampler: Sampler,
    anchors: AnchorWeights,
    n: int,
    rng: np.random.Generator,
    scorers: tuple[Callable, Callable],
    selection: Selection,
) -> tuple[torch.Tensor, dict]:
    """(n models [n, params], the selection's report): `sampler` fitted on the anchors' aligned weights, its draws
    kept as `baseline_selection(selection)` says, scored by `scorers` (core/gen/ensemble.py `validation_scorers`)."""
    score, predictions = scorers
    applied = baseline_selection(selection)
    chunk = draw_chunk(anchors.width)  # draws made and scored at once, within the memory budget
    models, info, _ = select_models(
        sampler, anchors, anchors, n, rng, torch.from_numpy, score, applied, predictions=predictions, chunk=chunk
    )
    if applied.mode != selection.mode:
        info = info | {"note": GUIDED_NOTE}
    return models, info


def source_rows(anchors: Anchors, sources: np.ndarray) -> np.ndarray:
    """Rows of the anchors (in `anchors.ids` order) behind each generated model, one per model whose source
    anchor is known (its checkpoint id in `sources`); a model without one (-1: a point of a latent path) decodes
    every anchor of its run (the path's checkpoint ends) and counts each of them once."""
    row_of = {c: i for i, c in enumerate(anchors.ids)}
    rows = []
    for s in np.asarray(sources, dtype=np.int64):
        rows.extend([row_of[int(s)]] if int(s) in row_of else range(len(anchors.ids)))
    return np.array(rows, dtype=np.int64)


def reference_groups(
    anchors: Anchors, prepared: PreparedZoo, sources: np.ndarray, n: int, rng: np.random.Generator
) -> dict:
    """{"random_init": n fresh initialisations, "anchors": the generated models' source anchors (aligned)}; only
    those anchors are read, not all of them, a chunk at a time."""
    init = Counter(anchors.zoo.table["init"].to_list()).most_common(1)[0][0]
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, n)]
    schemes = [init if init in INITS else "kaiming_uniform"] * n
    sourced = AnchorWeights(prepared, anchors.rows).take(source_rows(anchors, sources))
    return {"random_init": init_vectors(anchors.spec, seeds, schemes), "anchors": sourced}


def simple_samplers(prepared: PreparedZoo) -> dict[str, Sampler]:
    """{noise, average, weight_gauss}: the simple weight-space generators, to fit on `AnchorWeights`."""
    return {"noise": WeightNoise(prepared.entry_std()), "average": WeightAverage(), "weight_gauss": WeightGauss()}


def simple_baselines(
    prepared: PreparedZoo,
    rows: np.ndarray,
    n: int,
    rng: np.random.Generator,
    scorers: tuple[Callable, Callable],
    selection: Selection,
) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """({noise, average, weight_gauss: n models each}, {each: its selection's report}) around the anchors at the
    zoo's `rows`, each kept by the generated models' selection (`baseline_selection`); the anchors' weights are
    read a chunk at a time, never all at once."""
    groups, reports, anchors = {}, {}, AnchorWeights(prepared, rows)
    for name, sampler in simple_samplers(prepared).items():
        groups[name], reports[name] = selected_models(sampler, anchors, n, rng, scorers, selection)
    return groups, reports


def noise_frontier(
    prepared: PreparedZoo,
    rows: np.ndarray,
    n: int,
    rng: np.random.Generator,
    scorers: tuple[Callable, Callable],
    selection: Selection,
) -> tuple[dict[float, torch.Tensor], dict]:
    """({scale: n models, each an aligned anchor (of the zoo's `rows`) plus Gaussian noise of `scale` times each
    layer's std}, the selection's report of each scale), every scale kept by the generated models' selection; each
    scale reads only the anchors its draws centre on."""
    std, models, reports, anchors = prepared.entry_std(), {}, {}, AnchorWeights(prepared, rows)
    for scale in FRONTIER_SCALES:
        models[scale], reports[scale] = selected_models(WeightNoise(std, scale), anchors, n, rng, scorers, selection)
    return models, reports


def selection_summary(info: dict) -> dict:
    """What a run records of the selection a group got (select_models' report): its mode, and where draws were
    scored, how many per kept model and the mean validation accuracy of all draws and of the kept (last round)."""
    summary = {"mode": info["mode"]}
    if info.get("history"):
        last = info["history"][-1]
        summary |= {"candidates": info["candidates"], "drawn_mean": last["drawn_mean"], "kept_mean": last["kept_mean"]}
    return summary | ({"note": info["note"]} if "note" in info else {})
