"""Transfer learning, the papers' protocol (Schürholt et al. 2022): do generated models make better starts on a new
task than training from scratch (B_T) and than fine-tuning the zoo's own models (B_F)?

Every start is fine-tuned on the target with the zoo's recipe for 15 epochs, side by side: B_T (random init), B_F
(the anchors: the zoo's best 30%), anchor + noise, and each generator variant's models (sampled around the same
anchors). The output layer is kept when the target has the zoo's classes and drawn anew when not. Tasks on the
dataset D (`--dataset`, digits by default), each with k = 10 labelled training images per class and with the
whole training split:
  new classes:  a zoo trained on D's classes 0-4, transferred to classes 5-9 (head drawn anew)
  inverted:     the default zoo of D to D with inverted contrast (head kept)
  rotated:      the default zoo to D turned by 90 degrees (head kept)
  noisy:        the default zoo to D with pixel noise of std 0.5 (head kept)
Each seed makes its own source zoo, trains its own autoencoders and samples with its own seed (digits, seed 0,
default sizes: the shipped workspace). Figures: mean test accuracy over models at epochs 0/1/5/15, as the mean over
seeds with its Student-t 95% interval; the epochs each start saves against B_T (the first epoch it reaches B_T's
final accuracy); which task is suitable (B_F measurably beats B_T on the mean of epochs 1, 5 and 15: their
intervals over seeds do not overlap) and whether the generated models measurably beat both there; where two
intervals overlap the bench says "no measurable difference".

Usage: python bench/transfer.py [--dataset digits] [--seeds 3 | 0,4,7] [--quick] [--models 256] [--zoo-epochs 15]
                                [--ae-epochs 60] [--finetune-epochs 15] [--png assets/transfer.png]
                                [--from-json saved.log]
--quick: the noisy task at k = 10 alone, the most informative one (B_F beats B_T there by 0.3, so the task is
suitable), over one seed unless --seeds says more. --from-json re-plots a saved run's output. The last line of
stdout is JSON: {"tasks": {task: {"epochs", "b_t", "b_f", "generated", "noise" (means over seeds per epoch),
"intervals": {row: [{"mean", "lo", "hi"} per epoch]}, "later_epochs": {row: {"mean", "lo", "hi"}}, "verdicts",
...}}, "generated_method": ..., "seeds": [...]}.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

from core.default import ASSET  # noqa: E402
from core.gen.config import SampleConfig  # noqa: E402
from core.parsing import seed_list  # noqa: E402
from core.pipeline import generate, train_and_map, unpack_workspace  # noqa: E402
from core.rep.autoencoder import AEConfig  # noqa: E402
from core.rep.loop import TrainConfig  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.stats import NO_DIFFERENCE, as_json, compare, t_interval, verdict  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from core.zoo.generate import ZooConfig, generate_zoo  # noqa: E402

TASKS = {  # name: (the zoo's dataset, the target), of the dataset D
    "new classes": ("{D}:classes=0-4", "{D}:classes=5-9"),
    "inverted": ("{D}", "{D}:invert"),
    "rotated": ("{D}", "{D}:rotate=90"),
    "noisy": ("{D}", "{D}:noise=0.5"),
}
SHOTS = (10, None)  # k labelled images per class; None: the whole training split
# Generator variants: (autoencoder training, sampling). The first is today's default.
VARIANTS = {
    "generated (behavioural loss, defaults)": (TrainConfig(), SampleConfig()),
    "generated (2022: weight-space loss, kde)": (
        TrainConfig(structure_weight=1.0, behaviour_weight=0.0),
        SampleConfig(method="kde", spread=1.0, selection="none"),
    ),
}
GROUPS = {"b_t": "random_init", "b_f": "anchors", "noise": "noise"}
LABELS = {"b_t": "B_T: random init", "b_f": "B_F: the anchors", "noise": "anchor + noise"}  # in the plot


def curve_epochs(finetune_epochs: int) -> tuple[int, ...]:
    """The epochs reported: 0, 1, 5 and 15 at the default 15; 0, 1, a third and the last otherwise."""
    return tuple(sorted({0, min(1, finetune_epochs), finetune_epochs // 3, finetune_epochs}))


def _slug(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", dataset).strip("_")


def source_workspace(dataset: str, root: Path, seed: int, args) -> Workspace:
    """The zoo a task transfers from, made with the seed: the shipped default for digits at seed 0 and the
    default size, else a zoo trained here."""
    config = ZooConfig(dataset=dataset, seed=seed, models=args.models, epochs=args.zoo_epochs)
    workspace = Workspace(root / f"{_slug(dataset)}-m{config.models}-e{config.epochs}-s{seed}")
    if workspace.exists():
        return workspace
    if dataset == "digits" and config == ZooConfig():
        return unpack_workspace(ASSET, workspace.root)
    generate_zoo(workspace, config)
    return workspace


def run_task(source: str, target: str, args, root: Path) -> dict:
    """{row: {"mean", "lo", "hi", "spread" (each per reported epoch: the mean over seeds, its 95% interval, the
    population std over seeds), "later" (the interval of the mean of the epochs after 0), "epochs_saved"}}."""
    epochs = curve_epochs(args.finetune_epochs)
    per_seed: dict[str, list] = {}
    saved: dict[str, list] = {}
    for seed in args.seeds:
        workspace = source_workspace(source, root, seed, args)
        for number, (variant, (train, sampling)) in enumerate(VARIANTS.items()):
            train = replace(train, seed=seed, **({"epochs": args.ae_epochs} if args.ae_epochs else {}))
            run = train_and_map(workspace, AEConfig(), train)
            config = replace(sampling, dataset=target, finetune_epochs=args.finetune_epochs, seed=seed)
            result = generate(workspace, config, run.name).to_json()
            rows = {variant: "generated", **(GROUPS if number == 0 else {})}  # baselines once per seed
            for row, group in rows.items():
                per_seed.setdefault(row, []).append([result["curves"][group][e] for e in epochs])
                saved.setdefault(row, []).append(result["epochs_saved"][group])
    return {row: _over_seeds(curves, saved[row]) for row, curves in per_seed.items()}


def _over_seeds(curves: list[list[float]], saved: list) -> dict:
    """One row's curves (one per seed) as means with their t-intervals, epoch by epoch and over the later epochs."""
    intervals = [t_interval([c[i] for c in curves]) for i in range(len(curves[0]))]
    return {
        "mean": [i.estimate for i in intervals],
        "lo": [i.lo for i in intervals],
        "hi": [i.hi for i in intervals],
        "spread": [statistics.pstdev(c[i] for c in curves) for i in range(len(curves[0]))],
        "later": t_interval([statistics.fmean(c[1:]) for c in curves]) if len(curves[0]) > 1 else intervals[0],
        "epochs_saved": _mean_or_none(saved),
    }


def _mean_or_none(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if len(known) == len(values) else None


def judge(rows: dict) -> dict:
    """On the mean of the epochs after 0, over seeds: suitable where B_F measurably beats B_T (their intervals do
    not overlap), and whether the default generator measurably beats both."""
    later = {row: figures["later"] for row, figures in rows.items()}
    default = next(iter(VARIANTS))
    return {
        "suitable": compare(later["b_f"], later["b_t"]) == "higher",
        "generated_beats_both": all(compare(later[default], later[b]) == "higher" for b in ("b_f", "b_t")),
        "later_epochs_mean": {row: i.estimate for row, i in later.items()},
        "later_epochs": {row: i.to_json() for row, i in later.items()},
        "verdicts": [
            verdict(later["b_f"], later["b_t"], "B_F", "B_T"),
            *(verdict(later[default], later[b], "generated", b.upper()) for b in ("b_t", "b_f")),
        ],
    }


def print_task(name: str, rows: dict, judged: dict, epochs: tuple[int, ...]) -> None:
    suitable = "B_F beats B_T: suitable" if judged["suitable"] else "B_F does not measurably beat B_T"
    print(f"\n{name}  ({suitable}); mean over seeds ± half its 95% interval")
    print(f"{'start':<44}" + "".join(f"{'epoch ' + str(e):>16}" for e in epochs) + f"{'epochs saved':>14}")
    for row, figures in rows.items():
        cells = "".join(f"{_pm(m, lo, hi):>16}" for m, lo, hi in zip(figures["mean"], figures["lo"], figures["hi"]))
        saved = figures["epochs_saved"]
        print(f"{row:<44}{cells}{'-' if saved is None else f'{saved:.1f}':>14}")
    print("on the mean of the later epochs: " + "; ".join(judged["verdicts"]))


def _pm(mean: float, lo: float, hi: float) -> str:
    return f"{mean:.3f} (1 seed)" if lo != lo else f"{mean:.3f} ±{(hi - lo) / 2:.3f}"


def plot(results: dict, path: Path) -> None:
    """One panel per task (columns) and labelled set (rows: k = 10, all), one line per start with its 95% interval
    over seeds (the std over seeds where one seed gives no interval)."""
    import matplotlib  # a bench-only import: the engine and the app never draw static figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(name.split(", ")[0] for name in results))
    shots = list(dict.fromkeys(name.split(", ")[1] for name in results))
    fig, axes = plt.subplots(len(shots), len(tasks), figsize=(3.4 * len(tasks), 2.9 * len(shots)), squeeze=False)
    for (row, shot), (col, task) in ((r, c) for r in enumerate(shots) for c in enumerate(tasks)):
        axis, result = axes[row][col], results.get(f"{task}, {shot}")
        if result is None:
            axis.set_visible(False)
            continue
        for start, figures in result["rows"].items():
            label = LABELS.get(start, start)
            axis.errorbar(result["epochs"], figures["mean"], yerr=_error_bars(figures), marker="o", ms=3, capsize=2,
                          label=label)  # fmt: skip
        suitable = " (B_F beats B_T)" if result["suitable"] else ""
        axis.set_title(f"{task}, {shot}{suitable}", fontsize=9)
        axis.set_xlabel("fine-tuning epoch on the target", fontsize=8)
        axis.set_ylabel("mean test accuracy", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _error_bars(figures: dict) -> list:
    lo, hi = figures.get("lo"), figures.get("hi")
    if not lo or any(v is None or v != v for v in lo + hi):
        return figures["spread"]
    return [[m - low for m, low in zip(figures["mean"], lo)], [high - m for m, high in zip(figures["mean"], hi)]]


def results_from_json(path: Path) -> dict:
    """A finished run's results, read back from the JSON line it printed last (to re-plot without re-running)."""
    tasks = json.loads(path.read_text().strip().splitlines()[-1])["tasks"]
    return {
        name: {"rows": task["variants"], "suitable": task["suitable"], "epochs": task["epochs"]}
        for name, task in tasks.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", help="any dataset the engine reads (digits, shapes, a folder)")
    parser.add_argument("--seeds", type=seed_list, default=None, help="a count N (0..N-1) or a list (default 3)")
    parser.add_argument("--quick", action="store_true", help="the noisy task at k=10 alone (one seed by default)")
    parser.add_argument("--models", type=int, default=ZooConfig().models, help="models in each source zoo")
    parser.add_argument("--zoo-epochs", type=int, default=ZooConfig().epochs)
    parser.add_argument("--ae-epochs", type=int, default=None, help="autoencoder epochs (default: the variants')")
    parser.add_argument("--finetune-epochs", type=int, default=15)
    parser.add_argument("--root", type=Path, default=None, help="keep the source workspaces here (default: temporary)")
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="re-plot a saved run's output (needs --png)")
    args = parser.parse_args()
    if args.from_json:
        plot(results_from_json(args.from_json), args.png)
        return
    tune_cpu_allocator()
    args.seeds = args.seeds or ((0,) if args.quick else seed_list("3"))
    tasks = {"noisy": TASKS["noisy"]} if args.quick else TASKS
    shots = (10,) if args.quick else SHOTS
    epochs = curve_epochs(args.finetune_epochs)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        for name, (source, target) in tasks.items():
            source, target = source.format(D=args.dataset), target.format(D=args.dataset)
            for k in shots:
                task_name = f"{name}, k={k}" if k else f"{name}, all"
                rows = run_task(source, f"{target}:k={k}" if k else target, args, root)
                results[task_name] = {"rows": rows, "epochs": list(epochs), **judge(rows)}
                print_task(task_name, rows, results[task_name], epochs)
    if args.png:
        plot(results, args.png)
    report(results, args)


def report(results: dict, args) -> None:
    suitable = [name for name, r in results.items() if r["suitable"]]
    won = [name for name in suitable if results[name]["generated_beats_both"]]
    print(f"\nover {len(args.seeds)} seeds on {args.dataset}: suitable (B_F measurably beats B_T): "
          f"{suitable or 'none'}; generated measurably beat both on: {won or 'none'} "
          f"(elsewhere: {NO_DIFFERENCE} or lower)")  # fmt: skip
    default = next(iter(VARIANTS))
    tasks = {
        name: {
            "epochs": r["epochs"],
            **{row: r["rows"][row]["mean"] for row in ("b_t", "b_f", "noise")},
            "generated": r["rows"][default]["mean"],
            "intervals": {row: _epoch_intervals(figures) for row, figures in r["rows"].items()},
            "variants": {row: _row_json(figures) for row, figures in r["rows"].items()},
            **{k: r[k] for k in ("suitable", "generated_beats_both", "later_epochs", "verdicts")},
        }
        for name, r in results.items()
    }
    print(json.dumps({"tasks": tasks, "generated_method": default, "seeds": list(args.seeds)}))


def _plain(value: float) -> float | None:
    return None if value != value else value  # NaN (one seed: no interval) as null


def _epoch_intervals(figures: dict) -> list[dict]:
    return [
        {"mean": m, "lo": _plain(lo), "hi": _plain(hi)}
        for m, lo, hi in zip(figures["mean"], figures["lo"], figures["hi"])
    ]


def _row_json(figures: dict) -> dict:
    plain = {k: [_plain(v) for v in figures[k]] for k in ("mean", "lo", "hi", "spread")}
    return {**plain, "later": as_json(figures["later"]), "epochs_saved": figures["epochs_saved"]}


if __name__ == "__main__":
    main()
