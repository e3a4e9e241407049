"""Hyper-representation quality on held-out models: reconstruction, kept accuracy, property probes.

For each zoo size it trains the autoencoder with the defaults and with one change at a time (no alignment, no
layer-wise loss normalisation, half or double the latent size, half or double the training epochs, or the defaults
under another seed, which draws another split of held-out models and another initialisation: how far a run's
figures move by chance, the yardstick a change's difference is read against), and once on a zoo where every model
has its own init (the papers' seed-varied zoos), then reports the `ae eval` figures side by side. Each seed makes
its own zoo and trains its own autoencoders (zoo and autoencoder seeded alike); every figure is the mean over seeds
with its Student-t 95% interval. Each change is compared with the defaults paired by seed (the same zoo and, but
for `other-seed`, the same held-out models on both sides: the interval of the per-seed differences), as is the
embedding's accuracy probe with the weight baselines': higher, lower, or no measurable difference (the interval
holds 0).
Usage: python bench/ae_quality.py [--dataset digits] [--arch cnn-small] [--seeds 3 | 0,4,7] [--sizes 128,256]
                                  [--ae-epochs 60] [--zoo-epochs 15] [--variants default,no-align] [--no-seed-zoo]
                                  [--workdir DIR]
MNIST as bench/paper.py's quick zoos: --dataset ../shared/data/mnist:k=100:test=2000 --arch cnn-s --sizes 64
  --zoo-epochs 6 --ae-epochs 30 --no-seed-zoo
The last line of stdout is JSON: one entry per (zoo, variant) with the mean over seeds under the keys `ae eval`
gives, "intervals": the same keys, each {"mean", "lo", "hi"}, and for a change "paired": its per-seed
differences from the defaults (recon_r2, recon_acc_ratio, probe_test_acc), each {"mean", "lo", "hi"}.
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
from core.stats import as_json, format_interval, intervals_over, means, paired_verdict  # noqa: E402
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


OTHER_SEED = 1000  # "other-seed": the defaults under seed s + this (its split and initialisation) on zoo s


def _variants(ae_epochs: int) -> dict[str, tuple[AEConfig, TrainConfig]]:
    """Every autoencoder the bench can train on a zoo: the defaults, and one change at a time."""
    ae, train = AEConfig(), replace(TrainConfig(), epochs=ae_epochs)
    return {
        "default": (ae, train),
        "no-align": (ae, replace(train, align=False)),
        "no-layer-norm": (ae, replace(train, layer_norm=False)),
        "latent-half": (replace(ae, latent_dim=ae.latent_dim // 2), train),
        "latent-double": (replace(ae, latent_dim=ae.latent_dim * 2), train),
        "epochs-half": (ae, replace(train, epochs=max(1, ae_epochs // 2))),
        "epochs-double": (ae, replace(train, epochs=2 * ae_epochs)),
        "other-seed": (ae, train),  # seeded apart in `main`
    }


def _jobs(args) -> list[tuple]:
    """(zoo label, folder stem, zoo config, variant, autoencoder config, training config) of every autoencoder
    to train per seed."""
    base_zoo = ZooConfig(dataset=args.dataset, arch=args.arch, init_seeds=args.init_seeds, epochs=args.zoo_epochs)
    variants = {v: c for v, c in _variants(args.ae_epochs).items() if v in args.variants}
    jobs = []
    for size in [int(s) for s in args.sizes.split(",")]:
        zoo_config = replace(base_zoo, models=size)
        stem = f"zoo-{_slug(args.dataset)}-{args.arch}-{size}-k{args.init_seeds}"  # a --workdir reuses it
        label = f"{size} models, {args.init_seeds} inits"
        jobs += [(label, stem, zoo_config, v, *c) for v, c in variants.items()]
    if not args.no_seed_zoo:
        seed_zoo = replace(base_zoo, models=256, init_seeds=0)
        own = [v for v in ("default", "no-align") if v in variants]
        jobs += [
            ("256 models, own inits", f"zoo-{_slug(args.dataset)}-{args.arch}-256-own", seed_zoo, v, *variants[v])
            for v in own
        ]
    return jobs


def _variant_list(text: str) -> list[str]:
    names, known = text.split(","), _variants(1)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", help="any dataset the engine reads (digits, shapes, a folder)")
    parser.add_argument("--arch", default=ZooConfig().arch, help="the zoo's architecture (MNIST as the papers: cnn-s)")
    parser.add_argument("--seeds", type=seed_list, default=seed_list("3"), help="a count N (0..N-1) or a list")
    parser.add_argument("--sizes", default="128,256", help="zoo sizes (models)")
    parser.add_argument("--init-seeds", type=int, default=ZooConfig().init_seeds)
    parser.add_argument("--zoo-epochs", type=int, default=ZooConfig().epochs)
    parser.add_argument("--ae-epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument(
        "--variants",
        type=_variant_list,
        default=_variant_list("default,no-align,no-layer-norm"),
        help=f"which autoencoders to train, of: {', '.join(_variants(1))}",
    )
    parser.add_argument("--workdir", default=None, help="keep zoos and runs here (default: a temporary folder)")
    parser.add_argument("--no-seed-zoo", action="store_true", help="skip the fully seed-varied zoo")
    args = parser.parse_args()
    tune_cpu_allocator()  # as the CLI and the app do
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ae-quality-"))
    per_seed: dict[tuple, list] = {}
    for seed in args.seeds:
        for label, stem, zoo_config, variant, ae_config, config in _jobs(args):
            workspace = _zoo(workdir, f"{stem}-s{seed}", replace(zoo_config, seed=seed))
            ae_seed = seed + OTHER_SEED if variant == "other-seed" else seed
            run = train_and_map(workspace, ae_config, replace(config, seed=ae_seed), run=variant)
            figures = evaluate_run(workspace, run.name)
            per_seed.setdefault((label, variant), []).append(
                {**{k: figures[k] for k in _KEYS}, "probe_r2": figures["probe_r2"]}
            )
            print(f"seed {seed}: {label}, {variant}: R2 {figures['recon_r2']:.3f}", flush=True)

    results = []
    for (label, variant), records in per_seed.items():
        intervals, paired = intervals_over(records), _paired(records, per_seed.get((label, "default")), variant)
        results.append({"zoo": label, "variant": variant, **means(intervals), "intervals": intervals, "paired": paired})
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
    print(
        json.dumps([{**r, **as_json({k: r[k] for k in ("intervals", "paired")}), "seeds": args.seeds} for r in results])
    )


_KEYS = ("recon_r2", "recon_acc_ratio", "recon_keep90_fraction", "train_seconds", "epochs_trained")
PAIRED = ("recon_r2", "recon_acc_ratio", "probe_test_acc")


def _paired(records: list[dict], defaults: list[dict] | None, variant: str) -> dict:
    """The intervals over seeds of per-seed differences on the same zoo and held-out models: a change's figures
    (PAIRED) minus the defaults', and the embedding's accuracy probe minus each weight baseline's
    ("embedding - weights", "embedding - stats")."""
    paired = intervals_over([_leads(r["probe_r2"]) for r in records])
    if defaults is not None and variant != "default":
        paired |= intervals_over([_differences(_figures(r), _figures(d)) for r, d in zip(records, defaults)])
    return paired


def _figures(record: dict) -> dict:
    """The PAIRED figures of one run."""
    return {"recon_r2": record["recon_r2"], "recon_acc_ratio": record["recon_acc_ratio"]} | {
        "probe_test_acc": record["probe_r2"]["embedding"].get("test_acc")
    }


def _minus(a: float | None, b: float | None) -> float | None:
    """a - b; None where either is missing (`intervals_over` leaves it out)."""
    return None if a is None or b is None else a - b


def _differences(a: dict, b: dict) -> dict:
    return {k: _minus(a[k], b[k]) for k in a}


def _leads(probe_r2: dict) -> dict:
    """The embedding's accuracy probe R^2 minus each weight baseline's."""
    embedding = probe_r2["embedding"].get("test_acc")
    return {f"embedding - {b}": _minus(embedding, probe_r2[b].get("test_acc")) for b in ("weights", "stats")}


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
    """Each figure of the full form, and paired by seed: each change against the defaults on the same zoo, and the
    embedding's accuracy probe against the weight baselines: higher, lower or no measurable difference."""
    lines = ["\nfigures (mean ± half the 95% interval [ends]) and comparisons over seeds:"]
    for r in results:
        iv, paired, mine = r["intervals"], r["paired"], f"{r['zoo']}, {r['variant']}"
        figures = [(k, iv[k]) for k in ("recon_r2", "recon_acc_ratio") if k in iv]
        figures.append(("probe R2 test_acc (embedding)", iv["probe_r2"]["embedding"].get("test_acc")))
        lines += [f"  {mine}: {name} {format_interval(v)}" for name, v in figures if v is not None]
        for figure in (k for k in PAIRED if k in paired):
            said = paired_verdict(paired[figure], r["variant"], "default")
            lines.append(f"    {figure}, {r['variant']} - default: {format_interval(paired[figure])}; {said}")
        for baseline in ("weights", "stats"):
            lead = paired.get(f"embedding - {baseline}")
            if lead is not None:
                said = paired_verdict(lead, "embedding", baseline)
                lines.append(f"    probe R2 test_acc, embedding - {baseline}: {format_interval(lead)}; {said}")
    return lines


if __name__ == "__main__":
    main()
