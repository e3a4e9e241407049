"""The commands: each takes the parsed options and returns the JSON-ready result that `--json` prints."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace

from core.cli.launch import launch
from core.cli.options import settings_from, variant_from
from core.cli.progress import with_progress
from core.cli.terminal import printable
from core.cluster import ClusterConfig, connect
from core.errors import UserError
from core.gen.config import SampleConfig
from core.gen.export import export_ensemble, export_samples
from core.pipeline import ensembles, generate, pack_workspace, train_and_map, unpack_workspace
from core.rep import distributed
from core.rep.embed import set_aggregation
from core.rep.evaluate import evaluate_run
from core.rep.loop import TrainConfig
from core.rep.methods import METHODS, method_named, preset_settings
from core.rep.run import load_run
from core.runtime import resolve_device
from core.store.output import checked_output
from core.store.runs import stale_runs
from core.store.workspace import Workspace
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.model_zoo import load_zoos, zoo_info
from core.zoo.public import import_public_zoo

KIND_CONFIGS = {kind: method.config_type for kind, method in METHODS.items()}


def _cluster(args: argparse.Namespace) -> ClusterConfig | None:
    """The Ray cluster asked for with --cluster, or None (this process does the work). On a cluster --device is
    the cluster's to resolve (auto: a GPU per shard where it has GPUs), not this machine's."""
    cluster = settings_from(ClusterConfig, args, device=args.device)
    if not cluster.cluster:
        return None
    connect(cluster.cluster)  # before any work: a missing ray or an unreachable cluster is said at once
    return cluster


def zoo_generate(args: argparse.Namespace) -> dict:
    config = settings_from(ZooConfig, args)
    cluster = _cluster(args)
    device = resolve_device(args.device)
    workspace = Workspace(args.workspace)
    zoos = with_progress(
        "training zoo (epochs over all shards)" if cluster else "training zoo (epochs)",
        args.quiet,
        lambda bar: generate_zoo(workspace, config, device, bar, replace=args.replace, cluster=cluster),
    )
    return {**zoo_info(zoos), "stale_runs": _warn_stale(workspace)}


def zoo_import(args: argparse.Namespace) -> dict:
    workspace = Workspace(args.workspace)
    report = with_progress(
        "importing models",
        args.quiet,
        lambda bar: import_public_zoo(args.source, workspace, args.dataset, bar, replace=args.replace),
    )
    for problem in report.problems:
        print(f"warning: {printable(problem)}", file=sys.stderr)
    info = zoo_info([report.zoo])
    return {**info, "imported_models": report.models, "problems": report.problems, "stale_runs": _warn_stale(workspace)}


def _warn_stale(workspace: Workspace) -> list[str]:
    """The runs a replaced zoo left stale, each named on stderr."""
    stale = stale_runs(workspace)
    for run in stale:
        print(f"warning: {run} was made from the replaced zoo and is now stale", file=sys.stderr)
    return stale


def zoo_describe(args: argparse.Namespace) -> dict:
    return zoo_info(load_zoos(Workspace(args.workspace)))


def _ae_settings(args: argparse.Namespace) -> tuple:
    """(autoencoder config, training settings, device) of `ae train`'s options; a bad one raises a UserError."""
    method = method_named(args.kind)
    device = resolve_device(args.device)
    preset = preset_settings(method, args.preset, device)
    own = {f.name for f in fields(method.config_type)}
    ae = variant_from(method.config_type, args.kind, args, KIND_CONFIGS, {k: v for k, v in preset.items() if k in own})
    # A preset's training settings (its learning rate and schedule) apply where the options were left out: an
    # option given at the default's value (--lr 1e-3, as the learning check may suggest) is the user's choice.
    untouched = {k: v for k, v in preset.items() if k not in own and getattr(args, k, None) is None}
    return ae, replace(settings_from(TrainConfig, args), **untouched), device


def ae_train(args: argparse.Namespace) -> dict | None:
    """Train, map and evaluate; under torchrun every process trains and rank 0 alone reports (the others None)."""
    ae, train, device = _ae_settings(args)
    here = distributed.start(device)
    workspace = Workspace(args.workspace)
    try:
        run = with_progress(
            "autoencoder",
            args.quiet or not here.writer,
            lambda bar: train_and_map(workspace, ae, train, args.run, device, on_progress=bar),
        )
    finally:
        distributed.leave()  # training ended the group already (distributed.stop); after an error, at once
    if not here.writer:
        return None
    result = evaluate_run(workspace, run.name, device)
    for warning in result.get("warnings", []):  # the learning check's (core/rep/learning_check.py)
        print(f"warning: {printable(warning)}", file=sys.stderr)
    return result


def ae_launch(args: argparse.Namespace, argv: list[str]) -> int:
    """`ae train --nproc N`: the options checked here (a bad one is one line, before any process starts), then
    the command in N processes under torchrun; returns its exit code."""
    _ae_settings(args)
    if not Workspace(args.workspace).has_zoo():
        raise UserError(f"{args.workspace}: no zoo here to train on (zoo generate or zoo import first)")
    return launch(args.nproc, argv)


def ae_eval(args: argparse.Namespace) -> dict:
    return evaluate_run(Workspace(args.workspace), args.run, resolve_device(args.device), refresh=args.refresh)


def ae_embed(args: argparse.Namespace) -> dict:
    workspace = Workspace(args.workspace)
    run = load_run(workspace, args.run)
    return set_aggregation(workspace, run, load_zoos(workspace), args.aggregation, resolve_device(args.device))


def sample(args: argparse.Namespace) -> dict:
    config = settings_from(SampleConfig, args)
    cluster = _cluster(args)
    device = resolve_device(args.device)
    samples = with_progress(
        "evaluating and fine-tuning (epochs)",
        args.quiet,
        lambda bar: generate(Workspace(args.workspace), config, args.run, device, bar, cluster=cluster),
    )
    return samples.to_json()


def export(args: argparse.Namespace) -> dict:
    workspace = Workspace(args.workspace)
    if not args.ensemble:
        return export_samples(workspace, args.samples, args.format, args.out, args.force)
    checked_output(args.out, args.force)  # a bad output path is said before the ensembles are computed
    ensembles(workspace, args.samples, resolve_device(args.device))  # read, or computed and kept in the run
    return export_ensemble(workspace, args.samples, args.format, args.out, args.members, args.force)


def ensemble(args: argparse.Namespace) -> dict:
    """The ensembles of a samples run, read from its record or computed (and written there)."""
    run = ensembles(Workspace(args.workspace), args.samples, resolve_device(args.device), args.refresh)
    return {"samples_run": run.name, "n": run.n, "ensembles": run.ensembles, "ensemble_settings": run.ensemble_settings}


def workspace_pack(args: argparse.Namespace) -> dict:
    return pack_workspace(Workspace(args.workspace), args.out, args.force)


def workspace_unpack(args: argparse.Namespace) -> dict:
    workspace = unpack_workspace(args.source, args.workspace)
    return {"workspace": str(workspace.root), **zoo_info(load_zoos(workspace))}
