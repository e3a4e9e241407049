"""Transfer learning, the papers' protocol (Schürholt et al. 2022): do generated models make better starts on a new
task than training from scratch (B_T) and than fine-tuning the zoo's own models (B_F)?

Every start is fine-tuned on the target with the zoo's recipe for 15 epochs, side by side: B_T (random init), B_F
(the anchors: the zoo's best 30%), anchor + noise, and each generator variant's models (sampled around the same
anchors). The output layer is kept when the target has the zoo's classes and drawn anew when not. Tasks, each with
k = 10 labelled training images per class and with the whole training split:
  new classes:  a zoo trained on digits 0-4, transferred to digits 5-9 (head drawn anew)
  inverted:     the default digits zoo to digits with inverted contrast (head kept)
  rotated:      the default zoo to digits turned by 90 degrees (head kept)
  noisy:        the default zoo to digits with pixel noise of std 0.5 (head kept)
Figures: mean test accuracy over models at epochs 0/1/5/15, averaged over seeds, with the spread over seeds; the
epochs each start saves against B_T (the first epoch it reaches B_T's final accuracy); which task is suitable (B_F
beats B_T on the mean of epochs 1, 5 and 15) and whether the generated models beat both there.

Usage: python bench/transfer.py [--seeds 5] [--quick] [--png assets/transfer.png]. --quick: one seed of the new-classes
task at k = 10. The last line of stdout is JSON: {"tasks": {task: {"epochs", "b_t", "b_f", "generated", "noise", ...}},
"generated_method": ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

from core.default import ASSET  # noqa: E402
from core.gen.config import SampleConfig  # noqa: E402
from core.pipeline import generate, train_and_map, unpack_workspace  # noqa: E402
from core.rep.autoencoder import AEConfig  # noqa: E402
from core.rep.loop import TrainConfig  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from core.zoo.generate import ZooConfig, generate_zoo  # noqa: E402

TASKS = {  # name: (the zoo's dataset, the target)
    "new classes": ("digits:classes=0-4", "digits:classes=5-9"),
    "inverted": ("digits", "digits:invert"),
    "rotated": ("digits", "digits:rotate=90"),
    "noisy": ("digits", "digits:noise=0.5"),
}
SHOTS = (10, None)  # k labelled images per class; None: the whole training split
EPOCHS = (0, 1, 5, 15)
# Generator variants: (autoencoder training, sampling). The first is today's default.
VARIANTS = {
    "generated (behavioural loss, defaults)": (TrainConfig(), SampleConfig()),
    "generated (2022: weight-space loss, kde)": (
        TrainConfig(structure_weight=1.0, behaviour_weight=0.0),
        SampleConfig(method="kde", spread=1.0, selection="none"),
    ),
}
GROUPS = {"b_t": "random_init", "b_f": "anchors", "noise": "noise"}


def source_workspace(dataset: str, root: Path) -> Workspace:
    """The zoo a task transfers from: the shipped default for digits, else a 256-model zoo trained here."""
    workspace = Workspace(root / dataset.replace(":", "_").replace("=", "-"))
    if workspace.exists():
        return workspace
    if dataset == "digits":
        return unpack_workspace(ASSET, workspace.root)
    generate_zoo(workspace, ZooConfig(dataset=dataset))
    return workspace


def run_task(workspace: Workspace, target: str, seeds: list[int]) -> dict:
    """{row: {"mean": [acc at EPOCHS], "spread": [...], "epochs_saved": mean or None}} over seeds."""
    per_seed: dict[str, list] = {}
    saved: dict[str, list] = {}
    for seed in seeds:
        for number, (variant, (train, sampling)) in enumerate(VARIANTS.items()):
            run = train_and_map(workspace, AEConfig(), train)
            config = SampleConfig(
                **{**sampling.__dict__, "dataset": target, "finetune_epochs": max(EPOCHS), "seed": seed},
            )
            result = generate(workspace, config, run.name).to_json()
            rows = {variant: "generated", **(GROUPS if number == 0 else {})}  # baselines once per seed
            for row, group in rows.items():
                per_seed.setdefault(row, []).append([result["curves"][group][e] for e in EPOCHS])
                saved.setdefault(row, []).append(result["epochs_saved"][group])
    return {
        row: {
            "mean": [statistics.fmean(c[i] for c in curves) for i in range(len(EPOCHS))],
            "spread": [statistics.pstdev(c[i] for c in curves) for i in range(len(EPOCHS))],
            "epochs_saved": _mean_or_none(saved[row]),
        }
        for row, curves in per_seed.items()
    }


def _mean_or_none(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if len(known) == len(values) else None


def judge(rows: dict) -> dict:
    """Suitable: B_F beats B_T on the mean of epochs 1, 5 and 15; and whether the default generator beats both."""
    later = {row: statistics.fmean(figures["mean"][1:]) for row, figures in rows.items()}
    default = next(iter(VARIANTS))
    return {
        "suitable": later["b_f"] > later["b_t"],
        "generated_beats_both": later[default] > max(later["b_f"], later["b_t"]),
        "later_epochs_mean": later,
    }


def print_task(name: str, rows: dict, verdict: dict) -> None:
    print(f"\n{name}" + ("  (B_F beats B_T: suitable)" if verdict["suitable"] else "  (B_F does not beat B_T)"))
    print(f"{'start':<44}" + "".join(f"{'epoch ' + str(e):>14}" for e in EPOCHS) + f"{'epochs saved':>14}")
    for row, figures in rows.items():
        cells = "".join(f"{m:>8.3f} ±{s:.3f}" for m, s in zip(figures["mean"], figures["spread"]))
        saved = figures["epochs_saved"]
        print(f"{row:<44}{cells}{'-' if saved is None else f'{saved:.1f}':>14}")


def plot(results: dict, path: Path) -> None:
    import matplotlib  # a bench-only import: the engine and the app never draw static figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for axis, name in zip(axes[0], names):
        for row, figures in results[name]["rows"].items():
            axis.errorbar(EPOCHS, figures["mean"], yerr=figures["spread"], marker="o", ms=3, capsize=2, label=row)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("fine-tuning epoch on the target")
        axis.set_ylabel("mean test accuracy")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one seed of the new-classes task at k=10")
    parser.add_argument("--root", type=Path, default=None, help="keep the source workspaces here (default: temporary)")
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    tune_cpu_allocator()
    tasks = {"new classes": TASKS["new classes"]} if args.quick else TASKS
    shots = (10,) if args.quick else SHOTS
    seeds = [0] if args.quick else list(range(args.seeds))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        for name, (source, target) in tasks.items():
            workspace = source_workspace(source, root)
            for k in shots:
                task_name = f"{name}, k={k}" if k else f"{name}, all"
                rows = run_task(workspace, f"{target}:k={k}" if k else target, seeds)
                results[task_name] = {"rows": rows, **judge(rows)}
                print_task(task_name, rows, results[task_name])
    if args.png:
        plot(results, args.png)
    report(results)


def report(results: dict) -> None:
    suitable = [name for name, r in results.items() if r["suitable"]]
    won = [name for name in suitable if results[name]["generated_beats_both"]]
    print(f"\nsuitable (B_F beats B_T): {suitable or 'none'}; generated beat both on: {won or 'none'}")
    default = next(iter(VARIANTS))
    tasks = {
        name: {
            "epochs": list(EPOCHS),
            **{row: r["rows"][row]["mean"] for row in ("b_t", "b_f", "noise")},
            "generated": r["rows"][default]["mean"],
            "variants": {row: figures for row, figures in r["rows"].items()},
            "suitable": r["suitable"],
            "generated_beats_both": r["generated_beats_both"],
        }
        for name, r in results.items()
    }
    print(json.dumps({"tasks": tasks, "generated_method": default}))


if __name__ == "__main__":
    main()
