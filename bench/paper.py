"""The papers' MNIST experiments end to end with our engine, over seeds, with 95% intervals.

For each seed s (the zoo's, the autoencoder's and the sampler's seed at once), on MNIST CNN-s zoos:
  1. a zoo of CNN-s models (the public model zoos' MNIST architecture, 2,464 parameters), trained with the engine;
  2. the hyper-representation with the defaults, and its probes of test accuracy, epoch and generalisation gap
     from the embedding, the flat (aligned) weights W and the weight statistics s(W) (R^2 and Kendall's tau);
  3. generation around the best 30% at the default spread (chosen for the zoo) and at fixed ones (no fine-tuning):
     accuracy against the *source* anchors of the kept models, median max error-IoU with the zoo, and the noise
     baseline (anchor + noise) at its scales, with the generator's own selection, so that the two frontiers are
     compared like for like;
  4. ensembles of the generated models beside their source anchors, anchor + noise, averages and a deep ensemble,
     as generated and after one epoch of fine-tuning on the zoo's own task (the source anchors fine-tuned alike),
     with their members' own accuracy and how often two members disagree (what an ensemble's accuracy is made of);
  5. transfer to another MNIST task (B_T: random init; B_F: the anchors fine-tuned) after 0, 1 and 5 epochs;
  6. the 2022 paper's ablation: the weight-space (structure) loss alone, with and without layer-wise loss
     normalisation, judged by the accuracy of generated models as generated.
Every figure is printed as mean ± 95% t-interval over the seeds; where two compared figures' intervals overlap
the bench says "no measurable difference". A PNG shows the frontiers and the probe table. Last come the papers'
own published MNIST figures beside ours, where they exist (bench/published.py, which says how theirs differ).

Scales: quick (a subset; the issue's budget is 15 minutes on 2 CPU cores), cpu (hours), gpu (the public zoo's size:
about 1,000 models x 50 epochs on all 60,000 images; for a lent GPU).
Usage: python bench/paper.py --scale quick [--dataset ../shared/data/mnist] [--seeds 0,1,2,3,4] [--workdir DIR]
       [--models N] [--epochs E] [--png assets/paper.png] [--device auto] [--method kde|neighbour|...]
       [--objective generate|probe]
`--models` / `--epochs` shrink or grow the scale's zoos (what a 15-minute GPU lease allows); the JSON records them
as "sizes". The last line of stdout is JSON: scale, sizes, seeds, probe_test_acc {embedding, weights, stats},
generated_ratio, generated_iou, noise_iou, frontier_margin (each {"mean", "lo", "hi"}) and the rest of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

from bench import published  # noqa: E402
from core.cli.progress import with_progress  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.gen.config import SampleConfig  # noqa: E402
from core.gen.frontier import frontier_envelope  # noqa: E402
from core.gen.novelty import ZooErrorSets  # noqa: E402
from core.gen.samplers import METHODS  # noqa: E402
from core.parsing import seed_list  # noqa: E402
from core.pipeline import generate, train_and_map  # noqa: E402
from core.rep.autoencoder import AEConfig  # noqa: E402
from core.rep.evaluate import evaluate_run  # noqa: E402
from core.rep.loop import OBJECTIVES, TrainConfig  # noqa: E402
from core.runtime import resolve_device, tune_cpu_allocator  # noqa: E402
from core.stats import NO_DIFFERENCE, as_json, compare_paired, format_interval, t_interval, verdict  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from core.zoo.generate import ZooConfig, generate_zoo  # noqa: E402

MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
SPREADS = (None, 0.25, 1.0, 1.5, 2.0)  # the generator's novelty levels: None is the default (chosen for the zoo)
TRANSFER_TASK = "noise=0.5"  # MNIST with pixel noise of std 0.5: the zoo's classes, so the output layer is kept
TRANSFER_EPOCHS = (0, 1, 5)
FINETUNED_PAIR = ("finetuned", "anchors_finetuned")
ENSEMBLE_GROUPS = ("generated", "generated_diverse", "anchors", "noise", "average", "deep", *FINETUNED_PAIR)
ENSEMBLE_EPOCHS = 1  # fine-tuning epochs of the fine-tuned ensembles (generated and source anchors alike)
# Each pair paired by seed: the generated ensemble against its source anchors', as generated and fine-tuned.
ENSEMBLE_PAIRS = (("generated", "anchors"), FINETUNED_PAIR)
# An ensemble's accuracy and NLL, and what they come from: how good its members are one by one (their mean test
# accuracy) and how often two of them disagree (core/gen/ensemble.py).
ENSEMBLE_FIGURES = ("acc", "nll", "member_acc", "disagreement")
# The default generation's curves kept (epochs 0 and ENSEMBLE_EPOCHS): set beside the 2022 paper's (bench/published.py).
CURVE_GROUPS = ("generated", "anchors", "random_init")


@dataclass(frozen=True)
class Scale:
    models: int
    k: int | None  # training images per class (None: all 60,000)
    epochs: int
    ae_epochs: int
    n: int  # models generated per group
    transfer_k: int  # labelled target images per class
    test: int | None = None  # test images every model is judged on (None: all 10,000)
    seeds: tuple[int, ...] = (0, 1, 2)  # the seeds run unless --seeds says otherwise


SCALES = {
    # Five seeds at the quick scale: three leave the frontier margin's interval across 0 (stop 43: [-0.021, 0.123]
    # over seeds 0-2, [0.023, 0.090] over 0-4), and five fresh take 8 min 25 s on our 2 idle cores (stop 44).
    "quick": Scale(models=64, k=100, epochs=6, ae_epochs=30, n=16, transfer_k=10, test=2000, seeds=(0, 1, 2, 3, 4)),
    "cpu": Scale(models=256, k=500, epochs=15, ae_epochs=60, n=32, transfer_k=10),
    "gpu": Scale(models=1000, k=None, epochs=50, ae_epochs=60, n=32, transfer_k=10),
}


RECIPES = {
    # The public zoos' "seed" kind: one recipe, models differing in seed (8 shared inits: core/zoo/generate.py says
    # why); the engine's defaults otherwise.
    "seed": {},
    # Their "hyperparameter" kind: learning rate, weight decay and dropout drawn per model, one activation, so that
    # the anchors of a region share it.
    "varied": {"lrs": (1e-3, 3e-3), "weight_decays": (0.0, 1e-4), "dropouts": (0.0, 0.1)},
}


def task(scale: Scale, dataset: str, *options: str) -> str:
    """The dataset name with the options and the scale's test subset (core/zoo/tasks.py)."""
    return ":".join([dataset, *options, *([f"test={scale.test}"] if scale.test else [])])


def zoo_config(scale: Scale, dataset: str, seed: int, recipe: str) -> ZooConfig:
    """A CNN-s zoo of the recipe, trained on the scale's share of MNIST."""
    name = task(scale, dataset, *([f"k={scale.k}"] if scale.k else []))
    epochs = scale.epochs
    save = sorted({0, 1, epochs // 4, epochs // 2, epochs} if epochs <= 15 else set(range(0, epochs + 1, 5)) | {1})
    return ZooConfig(
        dataset=name,
        arch="cnn-s",
        models=scale.models,
        epochs=epochs,
        save_epochs=tuple(save),
        seed=seed,
        **RECIPES[recipe],
    )


def replicate(
    scale: Scale, dataset: str, recipe: str, seed: int, root: Path, device: str, method: str, objective: str
) -> dict:
    """Every figure of one seed (zoo, autoencoder and sampler seed s; `method`: the sampler; `objective`: what the
    autoencoder is trained for, core/rep/loop.py OBJECTIVES), with the seconds each stage took."""
    workspace, seconds, started = Workspace(root / f"{recipe}-{seed}"), {}, time.monotonic()

    def lap(stage: str) -> None:
        """The stage's seconds, kept and printed at once: a run stopped mid-seed (a lent machine's time limit)
        still says how far it got and how fast."""
        nonlocal started
        seconds[stage], started = round(time.monotonic() - started, 1), time.monotonic()
        print(f"seed {seed}: {stage} took {seconds[stage]:.0f} s", flush=True)

    config = zoo_config(scale, dataset, seed, recipe)
    if workspace.exists():
        _check_kept_zoo(workspace, config)
    else:
        with_progress(f"seed {seed} zoo", False, lambda bar: generate_zoo(workspace, config, device, on_progress=bar))
    lap("zoo")
    base = replace(TrainConfig(), epochs=scale.ae_epochs, seed=seed)
    name = "default" if objective == base.objective else objective
    train = replace(base, objective=objective)
    run = with_progress(
        f"seed {seed} autoencoder",
        False,
        lambda bar: train_and_map(workspace, AEConfig(), train, run=name, device=device, on_progress=bar),
    )
    figures = {"probes": _probes(evaluate_run(workspace, run.name, device))}
    print(f"seed {seed}: probe R^2 of test accuracy {_probe_line(figures['probes'])}", flush=True)
    lap("autoencoder")
    sampling = SampleConfig(n=scale.n, method=method, finetune_epochs=0, seed=seed, baselines=False)
    figures["frontier"] = _frontier(workspace, run.name, sampling, device)
    figures["ensembles"] = figures["frontier"]["default"].pop("ensembles")
    figures["ensembles"]["generated_diverse"] = _diverse(workspace, run.name, sampling, device)
    lap("generation")
    target = task(scale, dataset, TRANSFER_TASK, f"k={scale.transfer_k}")
    figures["transfer"] = _transfer(workspace, run.name, sampling, target, device)
    lap("transfer")
    figures["ablation"] = _ablation(workspace, sampling, base, device)  # the default objective's, whatever the run's
    lap("ablation")
    return figures | {"seconds": seconds}


def _check_kept_zoo(workspace: Workspace, config: ZooConfig) -> None:
    """A kept --workdir's zoo is reused only if it was made with this run's settings (the same digest,
    ZooConfig.key, with the settings older code did not record at their defaults); a zoo of another dataset,
    recipe, size or code stops the bench, naming the folder, rather than being measured as this one."""
    stored = workspace.manifest().get("zoo", {}).get("config")
    try:
        same = stored is not None and ZooConfig(**stored).key() == config.key()
    except (TypeError, UserError):  # settings this code does not know, or no longer accepts
        same = False
    if not same:
        sys.exit(f"{workspace.root}: holds a zoo made with other settings than this run's; give another --workdir")


def _probes(result: dict) -> dict:
    return {m: result[f"probe_{m}"] for m in ("r2", "tau")}


def _probe_line(probes: dict) -> str:
    """'embedding 0.942, weights 0.892, stats 0.903' (a feature set left out shows as None)."""
    return ", ".join(
        f"{name} {by['test_acc']:.3f}" if by["test_acc"] is not None else f"{name} None"
        for name, by in probes["r2"].items()
    )


ZOO_ERRORS = ZooErrorSets()  # the zoos' error sets on the test split, computed once per zoo (as the app keeps them)


def _sample(workspace: Workspace, run: str, config: SampleConfig, device: str) -> dict:
    return generate(workspace, config, run, device, zoo_errors=ZOO_ERRORS).to_json()


def _frontier(workspace: Workspace, run: str, sampling: SampleConfig, device: str) -> dict:
    """The generator at each spread and the noise baseline at its scales, as generated, with the same selection;
    accuracy relative to the source anchors (the anchors the kept models were drawn around)."""
    points, noise, at_default = [], [], None
    for spread in SPREADS:
        default = spread is None  # the baselines, their frontier and the ensembles: once, at the default
        # At the default the models are also fine-tuned (ENSEMBLE_EPOCHS), beside their source anchors fine-tuned
        # alike: the figures as generated are the curves' epoch 0, the same draws either way.
        epochs = ENSEMBLE_EPOCHS if default else 0
        config = replace(sampling, spread=spread, ensemble=default, baselines=default, finetune_epochs=epochs)
        result = _sample(workspace, run, config, device)
        source = result["curves"]["anchors"][0]  # the source anchors of the kept models
        point = {
            "spread": spread if spread is not None else result["selection"]["spread_calibration"]["spread"],
            "acc": result["curves"]["generated"][0],
            "ratio": result["curves"]["generated"][0] / source,
            "iou": result["novelty"]["max_iou_median"],
        }
        points.append(point)
        if default:
            at_default = point | {"noise_iou": result["novelty_baselines"]["noise"]["max_iou_median"]}
            at_default["curves"] = {group: result["curves"][group] for group in CURVE_GROUPS}
            at_default["ensembles"] = _ensembles_at(result, sampling.n)
            noise = [{"acc": p["acc_mean"], "iou": p["max_iou_median"]} for p in result["noise_frontier"]]
    points.sort(key=lambda p: p["spread"])  # the default's chosen spread among the fixed ones
    return {"points": points, "noise": noise, "default": at_default, "margin": frontier_margin(points, noise)}


def _ensembles_at(result: dict, members: int) -> dict:
    """{group: ENSEMBLE_FIGURES} of the run's ensembles of `members` members (each a mean over member draws; the
    members' own accuracy is the ensemble's less its gain)."""
    figures = {}
    for group, sizes in result["ensembles"].items():
        if str(members) in sizes:
            at = {figure: value["mean"] for figure, value in sizes[str(members)].items()}
            at["member_acc"] = at["acc"] - at["gain"]
            figures[group] = {figure: at[figure] for figure in ENSEMBLE_FIGURES}
    return figures


def _diverse(workspace: Workspace, run: str, sampling: SampleConfig, device: str) -> dict:
    """The generated ensemble whose members greedy selection chose for a low validation NLL (`diverse`)."""
    config = replace(sampling, ensemble=True, selection="diverse")
    return _ensembles_at(_sample(workspace, run, config, device), sampling.n)["generated"]


def frontier_margin(points: list[dict], noise: list[dict]) -> float:
    """The smallest lead of the generator's frontier over the noise frontier at any novelty level both reach: each
    frontier is its upper envelope (at a level, the best accuracy reached at that novelty or more: core/gen/frontier.py
    `frontier_envelope`; a dominated point, e.g. a collapsed model whose IoU rises again, is not the frontier),
    compared at every point of either within the IoU range both cover, interpolated by IoU. Where one frontier is
    newer throughout than the other reaches (its least new point has a lower IoU than the other's newest), the two
    meet at the other's newest point, where the newer one's envelope is its best accuracy (reached at more novelty)."""
    envelopes = [_envelope(side) for side in (points, noise)]
    low = max(ious[0] for ious, _ in envelopes)
    high = max(min(ious[-1] for ious, _ in envelopes), low)
    levels = [iou for ious, _ in envelopes for iou in ious if low <= iou <= high]
    (gen_iou, gen_acc), (noise_iou, noise_acc) = envelopes
    return float(min(np.interp(x, gen_iou, gen_acc) - np.interp(x, noise_iou, noise_acc) for x in levels))


def _envelope(points: list[dict]) -> tuple[list[float], list[float]]:
    ious, accs, _ = frontier_envelope([{"max_iou_median": p["iou"], "acc_mean": p["acc"], "scale": 0} for p in points])
    return ious, accs


def _transfer(workspace: Workspace, run: str, sampling: SampleConfig, target: str, device: str) -> dict:
    # B_T (random init) and B_F (the source anchors) come with every generation
    config = replace(sampling, finetune_epochs=max(TRANSFER_EPOCHS), dataset=target)
    curves = _sample(workspace, run, config, device)["curves"]
    groups = {"generated": "generated", "b_t": "random_init", "b_f": "anchors"}
    return {row: [curves[group][e] for e in TRANSFER_EPOCHS] for row, group in groups.items()}


def _ablation(workspace: Workspace, sampling: SampleConfig, train: TrainConfig, device: str) -> dict:
    """Generated accuracy as generated (relative to the anchors) from structure-only autoencoders, with and without
    layer-wise loss normalisation (the 2022 paper's ablation, as it defines it: the loss divides each layer's
    error by that layer's weight variance, or not). Both sample around every anchor: the default leaves out the
    anchors a decoder does not reproduce (core/gen/fidelity.py), which would hide the worse decoder's loss in fewer
    anchors (the quick zoos: plain MSE 0.950 / 0.935 / 0.977 of the anchors with it, 0.957 / 0.944 / 0.937
    without)."""
    figures = {}
    every_anchor = replace(sampling, anchor_fidelity=0.0)
    for name, layer_norm in (("layer_norm", True), ("plain_mse", False)):
        config = replace(train, structure_weight=1.0, behaviour_weight=0.0, layer_norm=layer_norm)
        run = train_and_map(workspace, AEConfig(), config, run=f"structure-{name}", device=device, evaluate=False)
        result = _sample(workspace, run.name, every_anchor, device)
        figures[name] = result["curves"]["generated"][0] / result["curves"]["anchors"][0]
    return figures


def summarise(per_seed: list[dict]) -> dict:
    """Each figure over seeds as a t-interval (core/stats.py)."""

    def over(get):
        return t_interval([get(f) for f in per_seed])

    features = ("embedding", "weights", "stats")
    summary = {
        f"probe_{prop}": {x: over(lambda f, x=x, p=prop: f["probes"]["r2"][x][p]) for x in features}
        for prop in ("test_acc", "epoch", "ggap")
    }
    summary["probe_tau_test_acc"] = {x: over(lambda f, x=x: f["probes"]["tau"][x]["test_acc"]) for x in features}
    # Paired by seed (the same zoo and split on both sides): the embedding's lead over each baseline.
    summary["probe_test_acc_lead"] = {
        x: over(lambda f, x=x: f["probes"]["r2"]["embedding"]["test_acc"] - f["probes"]["r2"][x]["test_acc"])
        for x in ("weights", "stats")
    }
    summary["generated_ratio"] = over(lambda f: f["frontier"]["default"]["ratio"])
    summary["generated_iou"] = over(lambda f: f["frontier"]["default"]["iou"])
    summary["noise_iou"] = over(lambda f: f["frontier"]["default"]["noise_iou"])
    summary["frontier_margin"] = over(lambda f: f["frontier"]["margin"])
    if all("curves" in f["frontier"]["default"] for f in per_seed):  # per-seed files of older runs have none
        summary["generation_curves"] = {
            g: [over(lambda f, g=g, e=e: f["frontier"]["default"]["curves"][g][e]) for e in (0, ENSEMBLE_EPOCHS)]
            for g in CURVE_GROUPS
        }
    summary["transfer"] = {
        row: [over(lambda f, r=row, i=i: f["transfer"][r][i]) for i in range(len(TRANSFER_EPOCHS))]
        for row in ("generated", "b_t", "b_f")
    }
    groups = [g for g in ENSEMBLE_GROUPS if all(g in f["ensembles"] for f in per_seed)]
    summary["ensembles"] = {
        g: {m: over(lambda f, g=g, m=m: f["ensembles"][g][m]) for m in ENSEMBLE_FIGURES} for g in groups
    }

    def lead(a: str, b: str, m: str):
        return over(lambda f: f["ensembles"][a][m] - f["ensembles"][b][m])

    pairs = [(a, b) for a, b in ENSEMBLE_PAIRS if a in groups and b in groups]
    summary["ensemble_lead"] = {f"{a} - {b}": {m: lead(a, b, m) for m in ENSEMBLE_FIGURES} for a, b in pairs}
    summary["ablation"] = {name: over(lambda f, n=name: f["ablation"][n]) for name in ("layer_norm", "plain_mse")}
    # Paired by seed as well (the same zoo, run and draws on both sides): what the unpaired intervals hide.
    summary["transfer_lead"] = {
        base: [over(lambda f, b=base, i=i: f["transfer"]["generated"][i] - f["transfer"][b][i]) for i in epochs]
        for base, epochs in (("b_t", range(len(TRANSFER_EPOCHS))), ("b_f", range(len(TRANSFER_EPOCHS))))
    }
    summary["ablation_lead"] = over(lambda f: f["ablation"]["layer_norm"] - f["ablation"]["plain_mse"])
    return summary


_PAIRED_NLL = {"higher": "higher NLL: behind", "lower": "lower NLL: ahead"}  # a paired NLL lead's reading


def _paired(lead) -> str:
    """What a paired lead's interval says."""
    return {"higher": "ahead", "lower": "behind"}.get(compare_paired(lead), NO_DIFFERENCE)


def report(summary: dict, members: int) -> None:
    def show(label: str, figure) -> None:
        print(f"  {label:<40}{format_interval(figure)}")

    print("\nprobe R^2 of held-out checkpoints (mean ± 95% interval over seeds)")
    for prop in ("test_acc", "epoch", "ggap"):
        probes = summary[f"probe_{prop}"]
        for features, figure in probes.items():
            show(f"{prop} from {features}", figure)
        best = max(("weights", "stats"), key=lambda x: probes[x].estimate)
        print(f"    {verdict(probes['embedding'], probes[best], 'embedding', best)}")
    for features, figure in summary["probe_tau_test_acc"].items():
        show(f"Kendall tau of test_acc from {features}", figure)
    print("  the embedding's lead in test_acc R^2, paired by seed (the same zoo and split on both sides)")
    for features, lead in summary["probe_test_acc_lead"].items():
        show(f"embedding - {features}", lead)
        print(f"    {_paired(lead)}")
    print("\ngeneration at the default spread, as generated")
    show("accuracy / source anchors'", summary["generated_ratio"])
    show("median max error-IoU, generated", summary["generated_iou"])
    show("median max error-IoU, noise 0.1", summary["noise_iou"])
    print(f"    {verdict(summary['generated_iou'], summary['noise_iou'], 'generated IoU', 'noise IoU')}")
    show("frontier margin (generated - noise)", summary["frontier_margin"])
    print(f"\ntransfer to MNIST {TRANSFER_TASK} (accuracy after {', '.join(map(str, TRANSFER_EPOCHS))} epochs)")
    for row, figures in summary["transfer"].items():
        print(f"  {row:<12}" + "  ".join(format_interval(f) for f in figures))
    for i, epoch in enumerate(TRANSFER_EPOCHS):
        rows = summary["transfer"]
        said = [verdict(rows["generated"][i], rows[b][i], "generated", b) for b in ("b_t", "b_f")]
        print(f"    epoch {epoch}: {'; '.join(said)}; {verdict(rows['b_f'][i], rows['b_t'][i], 'B_F', 'B_T')}")
        for base, leads in summary["transfer_lead"].items():
            show(f"  generated - {base}, paired by seed", leads[i])
            print(f"      {_paired(leads[i])}")
    print(f"\nensembles of {members} members (softmax averaged; test accuracy and NLL)")
    ensembles = summary["ensembles"]
    for group, figures in ensembles.items():
        print(f"  {group:<18} acc {format_interval(figures['acc'])}   nll {format_interval(figures['nll'])}")
    for other in ("anchors", "noise", "average", "deep"):
        if other in ensembles and "generated" in ensembles:
            said = [verdict(ensembles["generated"][m], ensembles[other][m], "generated", other) for m in ("acc", "nll")]
            print(f"    accuracy: {said[0]}; NLL: {said[1]}")
    print("  what they are made of: the members' own mean test accuracy, and how often two of them disagree")
    for group, figures in ensembles.items():
        print(f"  {group:<18} {format_interval(figures['member_acc'])}   {format_interval(figures['disagreement'])}")
    if summary["ensemble_lead"]:
        print("  the generated ensemble against its source anchors', paired by seed")
    for pair, leads in summary["ensemble_lead"].items():
        print(f"  {pair}")
        readings = {
            "acc": _paired(leads["acc"]),
            "nll": _PAIRED_NLL.get(compare_paired(leads["nll"]), NO_DIFFERENCE),  # lower is better
            # higher or lower: neither better nor worse by itself
            **{figure: compare_paired(leads[figure]) for figure in ("member_acc", "disagreement")},
        }
        for figure, reading in readings.items():
            show(f"  {figure}", leads[figure])
            print(f"      {reading}")
    print("\nablation: structure loss alone, generated accuracy / anchors'")
    for name, figure in summary["ablation"].items():
        show(name, figure)
    ablation = summary["ablation"]
    print(f"    {verdict(ablation['layer_norm'], ablation['plain_mse'], 'layer-normalised', 'plain MSE')}")
    show("layer-normalised - plain MSE, paired", summary["ablation_lead"])
    print(f"    {_paired(summary['ablation_lead'])}")


def _seed_argument(text: str) -> tuple[int, ...]:
    """--seeds as the other benches read it (core/parsing.py `seed_list`), a mistake as argparse's one line."""
    try:
        return seed_list(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--seeds: ")) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="quick")
    parser.add_argument("--dataset", default=str(MNIST), help="an MNIST folder (the four IDX files)")
    parser.add_argument("--recipe", choices=tuple(RECIPES), default="seed", help="how the zoo's models differ")
    parser.add_argument(
        "--seeds",
        type=_seed_argument,
        help="seeds of zoo, autoencoder and sampler, at least 3: a count N (0..N-1) or a list (default: 5 at the "
        "quick scale, else 3)",
    )
    parser.add_argument("--workdir", default=None, help="keep zoos and runs here (default: a temporary folder)")
    parser.add_argument("--png", default=None, help="write the frontiers and probe table here")
    parser.add_argument("--device", default="auto")
    for name, what in (("models", "models in each zoo"), ("epochs", "training epochs of each zoo")):
        parser.add_argument(f"--{name}", type=int, help=f"{what} instead of the scale's (a short lease of a GPU)")
    sampler = SampleConfig().method
    parser.add_argument("--method", choices=METHODS, default=sampler, help=f"the sampler (default: {sampler})")
    objective = TrainConfig().objective
    parser.add_argument(
        "--objective", choices=tuple(OBJECTIVES), default=objective, help=f"the autoencoder's (default: {objective})"
    )
    args = parser.parse_args()
    tune_cpu_allocator()
    device = resolve_device(args.device)
    sizes = {name: value for name in ("models", "epochs") if (value := getattr(args, name)) is not None}
    if any(value < 1 for value in sizes.values()):
        parser.error("--models and --epochs take a positive number")
    scale = replace(SCALES[args.scale], **sizes)
    seeds = list(args.seeds or scale.seeds)
    # A zoo of other sizes gets a folder of its own: a kept --workdir never hands one size's zoo to another.
    label = "-".join([args.scale, *(f"{name}{value}" for name, value in sizes.items())])
    root = Path(args.workdir or tempfile.mkdtemp(prefix="paper-")) / label
    started, per_seed = time.monotonic(), []
    for seed in seeds:
        per_seed.append(replicate(scale, args.dataset, args.recipe, seed, root, device, args.method, args.objective))
        # each seed's figures as soon as they are made: a later failure loses no seed's half hour
        name = "-".join([args.recipe, str(seed), args.method, *[args.objective] * (args.objective != objective)])
        (root / f"{name}.json").write_text(json.dumps(per_seed[-1]))
        print(f"seed {seed} done at {time.monotonic() - started:.0f} s", flush=True)
    summary = summarise(per_seed)
    report(summary, scale.n)
    published.report(summary, args.recipe)
    if args.png:
        plot(per_seed, summary, Path(args.png))
    seconds = round(time.monotonic() - started, 1)
    print(
        json.dumps(
            {"scale": args.scale, "sizes": sizes, "seeds": seeds, "objective": args.objective, "seconds": seconds}
            | as_json(summary)
            | {"published": published.as_json(), "per_seed": per_seed}
        )
    )


def plot(per_seed: list[dict], summary: dict, path: Path) -> None:
    """The generator's and the noise baseline's frontiers of every seed, and the probe table."""
    import matplotlib  # noqa: PLC0415 (a bench's figure only: matplotlib is not needed to measure)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for number, figures in enumerate(per_seed):
        gen, noise = figures["frontier"]["points"], figures["frontier"]["noise"]
        left.plot([p["iou"] for p in gen], [p["acc"] for p in gen], "o-", color="C0", label="generated" * (not number))
        left.plot(
            [p["iou"] for p in noise],
            [p["acc"] for p in noise],
            "s--",
            color="C1",
            label="anchor + noise" * (not number),
        )
    left.set(xlabel="median max error-IoU with the zoo (lower: newer)", ylabel="test accuracy as generated")
    left.legend()
    rows = [
        (f"{prop}", [summary[f"probe_{prop}"][x] for x in ("embedding", "weights", "stats")])
        for prop in ("test_acc", "epoch", "ggap")
    ]
    cells = [[format_interval(f) for f in figures] for _, figures in rows]
    right.axis("off")
    table = right.table(
        cellText=cells, rowLabels=[r[0] for r in rows], colLabels=["embedding", "W", "s(W)"], loc="center"
    )
    table.auto_set_font_size(False)  # matplotlib shrinks the text to the cells otherwise: unreadable
    table.set_fontsize(8)
    table.scale(1.0, 1.8)
    right.set_title("probe R^2 on held-out models (mean [95% interval])")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
