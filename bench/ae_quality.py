"""Hyper-representation quality on held-out models: reconstruction, kept accuracy, property probes.

For each zoo size it trains the autoencoder with the defaults and with one ablation at a time (no
alignment, no layer-wise loss normalisation), and once on a zoo where every model has its own init (the
papers' seed-varied zoos), then reports the `ae eval` figures side by side. Each seed makes its own zoo and
trains its own autoencoders (zoo and autoencoder seeded alike); every figure is the mean over seeds with its
Student-t 95% interval, and each ablation is compared with the defaults on the same zoo: higher, lower, or no
measurable difference (the intervals overlap).
Usage: python bench/ae_quality.py [--dataset digits] [--seeds 3 | 0,4,7] [--sizes 128,256] [--ae-epochs 60]
                                  [--zoo-epochs 15] [--variants default,no-align] [--no-seed-zoo] [--workdir DIR]
The last line of stdout is JSON: one entry per (zoo, variant) with the mean over seeds under the keys `ae eval`
gives, and "intervals": the same keys, each {"mean", "lo", "hi"}.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

from core.parsing import seed_list  # noqa: E402
from core.pipeline import train_and_map  # noqa: E402
from core.rep.autoencoder import AEConfig  # noqa: E402
from core.rep.evaluate import evaluate_run  # noqa: E402
from core.rep.loop import TrainConfig  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.stats import as_json, format_interval, intervals_over, means, verdict  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from core.zoo.generate import ZooConfig, generate_zoo  # noqa: E402


def _zoo(workdir: Path, name: str, config: ZooConfig) -> Workspace:
    workspace = Workspace(workdir / name)
    if not workspace.exists():
        generate_zoo(workspace, config)
    return workspace


def _slug(dataset: str) -> str:
    """A dataset name as part of a folder name (`../shared/data/mnist:k=100` -> `shared_data_mnist_k_100`)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", dataset).strip("_")


def _jobs(args) -> list[tuple]:
    """(zoo label, folder stem, zoo config, variant, training config) of every autoencoder to train per seed."""
    base_zoo = ZooConfig(dataset=args.dataset, init_seeds=args.init_seeds, epochs=args.zoo_epochs)
    train = replace(TrainConfig(), epochs=args.ae_epochs)
    variants = {
        "default": train,
        "no-align": replace(train, align=False),
        "no-layer-norm": replace(train, layer_norm=False),
    }
    wanted = args.variants.split(",")
    jobs = []
    for size in [int(s) for s in args.sizes.split(",")]:
        zoo_config = replace(base_zoo, models=size)
        label, stem = f"{size} models, {args.init_seeds} inits", f"zoo-{_slug(args.dataset)}-{size}-k{args.init_seeds}"
        jobs += [(label, stem, zoo_config, v, c) for v, c in variants.items() if v in wanted]
    if not args.no_seed_zoo:
        seed_zoo = replace(base_zoo, models=256, init_seeds=0)
        own = [v for v in ("default", "no-align") if v in wanted]
        jobs += [("256 models, own inits", f"zoo-{_slug(args.dataset)}-256-own", seed_zoo, v, variants[v]) for v in own]
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", help="any dataset the engine reads (digits, shapes, a folder)")
    parser.add_argument("--seeds", type=seed_list, default=seed_list("3"), help="a count N (0..N-1) or a list")
    parser.add_argument("--sizes", default="128,256", help="zoo sizes (models)")
    parser.add_argument("--init-seeds", type=int, default=ZooConfig().init_seeds)
    parser.add_argument("--zoo-epochs", type=int, default=ZooConfig().epochs)
    parser.add_argument("--ae-epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--variants", default="default,no-align,no-layer-norm", help="which autoencoders to train")
    parser.add_argument("--workdir", default=None, help="keep zoos and runs here (default: a temporary folder)")
    parser.add_argument("--no-seed-zoo", action="store_true", help="skip the fully seed-varied zoo")
    args = parser.parse_args()
    tune_cpu_allocator()  # as the CLI and the app do
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ae-quality-"))
    per_seed: dict[tuple, list] = {}
    for seed in args.seeds:
        for label, stem, zoo_config, variant, config in _jobs(args):
            workspace = _zoo(workdir, f"{stem}-s{seed}", replace(zoo_config, seed=seed))
            run = train_and_map(workspace, AEConfig(), replace(config, seed=seed), run=variant)
            figures = evaluate_run(workspace, run.name)
            per_seed.setdefault((label, variant), []).append(
                {**{k: figures[k] for k in _KEYS}, "probe_r2": figures["probe_r2"]}
            )
            print(f"seed {seed}: {label}, {variant}: R2 {figures['recon_r2']:.3f}", flush=True)

    results = []
    for (label, variant), records in per_seed.items():
        intervals = intervals_over(records)
        results.append({"zoo": label, "variant": variant, **means(intervals), "intervals": intervals})
    seeds = ",".join(map(str, args.seeds))
    print(f"\n{len(args.seeds)} seeds ({seeds}) on {args.dataset}; mean ± half the 95% interval over seeds")
    print(
        f"{'zoo':<22}{'variant':<15}{'R2':>15}{'acc kept':>15}{'>=90%':>15}{'train s':>8}"
        "   probe R2 acc/epoch/ggap: emb | W | s(W)"
    )
    for r in results:
        print(_row(r))
    for line in _verdicts(results):
        print(line)
    print(json.dumps([{**r, "intervals": as_json(r["intervals"]), "seeds": list(args.seeds)} for r in results]))


_KEYS = ("recon_r2", "recon_acc_ratio", "recon_keep90_fraction", "train_seconds", "epochs_trained")


def _cell(interval, width: int = 15) -> str:
    if interval is None:
        return f"{'-':>{width}}"
    text = f"{interval.estimate:.3f}" if not interval.known else f"{interval.estimate:.3f}±{interval.half_width:.3f}"
    return f"{text:>{width}}"


def _row(r: dict) -> str:
    iv = r["intervals"]
    probes = " | ".join(
        "/".join(_cell(iv["probe_r2"][f].get(p), 0).strip() for p in ("test_acc", "epoch", "ggap"))
        for f in ("embedding", "weights", "stats")
    )
    kept, keep90 = iv.get("recon_acc_ratio"), iv.get("recon_keep90_fraction")
    return (
        f"{r['zoo']:<22}{r['variant']:<15}{_cell(iv['recon_r2'])}{_cell(kept)}{_cell(keep90)}"
        f"{r['train_seconds']:>8.0f}   {probes}"
    )


def _verdicts(results: list[dict]) -> list[str]:
    """Each figure of the full form, the ablations against the defaults on the same zoo, and the embedding's
    accuracy probe against the weight baselines: higher, lower or no measurable difference."""
    lines = ["\nfigures (mean ± half the 95% interval [ends]) and comparisons over seeds:"]
    defaults = {r["zoo"]: r["intervals"] for r in results if r["variant"] == "default"}
    for r in results:
        iv, mine = r["intervals"], f"{r['zoo']}, {r['variant']}"
        figures = [(k, iv[k]) for k in ("recon_r2", "recon_acc_ratio") if k in iv]
        figures.append(("probe R2 test_acc (embedding)", iv["probe_r2"]["embedding"].get("test_acc")))
        figures = [(name, v) for name, v in figures if v is not None]
        lines += [f"  {mine}: {name} {format_interval(v)}" for name, v in figures]
        base = defaults.get(r["zoo"])
        if base is not None and r["variant"] != "default":
            shared = [k for k in ("recon_r2", "recon_acc_ratio") if k in iv and k in base]
            lines += [f"    {k}: {verdict(iv[k], base[k], r['variant'], 'default')}" for k in shared]
        probes = {f: iv["probe_r2"].get(f, {}).get("test_acc") for f in ("embedding", "weights", "stats")}
        for baseline in ("weights", "stats"):
            if probes["embedding"] is not None and probes[baseline] is not None:
                said = verdict(probes["embedding"], probes[baseline], "embedding", baseline)
                lines.append(f"    probe R2 test_acc: {said}")
    return lines


if __name__ == "__main__":
    main()
