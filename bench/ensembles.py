"""Ensembles of generated models against the anchors they came from, anchor + noise and a deep ensemble.

For each zoo (the default digits zoo; an MNIST zoo of CNN-s models built from --dataset, unless --workspace names
one) and each seed, one generation with the defaults (neighbour sampler, subsample selection) and one with the
`diverse` selection (greedy ensemble selection on validation NLL), both with their ensembles
(core/gen/ensemble.py, core/gen/ensemble_groups.py). Table: groups x accuracy and NLL of the ensemble of N = --n
members on the zoo's test split; each figure the mean over seeds with a 95% t-interval over seeds, and beside it
how it compares with the generated models' ensemble ("no measurable difference" where the intervals overlap);
the fine-tuned generated models' ensemble is compared with their source anchors' after the same fine-tuning.
Also the cost: seconds of the ensemble evaluation (its forward passes apart) against the whole generation.

Usage: python bench/ensembles.py [--only digits|mnist] [--seeds 3] [--n 16] [--dataset ../shared/data/mnist:k=100]
       [--workspace WS] [--workdir DIR]
The last line of stdout is JSON: {"datasets": {"digits"|"mnist": {group: {"acc"|"nll": {"mean", "lo", "hi"}}}},
"cost": {...}}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

from core.default import ASSET  # noqa: E402
from core.gen.config import SampleConfig  # noqa: E402
from core.pipeline import generate, train_and_map, unpack_workspace  # noqa: E402
from core.rep.autoencoder import AEConfig  # noqa: E402
from core.rep.loop import TrainConfig  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.store.runs import finished_ae_runs  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from core.zoo.generate import ZooConfig, generate_zoo  # noqa: E402

GROUPS = ("generated", "generated_diverse", "finetuned", "anchors", "anchors_finetuned", "noise", "average", "deep")
FIGURES = ("acc", "nll")
BOUNDS = {"acc": (0.0, 1.0), "nll": (0.0, float("inf"))}


def digits_workspace(folder: Path) -> Workspace:
    """The shipped default workspace (zoo, autoencoder, map), unpacked once into `folder`."""
    workspace = Workspace(folder / "digits")
    if not workspace.exists():
        unpack_workspace(ASSET, workspace.root)
    return workspace


def mnist_workspace(folder: Path, args: argparse.Namespace) -> Workspace:
    """--workspace, or a CNN-s zoo on --dataset built into `folder` (and its autoencoder with the defaults)."""
    workspace = Workspace(args.workspace or folder / "mnist")
    if not workspace.has_zoo():
        zoo = ZooConfig(arch="cnn-s", dataset=args.dataset, models=args.mnist_models, epochs=args.mnist_epochs)
        generate_zoo(workspace, zoo)
    if not finished_ae_runs(workspace):
        train_and_map(workspace, AEConfig(), replace(TrainConfig(), epochs=args.ae_epochs))
    return workspace


def measure(workspace: Workspace, args: argparse.Namespace) -> tuple[dict, dict]:
    """({group: {figure: [value per seed]}} at N = n, {"ensemble_s": [...], "forward_s": [...], "generation_s":
    [...]}) over the seeds."""
    size, values = str(args.n), {g: {f: [] for f in FIGURES} for g in GROUPS}
    cost = {"ensemble_s": [], "forward_s": [], "generation_s": []}
    for seed in range(args.seeds):
        base = SampleConfig(n=args.n, finetune_epochs=args.finetune_epochs, seed=seed, ensemble=True)
        for selection in ("subsample", "diverse"):
            run = generate(workspace, replace(base, selection=selection))
            for group, table in run.ensembles.items():
                name = group if selection == "subsample" else f"{group}_diverse"
                if name in values:
                    for figure in FIGURES:
                        values[name][figure].append(table[size][figure]["mean"])
            if selection == "subsample":
                seconds = run.ensemble_settings["seconds"]
                cost["ensemble_s"].append(seconds["total"])
                cost["forward_s"].append(seconds["forward"])
                cost["generation_s"].append(run.extra["seconds"])
    return {g: v for g, v in values.items() if v["acc"]}, cost


def interval(values: list[float], bounds: tuple[float, float]) -> dict[str, float]:
    """Mean and 95% t-interval over seeds, clipped to the figure's range `bounds` (lo = hi = mean for one seed;
    with few seeds the t-interval is wide: 12.7 standard errors each side for 2)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": mean, "lo": mean, "hi": mean}
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return {"mean": mean, "lo": max(bounds[0], mean - half), "hi": min(bounds[1], mean + half)}


def compared(mine: dict, theirs: dict, lower_is_better: bool, reference: str = "generated") -> str:
    """How a group's figure stands against the reference group's (the generated models'): overlap means no
    measurable difference."""
    if mine is theirs:
        return "(reference)"
    if mine["lo"] <= theirs["hi"] and theirs["lo"] <= mine["hi"]:
        return "no measurable difference"
    better = (mine["mean"] < theirs["mean"]) == lower_is_better
    return f"better than {reference}" if better else f"worse than {reference}"


def report(name: str, table: dict, cost: dict, args: argparse.Namespace) -> None:
    print(f"\n{name}: ensembles of {args.n} members on the test split, mean over {args.seeds} seeds [95% interval]")
    print(f"{'group':<19}{'accuracy':>26}  {'vs generated':<26}{'NLL':>26}  vs generated")
    reference = table["generated"]
    for group, figures in table.items():
        cells = []
        for figure, lower in (("acc", False), ("nll", True)):
            f = figures[figure]
            cells.append(f"{f['mean']:.4f} [{f['lo']:.4f}, {f['hi']:.4f}]".rjust(26))
            cells.append("  " + compared(f, reference[figure], lower).ljust(26))
        print(f"{group:<19}" + "".join(cells))
    if "finetuned" in table and "anchors_finetuned" in table:  # like for like: both fine-tuned alike
        pair = (table["anchors_finetuned"], table["finetuned"])
        said = [compared(pair[0][f], pair[1][f], f == "nll", "finetuned") for f in FIGURES]
        print(f"anchors_finetuned against finetuned (the same fine-tuning): accuracy {said[0]}, NLL {said[1]}")
    ratio = np.mean(cost["ensemble_s"]) / np.mean(cost["generation_s"])
    print(
        f"cost: ensembles {np.mean(cost['ensemble_s']):.2f} s (forward passes {np.mean(cost['forward_s']):.2f} s) "
        f"beside a generation of {np.mean(cost['generation_s']):.1f} s: {ratio:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("digits", "mnist"), default=None, help="one zoo (default: both)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n", type=int, default=16, help="members per ensemble (and models per generation)")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--dataset", default="../shared/data/mnist:k=100", help="the MNIST zoo's dataset")
    parser.add_argument("--workspace", type=Path, default=None, help="an existing MNIST workspace to use")
    parser.add_argument("--mnist-models", type=int, default=128, help="models of the MNIST zoo built here")
    parser.add_argument("--mnist-epochs", type=int, default=15)
    parser.add_argument("--ae-epochs", type=int, default=TrainConfig().epochs, help="the MNIST zoo's autoencoder")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the workspaces here (default: temporary)")
    args = parser.parse_args()
    tune_cpu_allocator()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="ensembles-"))
    folder.mkdir(parents=True, exist_ok=True)
    results, costs = {}, {}
    for name in ("digits", "mnist"):
        if args.only not in (None, name):
            continue
        workspace = digits_workspace(folder) if name == "digits" else mnist_workspace(folder, args)
        values, cost = measure(workspace, args)
        results[name] = {g: {f: interval(v, BOUNDS[f]) for f, v in figures.items()} for g, figures in values.items()}
        costs[name] = {k: round(float(np.mean(v)), 3) for k, v in cost.items()}
        report(name, results[name], cost, args)
    print(json.dumps({"datasets": results, "cost": costs}))


if __name__ == "__main__":
    main()
