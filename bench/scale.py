"""Beyond one machine: what sharding a zoo over Ray and training the autoencoder over DDP processes cost here, and
what the public zoos' size (50,000 models) would take.

1. Zoo generation: one process (all cores), then the same zoo on a local Ray cluster started once beforehand (as
   `ray start --head` would be; its start and its workers' first start are timed apart) in 1, 2 and 4 shards.
   Overhead = time / one process's - 1 (the same arithmetic on the same cores: K shards share them); the single
   process and the shard runs alternate, `--repeats` times, and medians are compared, against the drift of a
   shared machine. Time to first finished shard: from the call to the first shard handed back.
2. `ae train --nproc 1` and `--nproc 2` (gloo) on that zoo: training samples (checkpoints x epochs) per second of
   the history's training time (validation included; the map and evaluation after it are not counted).
3. Extrapolation: models x epochs / (workers x model-epochs per second per worker), times (1 + the 2-shard
   overhead). Per GPU: bench/gpu.py's unfold path on an H200 (cnn-small on digits, batch 32); per CPU worker: the
   single process here. Digits has 1,294 training images; a zoo on MNIST-sized data (60,000) costs about 46x more
   per model-epoch, given as a second column.
Usage: python bench/scale.py [--models 256] [--epochs 5] [--ae-epochs 3] [--repeats 3]. The last line of stdout is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

import polars as pl  # noqa: E402
import ray  # noqa: E402

from core.cluster import ClusterConfig, connect  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from core.zoo.generate import ZooConfig, generate_zoo  # noqa: E402

# bench/gpu.py on an H200 today, unfold + bmm path, cnn-small on digits, batch 32: model-epochs per second.
GPU_RATE = {4096: 6641.0, 16384: 7177.0}
PUBLIC_ZOO_MODELS, PUBLIC_ZOO_EPOCHS = 50_000, 50
DIGITS_TRAIN, MNIST_TRAIN = 1294, 60_000  # training images (load_dataset("digits") splits 1,797)
WORKERS = (1, 8, 64)


def _zoo(root: Path, name: str, config: ZooConfig, cluster: ClusterConfig | None = None) -> dict:
    """Seconds to generate the zoo, and (on a cluster) seconds to the first finished shard."""
    first = []
    started = time.perf_counter()

    def progress(done, total, info):
        if info.get("shards_done") and not first:
            first.append(time.perf_counter() - started)

    generate_zoo(Workspace(root / name), config, "cpu", progress, cluster=cluster)
    return {"seconds": time.perf_counter() - started, "first_shard_s": first[0] if first else None}


def zoo_generation(root: Path, config: ZooConfig, shard_counts: list[int], repeats: int) -> dict:
    """One process and K shards, interleaved `repeats` times (medians), with the cluster up throughout."""
    cpus = os.cpu_count() or 1
    started = time.perf_counter()
    connect("local")  # as `--cluster local` starts it: workers get `core` and the CLI's thread settings
    cluster_start = time.perf_counter() - started
    # The cluster's first tasks start its workers (each imports torch and unpacks `core`): paid once per cluster,
    # timed here apart; the runs after it find the workers warm, as a long-lived cluster's would.
    warm_up = _zoo(root, "warm-up", ZooConfig(models=cpus, epochs=1), ClusterConfig("local", shards=cpus))["seconds"]
    singles, runs = [], {k: [] for k in shard_counts}
    for repeat in range(repeats):
        singles.append(_zoo(root, f"single-{repeat}", config)["seconds"])
        for k in shard_counts:
            runs[k].append(_zoo(root, f"shards-{k}-{repeat}", config, ClusterConfig("local", shards=k)))
    ray.shutdown()
    single = statistics.median(singles)
    shards = {}
    for k, rows in runs.items():
        seconds = statistics.median(row["seconds"] for row in rows)
        first = statistics.median(row["first_shard_s"] for row in rows)
        shards[k] = {"seconds": seconds, "first_shard_s": first, "overhead": seconds / single - 1}
    timings = {"single_s": singles, "cluster_start_s": cluster_start, "workers_start_s": warm_up}
    return {**timings, "shards": shards, "cpu_rate": config.models * config.epochs / single}


def ddp(workspace: Path, epochs: int, processes: tuple[int, ...] = (1, 2)) -> dict:
    """Samples per second of `ae train --nproc P` (gloo) on the zoo, from each run's history."""
    out = {}
    for nproc in processes:
        run = f"ddp{nproc}"
        command = [sys.executable, "-m", "core", "ae", "train", "--workspace", str(workspace), "--run", run]
        command += ["--nproc", str(nproc), "--epochs", str(epochs), "--device", "cpu", "--quiet", "--json"]
        subprocess.run(command, check=True, capture_output=True, text=True)
        history = pl.read_parquet(workspace / "ae" / run / "history.parquet")
        config = json.loads((workspace / "ae" / run / "config.json").read_text())
        checkpoints = pl.read_parquet(workspace / "zoo" / "models.parquet")
        train = checkpoints.filter(pl.col("model_id").is_in(config["split"]["train"])).height
        seconds = float(history["elapsed_s"][-1])
        out[nproc] = {"seconds": seconds, "samples_per_s": train * len(history) / seconds, "train_checkpoints": train}
    return out


def extrapolate(cpu_rate: float, overhead: float) -> dict:
    """Hours for the public zoos' size over 1, 8 and 64 workers, per GPU rate and per CPU worker."""
    work = PUBLIC_ZOO_MODELS * PUBLIC_ZOO_EPOCHS
    mnist = MNIST_TRAIN / DIGITS_TRAIN
    rates = {"h200_unfold": GPU_RATE[16384], "cpu_worker_like_this_machine": cpu_rate}
    return {
        name: {
            w: {
                "digits_h": work / (w * rate) * (1 + overhead) / 3600,
                "mnist_h": work * mnist / (w * rate) * (1 + overhead) / 3600,
            }
            for w in WORKERS
        }
        for name, rate in rates.items()
    }


def _print(zoo: dict, trained: dict, plans: dict, config: ZooConfig) -> None:
    print(f"zoo: {config.models} models, {config.epochs} epochs, {os.cpu_count()} CPUs")
    singles = ", ".join(f"{t:.1f}" for t in zoo["single_s"])
    print(f"  one process            {statistics.median(zoo['single_s']):7.1f} s (median of {singles})")
    print(f"  ray cluster start      {zoo['cluster_start_s']:7.1f} s (once, not in the overheads)")
    print(
        f"  its workers' start     {zoo['workers_start_s']:7.1f} s (a 1-epoch warm-up zoo; once, not in the overheads)"
    )
    for k, row in zoo["shards"].items():
        first = f"first shard {row['first_shard_s']:6.1f} s"
        print(f"  {k} shard(s)             {row['seconds']:7.1f} s  overhead {row['overhead']:+6.1%}  {first}")
    for nproc, row in trained.items():
        rate = f"{row['samples_per_s']:7.1f} samples/s ({row['train_checkpoints']} checkpoints)"
        print(f"ae train --nproc {nproc}     {rate}")
    print(f"{PUBLIC_ZOO_MODELS:,} models x {PUBLIC_ZOO_EPOCHS} epochs, hours (digits-sized data / MNIST-sized):")
    for name, by_workers in plans.items():
        cells = "  ".join(
            f"{w:>2} workers {row['digits_h']:8.2f} / {row['mnist_h']:8.2f}" for w, row in by_workers.items()
        )
        print(f"  {name:30s} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--ae-epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tune_cpu_allocator()
    config = ZooConfig(models=args.models, epochs=args.epochs)
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        zoo = zoo_generation(root, config, [int(k) for k in args.shards.split(",")], args.repeats)
        trained = ddp(root / "single-0", args.ae_epochs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    two = zoo["shards"].get(2, {}).get("overhead", 0.0)
    plans = extrapolate(zoo["cpu_rate"], max(two, 0.0))
    _print(zoo, trained, plans, config)
    assumptions = {
        "gpu_model_epochs_per_s": GPU_RATE,
        "models": PUBLIC_ZOO_MODELS,
        "epochs": PUBLIC_ZOO_EPOCHS,
        "one_shard_per_worker": True,
        "overhead_applied": max(two, 0.0),
        "mnist_over_digits_cost": MNIST_TRAIN / DIGITS_TRAIN,
    }
    result = {
        "zoo": zoo,
        "ddp": trained,
        "ddp_speedup_2_over_1": trained[2]["samples_per_s"] / trained[1]["samples_per_s"],
        "goal_ray_overhead_2_shards_le_15pct": two <= 0.15,
        "extrapolation_hours": plans,
        "assumptions": assumptions,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
