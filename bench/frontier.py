"""The novelty-accuracy frontier of generated models: are they good AND new, beside the simplest baseline?

For each autoencoder variant (structure only: the reconstruction loss of 2022; behaviour only; both: the
behavioural loss of Meynent et al. 2025 on top), each sampler, each selection and each spread, generate models around
the anchors and measure, as generated (epoch 0, no fine-tuning): mean test accuracy relative to the anchors', the
median over models of the largest IoU of their test errors with any zoo checkpoint's, and the median distance to
the nearest zoo checkpoint relative to the zoo's own nearest-neighbour distance. The noise baseline (an anchor plus
Gaussian noise of a fraction of each layer's std; Zeng et al. 2025) is swept over 5 scales on the same anchors. The
papers' public per-dimension KDE is measured too: it copies.

Anchor sets: the default zoo's best 30% (`top:0.3`), and a lasso-like region: the best checkpoints of one init
family. Goals (issue "good and new"): at a novelty at least the noise baseline's at scale 0.1 (median max-IoU no
higher, median min-L2 no lower) the generated models keep >= 99% of the anchors' accuracy; at twice that min-L2,
>= 95%; the generator's frontier lies above the noise baseline's at >= 3 of its 5 novelty levels.

Each seed (`--seeds`: a count N for 0..N-1, or a list) makes its own zoo of `--dataset` (digits at seed 0 and the
default size: the shipped default workspace; with --resnet-zoo N, N ResNets), trains its own autoencoders and
samples with its own seed; an existing --workspace is the zoo of every seed (then only the autoencoders' and the
sampler's seeds vary). Every figure is the mean over seeds with its Student-t 95% interval; the frontier wins and
the goals too, and the best generated accuracy as novel as the reference noise is compared with that noise's:
higher, lower, or no measurable difference (the intervals overlap).

Usage: python bench/frontier.py [--dataset digits] [--seeds 3 | 0,4,7] [--workspace WS] [--kind hyperrep|sane]
                                [--n 32] [--quick] [--models 256] [--zoo-epochs 15] [--ae-epochs 60]
                                [--variants structure,behaviour,both] [--spreads 0.5,1] [--png assets/frontier.png]
The last line of stdout is JSON: for each anchor set its "noise" and "points" (the means over seeds under their
keys, and "intervals": {figure: {"mean", "lo", "hi"}}), "wins" (means) and "wins_intervals", "goals"; and
"reconstruction", "seeds", "dataset".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

import torch  # noqa: E402

from core.default import ASSET  # noqa: E402
from core.gen.anchors import resolve_anchors  # noqa: E402
from core.gen.config import SampleConfig  # noqa: E402
from core.gen.draw import draw_models  # noqa: E402
from core.gen.novelty import error_sets, novelty  # noqa: E402
from core.parsing import seed_list  # noqa: E402
from core.pipeline import train_and_map, unpack_workspace  # noqa: E402
from core.rep.evaluate import evaluate_run  # noqa: E402
from core.rep.loop import TrainConfig  # noqa: E402
from core.rep.methods import KINDS, method_named  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.stats import Interval, as_json, format_interval, intervals_over, means, t_interval, verdict  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from core.zoo.data import load_dataset  # noqa: E402
from core.zoo.generate import ZooConfig, generate_zoo  # noqa: E402
from core.zoo.model_zoo import combined_table, load_zoos  # noqa: E402
from core.zoo.population import evaluate_models  # noqa: E402

VARIANTS = {
    "structure": TrainConfig(structure_weight=1.0, behaviour_weight=0.0),  # the 2022 method
    "behaviour": TrainConfig(structure_weight=0.0, behaviour_weight=1.0),  # today's default
    "both": TrainConfig(structure_weight=1.0, behaviour_weight=1.0),
}
NOISE_SCALES = (0.025, 0.05, 0.1, 0.2, 0.4)
REFERENCE_SCALE = 0.1  # the noise baseline the goals are stated against
SPREADS = (0.5, 1.0, 1.5, 2.0, 3.0)
SAMPLERS = ("kde", "gauss", "neighbour")
SELECTIONS = ("none", "guided", "subsample")


class Judge:
    """Accuracy as generated and novelty against the zoo, for any set of aligned weight vectors."""

    def __init__(self, anchors, prepared, data):
        self.spec, self.data, self.prepared = anchors.spec, data, prepared
        zoo = anchors.zoo
        self.zoo_errors = error_sets(zoo.spec, prepared, data, zoo.table["activation"].to_list())  # in chunks
        self.models = zoo.table["model_id"].to_numpy()
        self.anchor_acc = float(zoo.table["test_acc"].to_numpy()[anchors.rows].mean())

    def __call__(self, weights: torch.Tensor) -> dict:
        acc = evaluate_models(self.spec, weights, self.data.x_test, self.data.y_test)[1]
        errors = error_sets(self.spec, weights, self.data)
        figures = novelty(weights, errors, self.prepared, self.zoo_errors, self.models)
        return {
            "acc": float(acc.mean()),
            "acc_ratio": float(acc.mean()) / self.anchor_acc,
            "iou": figures["max_iou_median"],
            "l2": figures["min_l2_median"],
            "l2_rel": figures["min_l2_median"] / figures["zoo_min_l2_median"],
        }


def family_rule(table: pl.DataFrame) -> str:
    """A lasso-like region: the best fifth (by validation accuracy) of the checkpoints of the init family that holds
    the zoo's best checkpoint."""
    family = table.sort("val_acc", descending=True)["init_seed"][0]
    members = table.filter(pl.col("init_seed") == family).sort("val_acc", descending=True)
    chosen = members.head(max(8, members.height // 5))["checkpoint"].to_list()
    return "ids:" + ",".join(str(c) for c in sorted(chosen))


def noise_points(judge: Judge, anchors_aligned: torch.Tensor, n: int, seed: int) -> list[dict]:
    rng = torch.Generator().manual_seed(seed)
    std = judge.prepared.entry_std()
    points = []
    for scale in NOISE_SCALES:
        pick = torch.randint(0, len(anchors_aligned), (n,), generator=rng)
        weights = anchors_aligned[pick] + scale * torch.randn(n, anchors_aligned.shape[1], generator=rng) * std
        points.append({"generator": "noise", "setting": scale, **judge(weights)})
    return points


def generator_points(variant: str, run, anchors, table, rule, judge, args, seed: int) -> tuple[list[dict], dict]:
    """Every sampler x selection x spread of one run; and the seconds each selection took at spread 1."""
    prepared = run.prepare(anchors.zoo)
    points, seconds = [], {}
    data = judge.data
    combos = [
        (s, sel, sp) for s in args.samplers.split(",") for sel in args.selections.split(",") for sp in args.spreads
    ]
    combos += [("kde-per-dim", "none", 0.0)]
    for sampler, selection, spread in combos:
        if args.quick and (sampler != "kde" or selection == "subsample"):
            continue
        config = SampleConfig(method=sampler, anchors=rule, n=args.n, spread=spread, selection=selection, seed=seed)
        started = time.monotonic()
        weights, _, _, _ = draw_models(run, prepared, anchors, config, data, np.random.default_rng(seed), "cpu", table)
        if spread == 1.0 and sampler == "kde":
            seconds[selection] = round(time.monotonic() - started, 2)
        name = f"{variant}/{sampler}/{selection}"
        points.append({"generator": name, "setting": spread, **judge(weights)})
    return points, seconds


def frontier_wins(points: list[dict], noise: list[dict]) -> dict[str, int]:
    """For each generator variant: at how many of the noise baseline's novelty levels its best accuracy, among its
    points at least as novel (max-IoU no higher and min-L2 no lower), beats the baseline's."""
    wins = {}
    for variant in sorted({p["generator"] for p in points}):
        mine = [p for p in points if p["generator"] == variant]
        count = 0
        for level in noise:
            novel = [p["acc"] for p in mine if p["iou"] <= level["iou"] and p["l2"] >= level["l2"]]
            count += bool(novel) and max(novel) > level["acc"]
        wins[variant] = count
    return wins


def goals(points: list[dict], noise: list[dict]) -> dict:
    """The best accuracy kept at least as novel as the reference noise baseline (median max-IoU no higher, median
    min-L2 no lower), and at twice its min-L2 (with max-IoU still no higher)."""
    reference = next(p for p in noise if p["setting"] == REFERENCE_SCALE)
    as_novel = [p for p in points if p["iou"] <= reference["iou"] and p["l2"] >= reference["l2"]]
    twice = [p for p in as_novel if p["l2"] >= 2 * reference["l2"]]
    best = max(as_novel, key=lambda p: p["acc"], default=None)
    best_twice = max(twice, key=lambda p: p["acc"], default=None)
    return {
        "noise_reference": reference,
        "best_as_novel": best,
        "kept_as_novel": best and best["acc_ratio"],
        "best_twice_as_far": best_twice,
        "kept_twice_as_far": best_twice and best_twice["acc_ratio"],
        "goal_as_novel": 0.99,
        "goal_twice_as_far": 0.95,
    }


def plot(results: dict, path: Path) -> None:
    """Accuracy kept against novelty, one column per anchor set: distance to the zoo (top) and error overlap with
    it (bottom, reversed: newer to the right). Each line runs through its spreads (or noise scales) in order."""
    import matplotlib  # a bench-only import: the engine and the app never draw static figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(6.5 * len(results), 9), squeeze=False)
    for column, (name, result) in enumerate(results.items()):
        for row, (key, label) in enumerate(
            (("l2_rel", "median min-L2 to the zoo / the zoo's own"), ("iou", "median max error-IoU with the zoo"))
        ):
            _plot_panel(axes[row][column], name, result, key, label)
        axes[1][column].invert_xaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _plot_panel(axis, name: str, result: dict, key: str, label: str) -> None:
    noise = result["noise"]
    axis.plot([p[key] for p in noise], [p["acc_ratio"] for p in noise], "k--o", label="anchor + noise (baseline)")
    wins = result["wins"]
    best = {v: max(p["acc_ratio"] for p in result["points"] if p["generator"] == v) for v in wins}
    shown = sorted(wins, key=lambda v: (-wins[v], -best[v]))[:4]  # the most frontier wins, then the most accurate
    shown += [v for v in ("structure/kde/none", "behaviour/kde-per-dim/none") if v in wins]  # 2022, and copying
    for variant in shown:
        mine = [p for p in result["points"] if p["generator"] == variant]
        axis.plot(
            [p[key] for p in mine], [p["acc_ratio"] for p in mine], "-o", ms=3, label=f"{variant} ({wins[variant]})"
        )
    axis.set_xlabel(label)
    axis.set_ylabel("epoch-0 accuracy / anchors'")
    axis.set_title(f"{name} ({result['anchors']} anchors)")
    axis.axhline(1.0, color="grey", lw=0.5)
    axis.legend(fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=None, help="default: the shipped workspace, unpacked")
    parser.add_argument("--dataset", default="digits", help="the zoo's dataset where one is made (digits, shapes, ...)")
    parser.add_argument("--seeds", type=seed_list, default=seed_list("3"), help="a count N (0..N-1) or a list")
    parser.add_argument("--models", type=int, default=ZooConfig().models, help="models in each zoo made here")
    parser.add_argument("--zoo-epochs", type=int, default=ZooConfig().epochs)
    parser.add_argument("--ae-epochs", type=int, default=None, help="autoencoder epochs (default: the variants')")
    parser.add_argument("--n", type=int, default=32, help="models per generated point")
    parser.add_argument("--spreads", type=lambda t: tuple(float(v) for v in t.split(",")), default=SPREADS)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="autoencoder variants to train and compare")
    parser.add_argument("--kind", choices=KINDS, default=KINDS[0], help="the autoencoder kind (default settings)")
    parser.add_argument("--resnet-zoo", type=int, default=0, help="without --workspace: a zoo of this many ResNets")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--selections", default=",".join(SELECTIONS))
    parser.add_argument("--quick", action="store_true", help="the kde sampler alone, no subsampling")
    parser.add_argument("--png", type=Path, default=None, help="write the frontier plot here")
    parser.add_argument("--from-json", type=Path, default=None, help="report (and plot) a saved run's last line")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text().strip().splitlines()[-1])
        reconstruction = saved.pop("reconstruction")
        before_seeds = "seeds" not in saved  # a saved run from before seeds: one seed, its goals computed again
        args.seeds = saved.pop("seeds", [1])
        saved.pop("dataset", None)
        for result in saved.values():
            if before_seeds:
                result["goals"] = goals_over_seeds([goals(result["points"], result["noise"])])
        report(saved, reconstruction, args)
        return
    tune_cpu_allocator()
    per_seed, reconstructions = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            workspace = seed_workspace(args, seed, Path(tmp))
            runs, reconstruction = train_variants(workspace, args, seed)
            per_seed.append(measure(workspace, runs, args, seed))
            reconstructions.append(reconstruction)
    report(over_seeds(per_seed), intervals_over(reconstructions), args)


def seed_workspace(args, seed: int, tmp: Path) -> Workspace:
    """The zoo of one seed: --workspace (the same zoo for every seed: then only the autoencoder's and the
    sampler's seeds vary), else one made with the seed (the shipped workspace for digits at seed 0 and the default
    size), a ResNet zoo with --resnet-zoo."""
    if args.workspace and Workspace(args.workspace).exists():
        return Workspace(args.workspace)
    root = args.workspace or tmp
    workspace = Workspace(root if len(args.seeds) == 1 and args.workspace else Path(root) / f"zoo-s{seed}")
    if workspace.exists():
        return workspace
    arch = "resnet" if args.resnet_zoo else "auto"
    models, epochs = (args.resnet_zoo, 10) if args.resnet_zoo else (args.models, args.zoo_epochs)
    config = ZooConfig(dataset=args.dataset, seed=seed, models=models, epochs=epochs, arch=arch)
    if args.dataset == "digits" and config == ZooConfig():
        unpack_workspace(ASSET, workspace.root)
    else:
        generate_zoo(workspace, config)
    return workspace


def train_variants(workspace: Workspace, args, seed: int) -> tuple[dict, dict]:
    """(variant: its trained run, variant: its reconstruction figures), the autoencoders seeded with `seed`."""
    runs, reconstruction = {}, {}
    ae_config = method_named(args.kind).config_type()
    for variant in args.variants.split(","):
        started = time.monotonic()
        train = replace(VARIANTS[variant], seed=seed, **({"epochs": args.ae_epochs} if args.ae_epochs else {}))
        run = train_and_map(workspace, ae_config, train)  # named by its settings: reruns reuse it
        figures = evaluate_run(workspace, run.name)
        reconstruction[variant] = {
            "recon_acc_ratio": figures.get("recon_acc_ratio_recalibrated", figures["recon_acc_ratio"]),
            "probe_test_acc": figures["probe_r2"]["embedding"]["test_acc"],
            "train_s": round(float(run.history["elapsed_s"].max()), 1),
            "wall_s": round(time.monotonic() - started, 1),
        }
        runs[variant] = run
    return runs, reconstruction


def measure(workspace: Workspace, runs: dict, args, seed: int) -> dict:
    zoos = load_zoos(workspace)
    table = combined_table(zoos)
    data = load_dataset(zoos[0].dataset, seed=zoos[0].manifest.get("dataset", {}).get("seed", 0))
    results = {}
    for name, rule in (("top:0.3", "top:0.3"), ("one init family", family_rule(table))):
        anchors = resolve_anchors(zoos, table, rule)
        first = next(iter(runs.values())).prepare(anchors.zoo)
        judge = Judge(anchors, first, data)
        noise = noise_points(judge, first.aligned_rows(anchors.rows), args.n, seed=7 + 1000 * seed)
        points, seconds = [], {}
        for variant, run in runs.items():
            found, took = generator_points(variant, run, anchors, table, rule, judge, args, seed)
            points += found
            seconds[variant] = took
        results[name] = {
            "anchors": len(anchors.ids),
            "anchor_acc": judge.anchor_acc,
            "noise": noise,
            "points": points,
            "wins": frontier_wins(points, noise),
            "goals": goals(points, noise),
            "selection_seconds": seconds,
        }
    return results


FIGURES = ("acc", "acc_ratio", "iou", "l2", "l2_rel")


def over_seeds(per_seed: list[dict]) -> dict:
    """Each anchor set's figures over seeds: every point (same generator and setting in every seed) and noise level
    with its means and "intervals"; the frontier wins and the goals as intervals over seeds."""
    results = {}
    for name, first in per_seed[0].items():
        seeds = [r[name] for r in per_seed]
        wins = intervals_over([r["wins"] for r in seeds])
        results[name] = {
            "anchors": statistics.fmean(r["anchors"] for r in seeds),
            "anchor_acc": statistics.fmean(r["anchor_acc"] for r in seeds),
            "noise": [_point_over_seeds([r["noise"][i] for r in seeds]) for i in range(len(first["noise"]))],
            "points": [_point_over_seeds([r["points"][i] for r in seeds]) for i in range(len(first["points"]))],
            "wins": means(wins),
            "wins_intervals": wins,
            "goals": goals_over_seeds([r["goals"] for r in seeds]),
            "selection_seconds": first["selection_seconds"],
        }
    return results


def _point_over_seeds(points: list[dict]) -> dict:
    intervals = intervals_over([{k: p[k] for k in FIGURES} for p in points])
    return {"generator": points[0]["generator"], "setting": points[0]["setting"], **means(intervals),
            "intervals": intervals}  # fmt: skip


def goals_over_seeds(per_seed: list[dict]) -> dict:
    """The goals' figures as intervals over seeds (None where some seed has no point as novel as the reference),
    and the best generated accuracy at the reference noise's novelty against that noise's accuracy."""
    kept = {k: [g[k] for g in per_seed] for k in ("kept_as_novel", "kept_twice_as_far")}
    best = [g["best_as_novel"] and g["best_as_novel"]["acc"] for g in per_seed]
    reference = t_interval([g["noise_reference"]["acc"] for g in per_seed])
    said = "no generated point as novel in every seed"
    if all(b is not None for b in best):
        said = verdict(t_interval(best), reference, "best generated as novel", f"noise {REFERENCE_SCALE}")
    return {
        **{k: t_interval(v) if all(x is not None for x in v) else None for k, v in kept.items()},
        "noise_reference_acc": reference,
        "best_vs_noise": said,
        "goal_as_novel": 0.99,
        "goal_twice_as_far": 0.95,
    }


def _pm(point: dict, key: str, digits: int = 3) -> str:
    """A point's figure as "mean±half its 95% interval" ("mean" alone where one seed gives none)."""
    interval = point.get("intervals", {}).get(key)
    if isinstance(interval, dict):  # read back from a saved run
        interval = Interval.from_json(interval, how="t")
    if interval is None or not interval.known:
        return f"{point[key]:.{digits}f}"
    return f"{interval.estimate:.{digits}f}±{interval.half_width:.{digits}f}"


def print_table(title: str, points: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'generator':<32}{'setting':>8}{'acc':>14}{'kept':>14}{'max-IoU':>14}{'min-L2':>14}{'L2/zoo':>12}")
    for p in points:
        cells = "".join(f"{_pm(p, k):>14}" for k in ("acc", "acc_ratio", "iou", "l2")) + f"{_pm(p, 'l2_rel', 2):>12}"
        print(f"{p['generator']:<32}{p['setting']:>8}{cells}")


def report(results: dict, reconstruction: dict, args) -> None:
    print(f"over {len(args.seeds)} seeds ({','.join(map(str, args.seeds))}): mean ± half the 95% interval over seeds")
    print("autoencoder variants (held-out reconstructions):")
    for variant, figures in reconstruction.items():
        print(f"  {variant:<10} accuracy kept {_text(figures.get('recon_acc_ratio'))}, probe R^2 (test acc) "
              f"{_text(figures.get('probe_test_acc'))}, training {_text(figures.get('train_s'), 1)} s")  # fmt: skip
    for name, result in results.items():
        print_table(f"{name}: {result['anchors']:.0f} anchors, mean test accuracy {result['anchor_acc']:.3f}",
                    result["noise"] + result["points"])  # fmt: skip
        best = sorted(result["wins"].items(), key=lambda kv: -kv[1])[:5]
        spread = result.get("wins_intervals", {})
        print("frontier above the noise baseline at (of 5 levels):",
              ", ".join(f"{v} {_text(spread.get(v, w), 1)}" for v, w in best))  # fmt: skip
        g = result["goals"]
        print(f"kept at the noise baseline's novelty: {_text(g['kept_as_novel'])} (goal 0.99); at twice its min-L2: "
              f"{_text(g['kept_twice_as_far'])} (goal 0.95); {g['best_vs_noise']}; seconds per selection "
              f"(kde, spread 1, first seed): {result['selection_seconds']}")  # fmt: skip
    if args.png:
        plot(results, args.png)
    summary = {"reconstruction": as_json(reconstruction), "seeds": list(args.seeds), "dataset": args.dataset}
    print(json.dumps({**summary, **as_json(results)}))


def _text(value, digits: int = 3) -> str:
    """An Interval as "mean ± half [lo, hi]", a number as itself, None as "-"."""
    if isinstance(value, Interval):
        return format_interval(value, digits)
    if isinstance(value, dict) and "mean" in value:  # read back from a saved run
        return format_interval(Interval.from_json(value, how="t"), digits)
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
