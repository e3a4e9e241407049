"""Zoo training throughput: the vectorised population trainer against the plain one-model-at-a-time loop.

Both train the same digits models (same inits, same data order, Adam). The plain loop is the papers' recipe
(one nn.Module, torch.optim.Adam, batch after batch) over tensors already in memory, which is faster than
their DataLoader, so the ratio is conservative. The plain loop's throughput does not depend on how many
models follow one another, so it is timed on a few models and reported per model-epoch.

Each measurement runs in a fresh process so that its peak RSS is its own.
Usage: python bench/zoo_throughput.py [--models 256] [--plain-models 8] [--epochs 3]
The last line of stdout is JSON; `speedup` is at batch size 32, `speedup_bs10` at batch size 10.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy


def _worker(kind: str, models: int, epochs: int, batch_size: int, device: str) -> dict:
    from core.runtime import tune_cpu_allocator
    from core.zoo.arch import cnn_small
    from core.zoo.data import load_dataset
    from core.zoo.population import Population, init_vector, init_vectors, train_single

    tune_cpu_allocator()  # as the CLI and the app do

    data = load_dataset("digits")
    spec = cnn_small()
    seeds = list(range(models))
    x, y = data.x_train, data.y_train
    # Median of repeated timings (per model for the plain loop, per epoch for the population): the
    # machines are shared, and one slow repeat should not decide the ratio.
    times = []
    if kind == "plain":
        # Warm-up (first-call costs of autograd and oneDNN), untimed, as for the vectorised run.
        train_single(spec, init_vector(spec, 10**6, "kaiming_uniform"), x[:256], y[:256], 0, 1, batch_size, 3e-3)
        for seed in seeds:
            start = time.perf_counter()
            train_single(spec, init_vector(spec, seed, "kaiming_uniform"), x, y, seed, epochs, batch_size, 3e-3)
            times.append((time.perf_counter() - start) / epochs)
        per_model_epoch = statistics.median(times)
    else:
        population = Population(
            spec,
            init_vectors(spec, seeds, ["kaiming_uniform"] * models),
            seeds,
            [3e-3] * models,
            [0.0] * models,
            [0.0] * models,
            device,
        )
        population.train_epoch(x, y, 1, batch_size)  # warm-up: allocator, oneDNN primitives, CUDA context
        for epoch in range(2, epochs + 2):
            _sync(device)
            start = time.perf_counter()
            population.train_epoch(x, y, epoch, batch_size)
            _sync(device)
            times.append(time.perf_counter() - start)
        per_model_epoch = statistics.median(times) / models
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model_epochs_per_s": 1 / per_model_epoch, "timings_s": times, "peak_rss_mb": peak_mb}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _measure(kind: str, models: int, epochs: int, batch_size: int, device: str = "cpu") -> dict:
    argv = [sys.executable, __file__, "--worker", kind, str(models), str(epochs), str(batch_size), device]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=256)
    parser.add_argument("--plain-models", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    import torch

    results = {
        "models": args.models,
        "dataset": "digits",
        "architecture": "cnn-small",
        "threads": torch.get_num_threads(),
    }
    rows = []
    for batch_size in (32, 10):
        plain = _measure("plain", args.plain_models, 1, batch_size)
        vectorised = _measure("vectorised", args.models, args.epochs, batch_size)
        speedup = vectorised["model_epochs_per_s"] / plain["model_epochs_per_s"]
        suffix = "" if batch_size == 32 else f"_bs{batch_size}"
        results[f"speedup{suffix}"] = round(speedup, 2)
        results[f"plain_model_epochs_per_s{suffix}"] = round(plain["model_epochs_per_s"], 2)
        results[f"vectorised_model_epochs_per_s{suffix}"] = round(vectorised["model_epochs_per_s"], 2)
        results[f"plain_peak_rss_mb{suffix}"] = round(plain["peak_rss_mb"], 1)
        results[f"vectorised_peak_rss_mb{suffix}"] = round(vectorised["peak_rss_mb"], 1)
        rows.append((batch_size, "cpu", plain, vectorised, speedup))
        if torch.cuda.is_available():
            gpu = _measure("vectorised", args.models, args.epochs, batch_size, "cuda")
            results[f"cuda_model_epochs_per_s{suffix}"] = round(gpu["model_epochs_per_s"], 2)
            results[f"cuda_speedup{suffix}"] = round(gpu["model_epochs_per_s"] / plain["model_epochs_per_s"], 2)
            rows.append((batch_size, "cuda", plain, gpu, gpu["model_epochs_per_s"] / plain["model_epochs_per_s"]))

    print(
        f"{'batch':>5} {'device':>6} {'plain m-ep/s':>13} {'vectorised m-ep/s':>18} {'speedup':>8} {'peak RSS MB':>12}"
    )
    for batch_size, device, plain, vectorised, speedup in rows:
        print(
            f"{batch_size:>5} {device:>6} {plain['model_epochs_per_s']:>13.2f} "
            f"{vectorised['model_epochs_per_s']:>18.2f} {speedup:>7.1f}x {vectorised['peak_rss_mb']:>12.0f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, models, epochs, batch_size, device = sys.argv[2:7]
        print(json.dumps(_worker(kind, int(models), int(epochs), int(batch_size), device)))
    else:
        main()
