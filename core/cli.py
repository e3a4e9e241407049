"""`python -m core ...`: the command-line front end over the same functions the app calls.

Exit codes: 0 success, 2 bad input (one line on stderr saying what and where), 130 interrupted (resumable).
With --json the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from core.rep.autoencoder import AEConfig
from core.errors import Interrupted, UserError
from core.zoo.families import ARCH_NAMES
from core.gen.generate import SampleConfig
from core.parsing import float_list, int_list, str_list
from core.zoo.population import INITS
from core.runtime import DEVICES, resolve_device
from core.gen.samplers import METHODS
from core.rep.sane import AGGREGATIONS
from core.gen.selection import SELECTIONS
from core.rep.train import TrainConfig
from core.store.workspace import Workspace
from core.zoo.model_zoo import ZooConfig, generate_zoo, load_zoos, zoo_info


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return int_list(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return float_list(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _ProgressBar:
    """The engine's on_progress(done, total, info) callback drawn as a tqdm bar with ETA on stderr; a new
    `info["phase"]` (e.g. training, then mapping) starts a new bar."""

    def __init__(self, description: str, quiet: bool):
        self.bar: tqdm | None = None
        self.phase: str | None = None
        self.description, self.quiet = description, quiet

    def __call__(self, done: int, total: int, info: dict) -> None:
        if self.quiet:
            return
        phase = info.get("phase")
        if self.bar is not None and phase != self.phase:
            self.close()
        if self.bar is None:
            description = f"{self.description}: {phase}" if phase else self.description
            self.bar = tqdm(total=total, desc=description, unit="step", file=sys.stderr, dynamic_ncols=True)
            self.phase = phase
        self.bar.update(done - self.bar.n)
        shown = {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in info.items()
            if isinstance(v, (int, float, str)) and k not in ("elapsed_s", "phase")
        }
        self.bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _with_progress(description: str, quiet: bool, work):
    """Run `work(on_progress)` with a progress bar that is closed however the work ends."""
    bar = _ProgressBar(description, quiet)
    try:
        return work(bar)
    finally:
        bar.close()


def _emit(result: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        print("\n".join(lines))


# ---------------------------------------------------------------- commands


def cmd_zoo_generate(args: argparse.Namespace) -> dict:
    epochs = args.epochs
    save_epochs = args.save_epochs or tuple(sorted({0, 1, epochs // 4, epochs // 2, epochs}))
    config = ZooConfig(
        dataset=args.dataset,
        models=args.models,
        epochs=epochs,
        save_epochs=save_epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        inits=args.init,
        lrs=args.lr,
        weight_decays=args.weight_decay,
        dropouts=args.dropout,
        activations=args.activation,
        init_seeds=args.init_seeds,
        arch=args.arch,
    )
    device = resolve_device(args.device)
    zoo = _with_progress(
        "training zoo (epochs)", args.quiet, lambda bar: generate_zoo(Workspace(args.workspace), config, device, bar)
    )
    return zoo_info(zoo)


def cmd_zoo_import(args: argparse.Namespace) -> dict:
    from core.zoo.public import import_public_zoo

    report = _with_progress(
        "importing models",
        args.quiet,
        lambda bar: import_public_zoo(args.source, Workspace(args.workspace), args.dataset, on_progress=bar),
    )
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return {**zoo_info(report.zoo), "imported_models": report.models, "problems": report.problems}


def cmd_zoo_info(args: argparse.Namespace) -> dict:
    return zoo_info(load_zoos(Workspace(args.workspace)))


def _ae_configs(args: argparse.Namespace):
    sizes = {k: v for k, v in (("d_model", args.d_model), ("latent_dim", args.latent_dim)) if v is not None}
    if args.kind == "sane":
        from core.rep.sane import SANEConfig

        ae = SANEConfig(token_width=args.token_width, window=args.window, halo=args.halo, **sizes)
    else:
        ae = AEConfig(**sizes)
    train = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        gamma=args.gamma,
        layer_norm=not args.no_layer_norm,
        align=not args.no_align,
        permute_probability=args.permute,
        erase_probability=args.erase,
        pca_init=not args.no_pca_init,
        seed=args.seed,
    )
    return ae, train


def cmd_ae_train(args: argparse.Namespace) -> dict:
    from core.rep.evaluate import evaluate_run
    from core.rep.train import train_autoencoder

    ae, train = _ae_configs(args)
    device = resolve_device(args.device)
    run = _with_progress(
        "training autoencoder (epochs)",
        args.quiet,
        lambda bar: train_autoencoder(Workspace(args.workspace), ae, train, args.run, device, on_progress=bar),
    )
    return evaluate_run(Workspace(args.workspace), run.name, device)


def cmd_ae_eval(args: argparse.Namespace) -> dict:
    from core.rep.evaluate import evaluate_run

    return evaluate_run(Workspace(args.workspace), args.run, resolve_device(args.device), refresh=args.refresh)


def cmd_ae_embed(args: argparse.Namespace) -> dict:
    from core.rep.embed import set_aggregation

    return set_aggregation(Workspace(args.workspace), args.run, args.aggregation, resolve_device(args.device))


def _describe_embed(result: dict) -> list[str]:
    run, how = result["run"], result["aggregation"]
    return [f"run {run}: {result['checkpoints']} checkpoints re-mapped with the {how} aggregation of token latents"]


def _describe_eval(result: dict) -> list[str]:
    lines = [
        f"run {result['run']}: {result['test_models']} held-out models ({result['test_checkpoints']} checkpoints)",
        f"reconstruction R^2: {result['recon_r2']:.3f}  "
        + "  ".join(f"{k}: {v:.3f}" for k, v in result["recon_r2_per_layer"].items()),
    ]
    if result.get("recon_acc_ratio") is not None:
        lines.append(
            f"reconstructed accuracy / original: {result['recon_acc_ratio']:.3f} "
            f"(keep >= 90%: {result['recon_keep90_fraction']:.0%} of checkpoints)"
        )
    if "recon_acc_ratio_recalibrated" in result:
        lines.append(f"... with BatchNorm statistics re-estimated: {result['recon_acc_ratio_recalibrated']:.3f}")
    lines.append(f"{'probe R^2':<16}{'test_acc':>10}{'epoch':>10}{'ggap':>10}")
    rows = list(result["probe_r2"].items())
    rows += [(f"{how} tokens", scores) for how, scores in result.get("probe_r2_by_aggregation", {}).items()]
    for name, scores in rows:
        cells = ("-" if scores[p] is None else f"{scores[p]:.3f}" for p in ("test_acc", "epoch", "ggap"))
        lines.append(f"{name:<16}" + "".join(f"{cell:>10}" for cell in cells))
    if "aggregation" in result:
        lines.append(f"the embedding aggregates token latents by {result['aggregation']} (change: ae embed)")
    return lines


def cmd_sample(args: argparse.Namespace) -> dict:
    from core.gen.generate import generate_samples

    config = SampleConfig(
        method=args.method,
        anchors=args.anchors,
        n=args.n,
        finetune_epochs=args.finetune_epochs,
        dataset=args.dataset,
        seed=args.seed,
        bandwidth=args.bandwidth,
        covariance=args.covariance,
        baselines=not args.no_baselines,
        selection=args.selection,
        candidates=args.candidates,
        rounds=args.rounds,
    )
    device = resolve_device(args.device)
    return _with_progress(
        "evaluating and fine-tuning (epochs)",
        args.quiet,
        lambda bar: generate_samples(Workspace(args.workspace), config, args.run, device, bar),
    )


def _describe_samples(result: dict) -> list[str]:
    lines = [
        f"samples run {result['samples_run']}: {result['n']} models by {result['method']} from "
        f"{result['anchors']['count']} anchors ({result['anchors']['rule']}), evaluated on {result['dataset']}",
    ]
    if result["fallback"]:
        lines.append(f"note: {result['fallback']}")
    for step in result["selection"].get("history", []):
        lines.append(
            f"selection round {step['round']}: mean validation accuracy {step['drawn_mean']:.3f} drawn, "
            f"{step['kept_mean']:.3f} kept"
        )
    lines.append("mean test accuracy by fine-tuning epoch (0 = as generated):")
    for group, curve in result["curves"].items():
        lines.append(f"  {group:<13}" + " ".join(f"{a:.3f}" for a in curve))
    nov = result["novelty"]
    lines.append(
        f"novelty: median min L2 to the zoo {nov['min_l2_median']:.3f} (zoo to itself {nov['zoo_min_l2_median']:.3f}); "
        f"median max error-IoU {nov['max_iou_median']:.3f} (zoo {nov['zoo_max_iou_median']:.3f})"
    )
    return lines


def cmd_export(args: argparse.Namespace) -> dict:
    from core.gen.export import export_samples

    return export_samples(Workspace(args.workspace), args.samples, args.format, args.out)


def _describe_export(result: dict) -> list[str]:
    return [
        f"wrote {result['bundle']}: {result['models']} models ({result['files']} {result['format']} files), "
        "model.py, card.json, README.md"
    ]


def cmd_workspace_pack(args: argparse.Namespace) -> dict:
    from core.store.packing import pack_workspace

    return pack_workspace(Workspace(args.workspace), args.out)


def cmd_workspace_unpack(args: argparse.Namespace) -> dict:
    from core.store.packing import unpack_workspace

    workspace = unpack_workspace(args.source, args.workspace)
    return {"workspace": str(workspace.root), **zoo_info(load_zoos(workspace))}


def _describe_pack(result: dict) -> list[str]:
    if "pack" in result:
        return [f"wrote {result['pack']}: {result['files']} files, {result['bytes'] / 1e6:.1f} MB"]
    return [f"unpacked into {result['workspace']}", *_describe_zoo(result)]


def _describe_zoo(result: dict) -> list[str]:
    acc = result["test_acc"]
    lines = [
        f"{result['models']} models, {result['checkpoints']} checkpoints of {result['architecture']} "
        f"({result['n_params']} parameters) on {result['dataset']}",
        f"epochs saved: {result['epochs']}",
        f"test accuracy: min {acc['min']:.3f}  mean {acc['mean']:.3f}  max {acc['max']:.3f}",
    ]
    lines += [f"skipped: {s}" for s in result.get("skipped", [])]
    return lines


# ---------------------------------------------------------------- parser


def _add_common(parser: argparse.ArgumentParser, device: bool) -> None:
    parser.add_argument("--workspace", required=True, help="workspace folder (created if needed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    if device:
        parser.add_argument("--device", choices=DEVICES, default="auto", help="where to compute (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Hyper-representations of model zoos.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    zoo = commands.add_parser("zoo", help="generate, import or describe a model zoo")
    zoo_cmds = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")

    gen = zoo_cmds.add_parser("generate", help="train a zoo of small CNNs or ResNets, all models at once")
    _add_common(gen, device=True)
    gen.add_argument(
        "--dataset", default="digits", help="digits, shapes, or a folder of MNIST-family IDX / CIFAR-10 files"
    )
    gen.add_argument("--models", type=int, default=256, help="number of models (default 256)")
    gen.add_argument("--epochs", type=int, default=15, help="training epochs per model (default 15)")
    gen.add_argument("--save-epochs", type=_int_list, default=None, help="epochs to keep, e.g. 0,1,5,15 (0 = init)")
    gen.add_argument("--batch-size", type=int, default=32)
    gen.add_argument("--seed", type=int, default=0, help="zoo seed; model seeds derive from it")
    gen.add_argument("--init", type=str_list, default=("kaiming_uniform",), help=f"one or more of {','.join(INITS)}")
    gen.add_argument("--lr", type=_float_list, default=(3e-3,), help="one or more learning rates (Adam)")
    gen.add_argument("--weight-decay", type=_float_list, default=(0.0,), help="one or more L2 weight decays")
    gen.add_argument("--dropout", type=_float_list, default=(0.0,), help="one or more dropout rates")
    gen.add_argument(
        "--activation", type=str_list, default=("relu",), help="one or more of relu,tanh,sigmoid,gelu,leakyrelu"
    )
    gen.add_argument(
        "--init-seeds",
        type=int,
        default=ZooConfig().init_seeds,
        help="how many initial weight draws the models share (default 8; 0 = every model its own)",
    )
    gen.add_argument(
        "--arch",
        choices=ARCH_NAMES,
        default="auto",
        help="architecture: auto (the CNN sized for the images), cnn, resnet, or a CNN preset (default auto)",
    )
    gen.set_defaults(run_command=cmd_zoo_generate, describe=_describe_zoo)

    imp = zoo_cmds.add_parser("import", help="import a zoo in the public model-zoo layout (one folder per model)")
    _add_common(imp, device=False)
    imp.add_argument("--from", dest="source", required=True, help="folder holding the model folders")
    imp.add_argument("--dataset", default=None, help="local dataset folder the zoo was trained on (for fine-tuning)")
    imp.set_defaults(run_command=cmd_zoo_import, describe=_describe_zoo)

    info = zoo_cmds.add_parser("info", help="summarise a workspace's zoo")
    _add_common(info, device=False)
    info.set_defaults(run_command=cmd_zoo_info, describe=_describe_zoo)

    ae = commands.add_parser("ae", help="train or evaluate a hyper-representation autoencoder")
    ae_cmds = ae.add_subparsers(dest="ae_command", required=True, metavar="ACTION")
    train = ae_cmds.add_parser("train", help="train the autoencoder on the workspace's zoo, then map and evaluate it")
    _add_common(train, device=True)
    train.add_argument(
        "--kind",
        choices=("hyperrep", "sane"),
        default="hyperrep",
        help="hyperrep: per-neuron tokens, whole model at once; sane: fixed-width tokens, trained on windows",
    )
    train.add_argument("--run", default=None, help="run name (default: derived from the settings, so reruns resume)")
    defaults, ae_defaults = TrainConfig(), AEConfig()
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument(
        "--d-model", type=int, default=None, help=f"transformer width (default {ae_defaults.d_model}; sane 128)"
    )
    train.add_argument(
        "--latent-dim",
        type=int,
        default=None,
        help=f"size of one model's embedding (default {ae_defaults.latent_dim}); sane: per token (default 32)",
    )
    train.add_argument("--token-width", type=int, default=64, help="sane: entries per token")
    train.add_argument("--window", type=int, default=32, help="sane: tokens per training window")
    train.add_argument("--halo", type=int, default=8, help="sane: context tokens on each side when encoding")
    train.add_argument("--gamma", type=float, default=defaults.gamma, help="weight of the contrastive loss (0..1)")
    train.add_argument("--permute", type=float, default=0.0, help="probability of a permutation augmentation")
    train.add_argument("--erase", type=float, default=defaults.erase_probability, help="probability of random erasing")
    train.add_argument("--no-layer-norm", action="store_true", help="plain MSE instead of layer-wise normalised loss")
    train.add_argument("--no-align", action="store_true", help="skip the canonical alignment of the zoo")
    train.add_argument("--no-pca-init", action="store_true", help="start the linear path at random, not at PCA")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run_command=cmd_ae_train, describe=_describe_eval)

    evaluate = ae_cmds.add_parser("eval", help="held-out reconstruction and property probes of a run")
    _add_common(evaluate, device=True)
    evaluate.add_argument("--run", default=None, help="run name (default: the latest finished run)")
    evaluate.add_argument("--refresh", action="store_true", help="recompute instead of reading the stored figures")
    evaluate.set_defaults(run_command=cmd_ae_eval, describe=_describe_eval)

    embed = ae_cmds.add_parser("embed", help="re-map a SANE run with another aggregation of its token latents")
    _add_common(embed, device=True)
    embed.add_argument("--run", default=None, help="run name (default: the latest finished run)")
    embed.add_argument("--aggregation", choices=AGGREGATIONS, required=True, help="how token latents make an embedding")
    embed.set_defaults(run_command=cmd_ae_embed, describe=_describe_embed)

    sample = commands.add_parser("sample", help="sample new models from the embedding, evaluate and fine-tune them")
    _add_common(sample, device=True)
    sample.add_argument("--run", default=None, help="autoencoder run (default: the latest finished)")
    sampling = SampleConfig()
    sample.add_argument("--method", choices=METHODS, default=sampling.method)
    sample.add_argument(
        "--anchors", default=sampling.anchors, help="top:F (best fraction by val accuracy), epoch:E or ids:a,b,c"
    )
    sample.add_argument("--n", type=int, default=sampling.n, help="number of models to generate")
    sample.add_argument("--finetune-epochs", type=int, default=sampling.finetune_epochs)
    sample.add_argument("--dataset", default=None, help="fine-tune on another dataset (transfer), e.g. shapes")
    sample.add_argument(
        "--bandwidth", default=sampling.bandwidth, help="kde bandwidth: cv, scott, silverman, or a number"
    )
    sample.add_argument("--covariance", choices=("full", "diag"), default=sampling.covariance, help="gauss covariance")
    sample.add_argument("--no-baselines", action="store_true", help="skip the simple weight-space baselines")
    sample.add_argument(
        "--selection",
        choices=SELECTIONS,
        default=sampling.selection,
        help="subsample: draw n x candidates, keep the best n on validation data; bootstrap: repeat, refitting "
        "the sampler on the kept ones (SANE, 2024)",
    )
    sample.add_argument("--candidates", type=int, default=sampling.candidates, help="draws per kept model")
    sample.add_argument("--rounds", type=int, default=sampling.rounds, help="bootstrap rounds")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(run_command=cmd_sample, describe=_describe_samples)

    space = commands.add_parser("workspace", help="pack a workspace into one zip file, or unpack one")
    space_cmds = space.add_subparsers(dest="workspace_command", required=True, metavar="ACTION")
    pack = space_cmds.add_parser("pack", help="write the workspace (without resumable training state) to a zip")
    _add_common(pack, device=False)
    pack.add_argument("--out", required=True, help="the zip file to write")
    pack.set_defaults(run_command=cmd_workspace_pack, describe=_describe_pack)
    unpack = space_cmds.add_parser("unpack", help="extract a packed workspace into a new folder")
    _add_common(unpack, device=False)
    unpack.add_argument("--from", dest="source", required=True, help="the zip file made by `workspace pack`")
    unpack.set_defaults(run_command=cmd_workspace_unpack, describe=_describe_pack)

    export = commands.add_parser("export", help="bundle a samples run: weight files, model.py and a model card")
    _add_common(export, device=False)
    export.add_argument("--samples", required=True, help="samples run name (printed by `sample`)")
    export.add_argument("--format", choices=("safetensors", "pt"), default="safetensors")
    export.add_argument("--out", required=True, help="the zip file to write")
    export.set_defaults(run_command=cmd_export, describe=_describe_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.run_command(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(
            "interrupted: progress up to the last finished epoch is kept; run the same command to resume",
            file=sys.stderr,
        )
        return 130
    _emit(result, args.json, args.describe(result))
    return 0
