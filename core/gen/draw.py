"""Drawing new models: fit the sampler on the anchors' codes, draw codes, decode them to weights (re-estimating
BatchNorm statistics, as SANE does), and keep them as the selection says (guided by a probe of the embedding, or
scored on validation data)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import polars as pl
import torch

from core.gen.anchors import Anchors
from core.gen.calibrate import calibrate_spread
from core.gen.chunked_draws import draw_chunk
from core.gen.config import SampleConfig
from core.gen.ensemble import validation_scorers
from core.gen.finite import check_codes, check_generated
from core.gen.path import on_line, require_ends
from core.gen.samplers import Sampler, make_sampler
from core.gen.selection import select_models
from core.rep.embed import embedding_matrix, load_embeddings
from core.rep.prepare import PreparedZoo
from core.rep.probes import fit_ridge
from core.rep.run import AERun
from core.zoo.data import Dataset
from core.zoo.population import recalibrate_norm_statistics

SPREAD_CHECKPOINTS = 256  # a random subset of the zoo whose codes scale the one-anchor fallback noise


class Drawn(NamedTuple):
    weights: torch.Tensor  # [n, params], aligned
    sampler: Sampler  # fitted
    report: dict  # the selection's
    sources: np.ndarray  # [n] the checkpoint id of the anchor each model was drawn around; -1: a point of a path


def draw_models(
    run: AERun,
    prepared: PreparedZoo,
    anchors: Anchors,
    config: SampleConfig,
    source: Dataset,
    rng: np.random.Generator,
    device: str,
    table: pl.DataFrame | None = None,
    ends: torch.Tensor | None = None,
    anchor_codes: np.ndarray | None = None,
) -> Drawn:
    """The drawn models, the fitted sampler, the selection's report and each model's source anchor. `table`: the
    whole zoo's checkpoint table, which guided selection's probe learns accuracy from. `ends`: the aligned weights
    [2, params] of the latent path that `config.path_t` lies on (core/gen/path.py `path_ends`; default: the two
    anchors); the draws of a path's point have no anchor of their own (source -1). `anchor_codes`: the anchors'
    codes where the caller has them already (`run.encode_rows` of `anchors.rows`; else encoded here)."""
    spec = anchors.spec
    zoo_rows = np.random.default_rng([config.seed, 1]).permutation(len(anchors.zoo.table))[:SPREAD_CHECKPOINTS]
    if anchor_codes is None:
        anchor_codes = run.encode_rows(prepared, anchors.rows, device)
    # Only anchors without spacing need the zoo's codes (core/gen/samplers/base.py): encoded then, once.
    zoo_codes = functools.cache(lambda: run.encode_rows(prepared, np.sort(zoo_rows), device))
    ids = np.array(anchors.ids, dtype=np.int64)
    if config.path_t is not None:  # one anchor: the point at t of the latent path between its ends
        if ends is None:
            require_ends(anchors)
        end_codes = anchor_codes if ends is None else run.encode(prepared, ends, device)
        anchor_codes, ids = on_line(end_codes, np.array([config.path_t])), np.array([-1])

    sampler = make_sampler(config.method, 0.0 if config.spread is None else config.spread, run.code_token_width)

    def decode(codes: np.ndarray) -> torch.Tensor:
        check_codes(codes, sampler.spread)
        # Decoded BatchNorm statistics are unreliable: re-estimate them on training images (SANE does).
        return recalibrate_norm_statistics(spec, run.decode(prepared, codes, device), source.x_train)

    score, predictions = validation_scorers(spec, *source.scored_val)
    chunk = draw_chunk(spec.n_params)  # draws decoded and scored at once, within the memory budget
    predict = accuracy_predictor(run, prepared, table) if config.selection == "guided" and table is not None else None
    calibration, selection = None, config.selector
    if config.spread is None:  # chosen for the zoo (a path's point: scored against its ends, which are the anchors)
        keep_by, judge = split_scorers(spec, source)
        anchor_scores = np.concatenate([judge(c) for _, c in prepared.iter_aligned(anchors.rows)])
        if config.path_t is not None:  # the one point drawn around stands for both ends
            anchor_scores = anchor_scores.mean(keepdims=True)
        best_of = config.candidates if selection.mode in ("subsample", "bootstrap") else 1  # kept by validation
        target, seed = config.spread_keep, config.seed
        calibration = calibrate_spread(
            sampler, anchor_codes, zoo_codes, anchor_scores, target, seed, decode, keep_by, best_of, judge, chunk
        )
    weights, report, rows = select_models(
        sampler, anchor_codes, zoo_codes, config.n, rng, decode, score, selection, predict, predictions, chunk
    )
    check_generated(weights, sampler.spread)
    if calibration is not None:
        report = report | {"spread_calibration": calibration.to_json()}
    return Drawn(weights, sampler, report, ids[rows])


def split_scorers(spec, source: Dataset) -> tuple:
    """Validation accuracy on alternate halves of the scored validation images (core/zoo/data.py
    SCORED_VAL_IMAGES): the spread's calibration keeps draws by the first and judges them by the second. A split of
    fewer than two images is not halved."""
    x, y = source.scored_val
    if len(y) < 2:
        score = validation_scorers(spec, x, y)[0]
        return score, score
    return validation_scorers(spec, x[0::2], y[0::2])[0], validation_scorers(spec, x[1::2], y[1::2])[0]


def accuracy_predictor(run: AERun, prepared: PreparedZoo, table: pl.DataFrame):
    """codes -> predicted accuracy: a ridge probe from the run's map embedding to validation accuracy (test accuracy
    where a zoo has no validation split), fit on the run's training models, lambda chosen on its validation models.
    The test models stay out of it."""
    embeddings = load_embeddings(run.files).join(table, on="checkpoint", how="left")
    metric = "val_acc" if embeddings["val_acc"].is_not_nan().all() else "test_acc"
    target = embeddings[metric].cast(pl.Float64).to_numpy()
    probe = fit_ridge(embedding_matrix(embeddings), target, embeddings["split"].to_numpy())
    return lambda codes: probe.predict(run.code_embedding(prepared, codes))
