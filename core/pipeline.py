"""The engine's two journeys as named steps: train an autoencoder and map the zoo (`train_and_map`), and generate
models from it (`generate`). The command line, the app and the default-workspace build all call these, so the
order of the steps, and what each leaves on disk, is written once.

    run = train_and_map(workspace, AEConfig(), TrainConfig())
    samples = generate(workspace, SampleConfig(anchors="top:0.3", n=16))
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from functools import partial
from typing import NamedTuple

import numpy as np
import polars as pl
import torch

from core.cluster import ClusterConfig
from core.errors import ZooError
from core.gen.anchors import Anchors, anchor_warnings, resolve_anchors
from core.gen.baselines import noise_frontier, reference_groups, selection_summary, simple_baselines
from core.gen.config import SampleConfig
from core.gen.draw import draw_models
from core.gen.ensemble import validation_scorers
from core.gen.ensemble_groups import ensemble_groups, ensemble_section
from core.gen.fidelity import Fidelity, faithful_anchors
from core.gen.finetune import finetune_groups, transfer_summary, zoo_recipe
from core.gen.finite import check_results
from core.gen.intervals import accuracy_intervals, novelty_intervals
from core.gen.novelty import (
    ZooErrorSets,
    ZooReference,
    agreement,
    decoded_novelty,
    groups_novelty,
    novelty_plane,
    predicted_classes,
    zoo_agreement_median,
    zoo_novelty,
)
from core.gen.path import path_ends, require_ends
from core.gen.selection import Selection
from core.rep.autoencoder import AEConfig
from core.rep.distributed import place
from core.rep.embed import compute_map, embedding_matrix, load_embeddings, place_on_map
from core.rep.evaluate import evaluate_run
from core.rep.loop import TrainConfig
from core.rep.prepare import PreparedZoo
from core.rep.run import AERun, load_run, run_name
from core.rep.train import settings_for_device, train_autoencoder
from core.store import packing
from core.store.commit import rename_exclusive
from core.store.runs import SamplesRun, checked_run_name, run_identity
from core.store.workspace import Workspace, zoo_stamp
from core.zoo.data import Dataset, load_dataset
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.model_zoo import Zoo, combined_table, load_zoos
from core.zoo.population import recalibrate_norm_statistics
from core.zoo.table import read_checkpoint_table

Progress = Callable[[int, int, dict], None]


# ---------------------------------------------------------------- the representation


def train_and_map(
    workspace: Workspace,
    ae_config,
    train_config: TrainConfig | None = None,
    run: str | None = None,
    device: str = "cpu",
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    evaluate: bool = True,
) -> AERun | None:
    """Train (or resume, or load) the run, map every checkpoint, mark the run done, then evaluate it. The writer
    lock is held throughout, so no other writer changes the zoo between training and mapping; a rerun finishes
    whatever an interrupted one left (a trained run without its map is mapped). On CUDA the default batch size
    and learning rate are scaled up to fill the GPU (core/rep/train.py `settings_for_device`). Under torchrun,
    the processes other than rank 0 only train beside it, and return None."""
    train_config = settings_for_device(train_config or TrainConfig(), device)
    name = checked_run_name(run if run is not None else run_name(ae_config, train_config))
    workspace.manifest()  # a missing workspace is said here, before the lock would create its folder
    if not place().writer:
        return train_autoencoder(workspace, ae_config, train_config, name, device)
    with workspace.lock():
        trained = train_autoencoder(
            workspace, ae_config, train_config, name, device, _phase(on_progress, "training"), should_stop
        )
        files = trained.files
        points = {"points": read_checkpoint_table(workspace.models_table_path).height}  # what a phase's time scales by
        if trained.status != "done" or not files.embeddings.exists():
            report = _phase(on_progress, "map", points)
            report(0, 1, {})
            compute_map(workspace, trained, load_zoos(workspace), device)
            files.write_config({**files.read_config(), "status": "done"})
            report(1, 1, {})
        trained.status = "done"
        if evaluate:
            report = _phase(on_progress, "evaluation", points)
            report(0, 1, {})
            evaluate_run(workspace, trained.name, device)
            report(1, 1, {})
    return trained


def _phase(on_progress: Progress | None, phase: str, carry: dict | None = None) -> Progress:
    """The progress callback of one phase: info["phase"] names it, so a bar (or the app) starts a new line;
    `carry` goes into every report's info (e.g. the curves so far, which the app keeps drawing)."""

    def report(done: int, total: int, info: dict) -> None:
        if on_progress:
            on_progress(done, total, {"phase": phase, **(carry or {}), **info})

    return report


# ---------------------------------------------------------------- generation


def generate(
    workspace: Workspace,
    config: SampleConfig,
    run_name: str | None = None,
    device: str = "cpu",
    on_progress: Progress | None = None,
    zoo_errors: ZooErrorSets | None = None,
    cluster: ClusterConfig | None = None,
) -> SamplesRun:
    """Anchors -> sampler -> decoded weights -> evaluated and fine-tuned beside the baselines, with novelty
    figures and map positions, written as a samples run. `zoo_errors` keeps the zoo's error sets between calls
    (the app passes one for its lifetime). With `cluster`, the fine-tuning runs in shards on Ray."""
    started = time.monotonic()  # the run records its duration: the Generate page compares runs by it
    run, zoos = load_run(workspace, run_name), load_zoos(workspace)
    seen = run_identity(folder := SamplesRun.folder_of(workspace, _samples_name(config, run.name)))
    run.files.check_zoo(stamp := zoo_stamp(zoos[0].manifest))  # the zoo read is still the run's
    anchors = _anchors(zoos, table := combined_table(zoos), config)
    (preparing := _phase(on_progress, "preparing"))(0, 1, {})  # after the checks: a refusal prints no bar
    prepared = run.prepare(anchors.zoo)
    source_name, source = _source_dataset(anchors.zoo.manifest)
    rng = np.random.default_rng(config.seed)
    drawing = _drawing(workspace, run, prepared, anchors, config, source, device, zoo_errors)
    anchors, codes = drawing.anchors, drawing.codes  # the anchors the autoencoder reproduces
    generated, sampler, selected, sources = _draw(workspace, drawing, config, source, rng, device, table)
    preparing(1, 1, {})
    groups, selections = _groups(generated, sources, anchors, prepared, config, source, rng)
    finetuned_groups = _finetune(anchors, groups, config, source, device, on_progress, cluster, classes := {})
    new_head, (curves, per_model, finetuned) = finetuned_groups
    measuring = _phase(on_progress, "novelty", {"curves": curves})  # the page keeps drawing the curves
    made = (run, anchors, prepared, device, codes)  # the generated models are also compared with the run's decodes
    figures, frontier = _novelty_phase(workspace, made, (groups, classes), config, source, rng, zoo_errors, measuring)
    map_xy = _map_positions(run, zoos, prepared, generated, device, _phase(on_progress, "placing", {"curves": curves}))
    kept = _kept_weights(config, source, groups, finetuned, sources)
    results = _checked_results(config, groups, curves, figures, (generated, kept["finetuned"]), sampler.spread)
    ensembles = _ensembles(anchors, prepared, (kept, sources), config, source, device, _phase(on_progress, "ensembles"))
    samples = SamplesRun(
        folder=folder,
        ae_run=run.name,
        ae_kind=run.kind,
        method=config.method,
        n=config.n,
        dataset=config.dataset or source_name,
        source_dataset=source_name,
        architecture=anchors.spec.name,
        activation=anchors.activation,
        anchors=_anchors_record(config, anchors),
        novelty_baselines={name: _medians(f) for name, f in figures.items() if name != "generated"},
        selection=selected,
        config=asdict(config),
        fallback=sampler.fallback,
        extra=_extra((frontier, selections), started, curves, new_head, anchors, config, (per_model, figures)),
        **stamp,
        **ensembles,
        **results,
    )
    tables = (_samples_table(per_model["generated"], figures["generated"], map_xy, sources), curves)
    meta = {"architecture": anchors.spec.to_json(), "method": config.method}
    samples.write(kept, meta, (*tables, novelty_plane(per_model, figures)), seen)
    return samples


def _own_task(config: SampleConfig, source: Dataset) -> bool:
    """Whether the run fine-tunes on the zoo's own task (its test split is then the ensembles' for every group)."""
    return config.finetune_epochs > 0 and config.dataset in (None, source.name)


def _kept_weights(
    config: SampleConfig, source: Dataset, groups: dict, final: torch.Tensor, sources: np.ndarray
) -> dict:
    """The weights a samples run keeps: the generated models as drawn and after fine-tuning (`final` holds every
    group's, in the order of `groups`); where the run evaluates its ensembles on the zoo's own task, also its
    source anchors after the same fine-tuning, the fine-tuned ensemble's like-for-like line (`ensemble` reads
    them again). Only where every generated model has a source anchor (`sources`, -1: a point of a latent path,
    whose anchors group holds both ends): one anchor per generated model."""
    rows = dict(zip(groups, torch.split(final, [len(members) for members in groups.values()]), strict=True))
    kept = {"generated": groups["generated"], "finetuned": rows["generated"]}
    if config.ensemble and _own_task(config, source) and (np.asarray(sources) >= 0).all():
        kept["anchors_finetuned"] = rows["anchors"]
    return kept


def _checked_results(config: SampleConfig, groups: dict, curves, figures: dict, models: tuple, spread: float) -> dict:
    """The run's {"curves": mean accuracy per group and epoch, "novelty": the generated models' medians}, checked
    finite with the generated and fine-tuned weights (`models`) before anything is written (core/gen/finite.py).
    `spread`: the one the models were drawn at (given, or chosen for the zoo), which a message about them names."""
    group_curves = {g: curves.filter(pl.col("group") == g).sort("epoch")["acc_mean"].to_list() for g in groups}
    results = {"curves": group_curves, "novelty": _medians(figures["generated"])}
    generated, finetuned = models
    check_results(generated, finetuned, results, spread, config.lr)
    return results


def _ensembles(
    anchors: Anchors, prepared, drawn: tuple, config: SampleConfig, source: Dataset, device, report: Progress
) -> dict:
    """The run's ensemble fields (core/gen/ensemble_groups.py), if the config asks for them: generated, source
    anchors, both fine-tuned (on the zoo's own task only: the section evaluates every group on its test split),
    noise, deep ensemble. `drawn`: (the weights the run keeps, `_kept_weights`; each generated model's source)."""
    if not config.ensemble:
        return {}
    report(0, 1, {})
    kept, sources = drawn
    generated, seed = kept["generated"], config.seed
    finetuned = {name: kept[name] for name in kept if name != "generated"} if _own_task(config, source) else {}
    groups, notes = ensemble_groups(anchors, prepared, generated, finetuned, sources, config.selector, source, seed)
    return ensemble_section(anchors.spec, groups, notes, source, seed, device)


def ensembles(workspace: Workspace, samples_run: str, device: str = "cpu", refresh: bool = False) -> SamplesRun:
    """A finished samples run with its ensembles: read where the run has them (unless `refresh`), else computed
    from its files (generated and fine-tuned weights, source anchors) and the zoo, and written into its record,
    unless another command rewrote the run while they were computed (then refused, and its record kept)."""
    seen = run_identity(SamplesRun.folder_of(workspace, samples_run))  # another command may rewrite the run meanwhile
    samples = SamplesRun.load(workspace, samples_run)
    if samples.ensembles is not None and not refresh:
        return samples
    run = load_run(workspace, samples.ae_run)
    zoos = load_zoos(workspace)
    ids = samples.anchors.get("ids")
    rule = "ids:" + ",".join(str(i) for i in ids) if ids else samples.anchors["rule"]
    anchors = resolve_anchors(zoos, combined_table(zoos), rule)
    prepared = run.prepare(anchors.zoo)
    _, source = _source_dataset(anchors.zoo.manifest)
    config = samples.config
    selection = Selection(config.get("selection", "none"), config.get("candidates", 4), config.get("rounds", 3))
    tensors = samples.weights()
    own_task = config["finetune_epochs"] > 0 and not samples.transfer
    finetuned = {name: tensors[name] for name in tensors if name != "generated"} if own_task else {}
    sources = np.array([-1 if s is None else s for s in samples.source_anchors()], dtype=np.int64)
    seed = int(config.get("seed", 0))
    generated = tensors["generated"]
    groups, notes = ensemble_groups(anchors, prepared, generated, finetuned, sources, selection, source, seed)
    section = ensemble_section(anchors.spec, groups, notes, source, seed, device)
    samples = replace(samples, **section)
    samples.update_record(seen)
    return samples


def _anchors_record(config: SampleConfig, anchors: Anchors) -> dict:
    """The record's anchors: the rule, how many and which it gave, and how many it named that were dropped (the
    run's anchor warnings say why)."""
    return {"rule": config.anchors, "count": len(anchors.ids), "ids": anchors.ids, "dropped": anchors.dropped_count}


def _anchors(zoos: list, table: pl.DataFrame, config: SampleConfig) -> Anchors:
    """The config's anchors, checked before any work: for a point of a latent path, its checkpoint ends."""
    anchors = resolve_anchors(zoos, table, config.anchors)
    if config.path_t is not None:
        require_ends(anchors, config.path_to)
    return anchors


class Drawing(NamedTuple):
    """What drawing around the anchors starts from: the anchors encoded once (drawing and the anchors' decodes both
    need the codes), after the fidelity check (core/gen/fidelity.py) where it ran."""

    run: AERun
    prepared: PreparedZoo
    anchors: Anchors  # those the autoencoder reproduces, where the check ran
    codes: np.ndarray  # [anchors, code]
    fidelity: Fidelity | None  # the check's record; None where it did not run


def _drawing(
    workspace: Workspace,
    run: AERun,
    prepared,
    anchors: Anchors,
    config: SampleConfig,
    source: Dataset,
    device: str,
    zoo_errors: ZooErrorSets | None,
) -> Drawing:
    """The anchors encoded, then narrowed to those the autoencoder reproduces, except where the run decodes given
    points (spread 0, or a point of a latent path). `zoo_errors`, where given, keeps the check's measurements for
    the next generation around the same anchors."""
    codes = run.encode_rows(prepared, anchors.rows, device)
    if config.spread == 0 or config.path_t is not None:
        return Drawing(run, prepared, anchors, codes, None)
    key = _decodes_key(workspace, run, anchors, source)
    kept = partial(zoo_errors.decoded_shares, key) if zoo_errors is not None else None
    drawn_from, threshold = (anchors, codes), config.anchor_fidelity
    anchors, codes, found = faithful_anchors(run, prepared, drawn_from, source, threshold, device, kept)
    return Drawing(run, prepared, anchors, codes, found)


def _draw(workspace, drawing: Drawing, config: SampleConfig, source, rng, device, table):
    """draw_models (core/gen/draw.py) from `drawing`, its report with the fidelity check's record; for a point of a
    latent path to a generated model, on the path's ends, the second read from its samples run here (a path between
    two checkpoints runs between the anchors themselves)."""
    run, prepared, anchors, codes, found = drawing
    ends = path_ends(workspace, run, prepared, anchors, config.path_to) if config.path_to is not None else None
    drawn = draw_models(run, prepared, anchors, config, source, rng, device, table, ends, codes)
    return drawn if found is None else drawn._replace(report=drawn.report | {"anchor_fidelity": found.to_json()})


def _extra(
    baselines: tuple[list[dict], dict],
    started: float,
    curves: pl.DataFrame,
    new_head: bool,
    anchors: Anchors,
    config: SampleConfig,
    per_model_figures: tuple[dict, dict],
) -> dict:
    """A run's further figures: the noise frontier, its duration up to the write (the comparison view shows it),
    the transfer summary, what was wrong with the anchors for sampling around them (the page warns before a
    run; the CLI prints these after it), and the intervals over models of each group's accuracy and novelty
    (core/gen/intervals.py; the bootstrap seeded by the run's seed). Decoding a point (spread 0, or a point of a
    latent path) samples no density, so nothing is wrong with one or two anchors there; anchors the rule named
    but the generation dropped are named either way. Also: the selection each group got, and the generated models'
    accuracy over that of their source anchors (as generated, and after fine-tuning)."""
    seconds = round(time.monotonic() - started, 2)
    decoding = config.spread == 0 or config.path_t is not None
    warnings = list(anchors.dropped) if decoding else anchor_warnings(anchors)
    frontier, selections = baselines
    figures = {"noise_frontier": frontier, "seconds": seconds, "anchor_warnings": warnings}
    if frontier:  # its mode; how each scale's draws scored is in its own point
        how = frontier[0]["selection"]
        selections = selections | {"noise_frontier": {k: v for k, v in how.items() if k in ("mode", "note")}}
    figures["baseline_selection"] = selections
    figures["source_ratio"] = _source_ratio(curves)
    per_model, novelty_figures = per_model_figures
    figures["intervals"] = accuracy_intervals(per_model, config.seed)
    figures["novelty_intervals"] = novelty_intervals(novelty_figures, config.seed)
    return {**figures, **transfer_summary(curves, new_head)}


def _groups(generated, sources, anchors: Anchors, prepared, config: SampleConfig, source: Dataset, rng) -> tuple:
    """({group: aligned weight vectors}, {group: the selection it got}): the generated models and what they are
    compared with: random init, the generated models' source anchors, and (unless turned off) the simple
    weight-space baselines, kept by the generated models' selection on the same validation data
    (core/gen/baselines.py)."""
    groups = {"generated": generated, **reference_groups(anchors, prepared, sources, config.n, rng)}
    selections = {"random_init": {"mode": "none"}, "anchors": {"mode": "source anchors of the generated models"}}
    if config.baselines:  # the weight-space baselines draw around the anchors, read a chunk at a time
        scorers = validation_scorers(anchors.spec, *source.scored_val)
        simple, reports = simple_baselines(prepared, anchors.rows, config.n, rng, scorers, config.selector)
        groups.update(simple)
        selections.update({name: selection_summary(info) for name, info in reports.items()})
    return groups, selections


def _source_ratio(curves: pl.DataFrame) -> dict:
    """{"as_generated", "finetuned"}: the generated models' mean test accuracy over their source anchors' (None
    where the anchors' mean is 0, or without fine-tuning)."""
    mean = {
        g: curves.filter(pl.col("group") == g).sort("epoch")["acc_mean"].to_list() for g in ("generated", "anchors")
    }
    generated, anchors = mean["generated"], mean["anchors"]

    def ratio(epoch: int) -> float | None:
        return generated[epoch] / anchors[epoch] if anchors[epoch] > 0 else None

    return {"as_generated": ratio(0), "finetuned": ratio(-1) if len(generated) > 1 else None}


def _finetune(
    anchors: Anchors, groups: dict, config: SampleConfig, source: Dataset, device, on_progress, cluster, classes
):
    """(whether the output layer was drawn anew, finetune_groups' result): every group fine-tuned together on the
    target (the zoo's own dataset unless the config names another), with the zoo's recipe unless the config gives
    one, reporting the curves so far after each epoch (the "fine-tuning" phase of `on_progress`). A target of other
    classes gets a fresh output layer. Where the target is the zoo's own task, `classes` is filled with each group's
    test predictions as it started (the novelty figures need them)."""
    name = config.dataset
    target = source if name in (None, source.name) else load_dataset(name, seed=_seed(anchors.zoo.manifest))
    new_head = target.label_space != source.label_space
    lr, batch_size = zoo_recipe(anchors.zoo, config.lr, config.batch_size)

    report = _phase(on_progress, "fine-tuning")

    def progress(epoch: int, curves: pl.DataFrame) -> None:
        report(epoch + 1, config.finetune_epochs + 1, {"curves": curves})

    epochs, seed = config.finetune_epochs, config.seed
    own = classes if target is source else None  # another task's predictions are not the zoo's test set's
    return new_head, finetune_groups(
        anchors.spec, groups, target, epochs, seed, lr, batch_size, device, progress, new_head, cluster, own
    )


def _source_dataset(manifest: dict) -> tuple[str | None, Dataset]:
    """The zoo's own dataset: its name as the manifest gives it, and the data."""
    source = manifest.get("dataset", {})
    return source.get("name"), load_dataset(source.get("name", "unknown"), seed=_seed(manifest))


def _seed(manifest: dict) -> int:
    """The zoo's data seed: a transfer task draws its splits with it too, so `digits:invert` tests on the images
    that `digits` tests on."""
    return manifest.get("dataset", {}).get("seed", 0)


def _novelty_phase(workspace, made: tuple, measured: tuple, config, source, rng, zoo_errors, report) -> tuple:
    """(each group's novelty figures, the noise baseline's frontier), reporting the two steps. `made`: the
    autoencoder run, anchors, prepared zoo, device and the anchors' codes; `measured`: the groups and the test
    predictions known of them; the generated models are also compared with the run's decodes of the anchors, a
    chunk of anchors at a time (core/gen/novelty.py)."""
    run, anchors, prepared, device, codes = made
    generated, spec = measured[0]["generated"], anchors.spec
    report(0, 2, {})
    zoo_errors = zoo_errors or ZooErrorSets()
    reference = _zoo_reference(workspace, anchors, prepared, source, zoo_errors)
    figures, predicted = _novelty_figures(anchors, prepared, measured, source, reference, with_agreement=True)
    decoded = _decoded_anchors(run, prepared, anchors, codes, source, device)
    decodes = zoo_errors.decoded_errors(_decodes_key(workspace, run, anchors, source), spec, decoded, source)
    figures["generated"] |= decoded_novelty(generated, predicted["generated"] != source.y_test, decodes)
    report(1, 2, {})
    return figures, _frontier(anchors, prepared, config, source, rng, reference)


def _decoded_anchors(run: AERun, prepared, anchors: Anchors, codes, source: Dataset, device) -> Iterator[torch.Tensor]:
    """The anchors decoded from their codes by the run, a chunk at a time, BatchNorm statistics re-estimated as for
    generated models (core/gen/draw.py): what a spread-0 generation returns."""
    for decoded in run.decode_chunks(prepared, codes, device):
        yield recalibrate_norm_statistics(anchors.spec, decoded, source.x_train)


def _zoo_reference(workspace, anchors: Anchors, prepared, source: Dataset, zoo_errors: ZooErrorSets) -> ZooReference:
    """What every group of a generation is compared with, computed once for all of them: the zoo's predictions
    (kept in `zoo_errors` under the zoo's key), error sets, model ids and its own novelty medians."""
    zoo = anchors.zoo
    key = _zoo_errors_key(workspace, zoo, source)
    predictions = zoo_errors.predictions(key, zoo.spec, prepared, source, zoo.table["activation"].to_list())
    errors, models = predictions != source.y_test, zoo.table["model_id"].to_numpy()
    return ZooReference(predictions, errors, models, zoo_novelty(prepared, errors, models))


def _novelty_figures(
    anchors: Anchors, prepared, measured: tuple, source: Dataset, reference: ZooReference, with_agreement=False
) -> tuple[dict, dict]:
    """(each group's novelty figures against the zoo, each group's predicted test classes) (core/gen/novelty.py):
    L2, error-IoU and prediction agreement, the distances of all groups in one pass over the zoo; `measured`:
    ({group: vectors}, {group: its predicted classes where known already}); `with_agreement`: the zoo's own median
    agreement beside them (once: it costs more than the rest). Random init is not a generator."""
    groups, known = measured
    generators = {name: vectors for name, vectors in groups.items() if name != "random_init"}
    predicted = {
        name: known[name] if name in known else predicted_classes(anchors.spec, vectors, source)
        for name, vectors in generators.items()
    }
    errors = {name: classes != source.y_test for name, classes in predicted.items()}
    figures = groups_novelty(generators, errors, prepared, reference.errors, reference.figures)
    zoo_figures = {}
    if with_agreement:
        zoo_figures["zoo_max_agreement_median"] = zoo_agreement_median(reference.predictions, reference.models)
    for name, classes in predicted.items():
        figures[name] |= agreement(classes, reference.predictions) | zoo_figures
    return figures, predicted


def _zoo_errors_key(workspace: Workspace, zoo: Zoo, source: Dataset) -> tuple:
    """What a zoo's error sets are kept under: the workspace, the zoo's id (read with its weights, so a zoo
    replaced in between cannot pass for the one loaded; a zoo from before ids: its file's time), its architecture
    and the dataset."""
    version = zoo_stamp(zoo.manifest)["zoo_id"] or workspace.zoo_weights_path.stat().st_mtime_ns
    return (str(workspace.root), version, zoo.spec.name, source.name)


def _decodes_key(workspace: Workspace, run: AERun, anchors: Anchors, source: Dataset) -> tuple:
    """What the error sets of a run's decodes of the anchors are kept under: the zoo's key, the run (its name and
    its weights file's time, so a run trained again under the name is seen) and the anchors."""
    trained = run.files.model.stat().st_mtime_ns
    return (*_zoo_errors_key(workspace, anchors.zoo, source), run.name, trained, anchors.activation, *anchors.ids)


def precompute_zoo_errors(workspace: Workspace, zoo_errors: ZooErrorSets) -> None:
    """Compute the error sets of the workspace's zoos (one per architecture) into `zoo_errors`, from the zoo's own
    weights: the app does it in the background when a workspace is opened, so the first generation does not
    (a few seconds on 2 cores for the default zoo)."""
    for zoo in load_zoos(workspace):
        _, source = _source_dataset(zoo.manifest)
        activations = zoo.table["activation"].to_list()
        zoo_errors.get(_zoo_errors_key(workspace, zoo, source), zoo.spec, zoo, source, activations)


def _frontier(anchors: Anchors, prepared, config, source: Dataset, rng, reference: ZooReference) -> list[dict]:
    """The noise baseline at every scale of its frontier, each scale kept by the generated models' selection
    (core/gen/baselines.py): mean accuracy as generated, median novelty and the selection it got (the Generate
    page draws it as a line on the novelty plane); none when the baselines are off."""
    if not config.baselines:
        return []
    scorers = validation_scorers(anchors.spec, *source.scored_val)
    models, reports = noise_frontier(prepared, anchors.rows, config.n, rng, scorers, config.selector)
    groups = {str(k): v for k, v in models.items()}
    figures, predicted = _novelty_figures(anchors, prepared, (groups, {}), source, reference)
    accuracy = {k: (predicted[str(k)] == source.y_test).float().mean(1) for k in models}  # the same pass's classes
    return [
        {"scale": k, "acc_mean": float(accuracy[k].mean()), **_medians(figures[str(k)])}
        | {"selection": selection_summary(reports[k])}
        for k in models
    ]


def _medians(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if k.endswith("median")}


def _map_positions(run: AERun, zoos: list, prepared, generated: torch.Tensor, device: str, report: Progress):
    """Where generated models sit on the run's map (core/rep/embed.py `place_on_map`)."""
    report(0, 1, {})
    table = load_embeddings(run.files, combined_table(zoos)["checkpoint"].to_list())
    stored, new = embedding_matrix(table), run.embed(prepared, generated, device)
    if stored.shape[1] != new.shape[1]:
        raise ZooError(f"{run.files.embeddings}: embeddings of {stored.shape[1]} values; the run makes {new.shape[1]}")
    return place_on_map(stored, table.select("umap_x", "umap_y").to_numpy(), new)


def _samples_table(accuracy: np.ndarray, figures: dict, map_xy: np.ndarray, sources: np.ndarray) -> pl.DataFrame:
    """One row per generated model: accuracy as generated and after fine-tuning, novelty (against the zoo and
    against the generator's decodes of its anchors), map position, and the checkpoint id of the anchor it was
    drawn around (empty for a point of a latent path)."""
    anchor = pl.Series("source_anchor", [int(s) if s >= 0 else None for s in sources], dtype=pl.Int64)
    return pl.DataFrame(
        {
            "sample": list(range(len(accuracy))),
            "acc_epoch0": accuracy[:, 0],
            "acc_final": accuracy[:, -1],
            "min_l2": figures["min_l2"],
            "max_iou": figures["max_iou"],
            "max_agreement": figures["max_agreement"],
            "decoded_min_l2": figures["decoded_min_l2"],
            "decoded_max_iou": figures["decoded_max_iou"],
            "umap_x": map_xy[:, 0],
            "umap_y": map_xy[:, 1],
        }
    ).with_columns(anchor)


def _samples_name(config: SampleConfig, ae_run: str) -> str:
    """Named by the settings and the run: the same request overwrites its own run, others get a new name."""
    settings = asdict(config)
    del settings["ensemble"]  # the same models with or without their ensembles: one run, which --ensemble completes
    digest = hashlib.sha256(json.dumps([settings, ae_run], sort_keys=True).encode()).hexdigest()[:6]
    return f"{config.method}-{digest}"


# ---------------------------------------------------------------- whole workspaces


def default_configs() -> tuple[ZooConfig, AEConfig, TrainConfig]:
    """(zoo, autoencoder, training) settings: what `zoo generate` and `ae train` do without options."""
    return ZooConfig(), AEConfig(), TrainConfig()


def build_workspace(
    workspace: Workspace,
    configs: tuple,
    device: str = "cpu",
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """A whole workspace from scratch: zoo, autoencoder, map and evaluation, reporting progress with
    info["phase"] in zoo, training, map, evaluation.

    The work happens in a hidden staging workspace beside the target, renamed into place when complete, so the
    target either does not exist or is whole; a stopped build resumes where it stopped."""
    zoo_config, ae_config, train_config = configs
    staging = Workspace(workspace.root.parent / f".{workspace.root.name}.staging")
    if not staging.exists():
        generate_zoo(staging, zoo_config, device, _phase(on_progress, "zoo"), should_stop)
    train_and_map(staging, ae_config, train_config, None, device, on_progress, should_stop)
    try:  # a rename of a folder would replace an empty target folder: this one refuses any
        rename_exclusive(staging.root, workspace.root)
    except FileExistsError:
        raise ZooError(
            f"{workspace.root}: appeared while the workspace was built; the build stays in {staging.root}"
        ) from None


# ---------------------------------------------------------------- moving workspaces


def _validate(workspace: Workspace) -> None:
    load_zoos(workspace)


def pack_workspace(workspace: Workspace, out, force: bool = False) -> dict:
    """The workspace as one zip (core/store/packing.py), refused if its zoo does not load."""
    return packing.pack_workspace(workspace, out, _validate, force)


def unpack_workspace(source, target) -> Workspace:
    """A pack unpacked into a new folder, which appears only once its zoo loads."""
    return packing.unpack_workspace(source, target, _validate)
