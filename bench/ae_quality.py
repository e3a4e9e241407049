"""Hyper-representation quality on held-out models: reconstruction, kept accuracy, property probes.

For each zoo size it trains the autoencoder with the defaults and with one ablation at a time (no
alignment, no layer-wise loss normalisation), and once on a zoo where every model has its own init (the
papers' seed-varied zoos), then reports the `ae eval` figures side by side.
Usage: python bench/ae_quality.py [--sizes 128,256] [--ae-epochs 100] [--workdir DIR]
The last line of stdout is JSON: one entry per (zoo, variant).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

from core.pipeline import train_and_map  # noqa: E402
from core.rep.autoencoder import AEConfig  # noqa: E402
from core.rep.evaluate import evaluate_run  # noqa: E402
from core.rep.loop import TrainConfig  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from core.zoo.generate import ZooConfig, generate_zoo  # noqa: E402


def _zoo(workdir: Path, name: str, config: ZooConfig) -> Workspace:
    workspace = Workspace(workdir / name)
    if not workspace.exists():
        generate_zoo(workspace, config)
    return workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,256", help="zoo sizes (models)")
    parser.add_argument("--init-seeds", type=int, default=ZooConfig().init_seeds)
    parser.add_argument("--ae-epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--workdir", default=None, help="keep zoos and runs here (default: a temporary folder)")
    parser.add_argument("--no-seed-zoo", action="store_true", help="skip the fully seed-varied zoo")
    args = parser.parse_args()
    tune_cpu_allocator()  # as the CLI and the app do
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ae-quality-"))
    base_zoo = ZooConfig(init_seeds=args.init_seeds)
    train = replace(TrainConfig(), epochs=args.ae_epochs)
    variants = {
        "default": train,
        "no-align": replace(train, align=False),
        "no-layer-norm": replace(train, layer_norm=False),
    }
    jobs = []
    for size in [int(s) for s in args.sizes.split(",")]:
        zoo_config = replace(base_zoo, models=size)
        for variant, config in variants.items():
            jobs.append(
                (
                    f"{size} models, {args.init_seeds} inits",
                    f"zoo-{size}-k{args.init_seeds}",
                    zoo_config,
                    variant,
                    config,
                )
            )
    if not args.no_seed_zoo:
        seed_zoo = replace(base_zoo, models=256, init_seeds=0)
        for variant in ("default", "no-align"):
            jobs.append(("256 models, own inits", "zoo-256-own", seed_zoo, variant, variants[variant]))

    results = []
    for label, folder, zoo_config, variant, config in jobs:
        workspace = _zoo(workdir, folder, zoo_config)
        run = train_and_map(workspace, AEConfig(), config, run=variant)
        figures = evaluate_run(workspace, run.name)
        results.append(
            {"zoo": label, "variant": variant, **{k: figures[k] for k in _KEYS}, "probe_r2": figures["probe_r2"]}
        )
        print(_row(results[-1]), flush=True)

    print(
        f"\n{'zoo':<22}{'variant':<15}{'R2':>7}{'acc kept':>9}{'>=90%':>7}{'train s':>8}"
        "   probe R2 acc/epoch/ggap: emb | W | s(W)"
    )
    for r in results:
        print(_row(r))
    print(json.dumps(results))


_KEYS = ("recon_r2", "recon_acc_ratio", "recon_keep90_fraction", "train_seconds", "epochs_trained")


def _row(r: dict) -> str:
    probes = " | ".join(
        "/".join(f"{r['probe_r2'][f][p]:.2f}" for p in ("test_acc", "epoch", "ggap"))
        for f in ("embedding", "weights", "stats")
    )
    return (
        f"{r['zoo']:<22}{r['variant']:<15}{r['recon_r2']:>7.3f}{r['recon_acc_ratio']:>9.3f}"
        f"{r['recon_keep90_fraction']:>7.2f}{r['train_seconds']:>8.0f}   {probes}"
    )


if __name__ == "__main__":
    main()
