"""The GPU backend's figures, on whatever device is there: zoo training, the autoencoder and the first map.

* Zoo: model-epochs per second of cnn-small on digits at batch 32, for 256, 4,096 and 16,384 models, with
  the plain nn.Module loop (one model after another: timed on a few models, per model-epoch), the grouped-
  convolution population (the CPU's formulation) and the unfold + bmm population (CUDA's), each in its own
  process, after one untimed warm-up epoch. Also the seconds per epoch spent drawing every model's data order
  (`epoch_orders`, on the device; included in the epoch's time).
* Autoencoder: the default `ae train` on the default workspace's 256-model zoo: training seconds, epochs and
  seconds per epoch, the batch size it used, and on CUDA the GPU's mean utilisation (nvidia-smi, every 0.5 s).
* Map: seconds for the first map in a fresh process once numba's cache is warm (importing umap included).

On CUDA the unfold path is also timed with TF32 matmuls ("unfold-tf32"), which the backend leaves off until it
pays and the tests allow it.

Usage: python bench/gpu.py [--device auto|cpu|cuda] [--quick] [--max-grouped-models N] [--paths unfold,...]
`--quick` fits a 2-core CPU in a few minutes: 256 and 1,024 models, one timed epoch, 5 autoencoder epochs.
`--max-grouped-models` skips the grouped path above N models (on an H100 it needs about a minute per epoch at
16,384). Each figure is printed as it is measured; the last line of stdout is JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IMPLS = ("plain", "grouped", "unfold")
CUDA_ONLY_IMPLS = ("unfold-tf32",)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _zoo_worker(impl: str, models: int, epochs: int, device: str) -> dict:
    """One formulation's throughput in this process (the CLI's allocator setting, warm-up epoch untimed)."""
    from dataclasses import replace

    import torch

    from core.runtime import tune_cpu_allocator
    from core.zoo.arch import cnn_small
    from core.zoo.backend import backend_for
    from core.zoo.data import load_dataset
    from core.zoo.population import Population, epoch_orders, init_vector, init_vectors, train_single

    tune_cpu_allocator()
    data, spec, seeds = load_dataset("digits"), cnn_small(), list(range(models))
    x, y = data.x_train, data.y_train
    times, chunks = [], 1
    if impl == "plain":
        train_single(spec, init_vector(spec, 10**6, "kaiming_uniform"), x[:256], y[:256], 0, 1, 32, 3e-3, 0.0, device)
        for seed in seeds:
            _sync(device)
            start = time.perf_counter()
            train_single(spec, init_vector(spec, seed, "kaiming_uniform"), x, y, seed, epochs, 32, 3e-3, 0.0, device)
            _sync(device)
            times.append((time.perf_counter() - start) / epochs)
        per_model_epoch = statistics.median(times)
    else:
        params = init_vectors(spec, seeds, ["kaiming_uniform"] * models)
        torch.backends.cuda.matmul.allow_tf32 = impl.endswith("-tf32")
        backend = replace(backend_for(device), conv=impl.removesuffix("-tf32"))
        population = Population(spec, params, seeds, [3e-3] * models, [0.0] * models, [0.0] * models, device, backend)
        chunks = len(population.model_chunks(32))
        population.train_epoch(x, y, 1, 32)
        for epoch in range(2, epochs + 2):
            _sync(device)
            start = time.perf_counter()
            population.train_epoch(x, y, epoch, 32)
            _sync(device)
            times.append(time.perf_counter() - start)
        per_model_epoch = statistics.median(times) / models
    _sync(device)
    start = time.perf_counter()
    epoch_orders(torch.tensor(seeds, device=device), 1, len(x))
    _sync(device)
    order_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    return {"model_epochs_per_s": 1 / per_model_epoch, "peak_mb": peak_mb, "chunks": chunks, "order_s": order_s}


def _map_worker(embeddings: str) -> dict:
    """The first map of this process, from stored embeddings; umap's import and numba's cache loads included."""
    import polars as pl

    from core.rep.embed import embedding_matrix, project_2d

    matrix = embedding_matrix(pl.read_parquet(embeddings))
    start = time.perf_counter()
    project_2d(matrix, 0)
    return {"first_map_s": time.perf_counter() - start, "points": len(matrix)}


def _progress(impl: str, models: int, measured: dict) -> None:
    print(f"measured {impl} at {models} models: {json.dumps(measured)}", file=sys.stderr, flush=True)


def _in_process(*argv) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *map(str, argv)], check=True, capture_output=True)
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def _gpu_utilisation(process: subprocess.Popen) -> list[float]:
    """nvidia-smi's utilisation (%) every 0.5 s until `process` ends; empty without nvidia-smi."""
    samples: list[float] = []
    query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
    while shutil.which("nvidia-smi") and process.poll() is None:
        reading = subprocess.run(query, capture_output=True, text=True).stdout.split()
        samples += [float(reading[0])] if reading else []
        time.sleep(0.5)
    return samples


def _autoencoder(device: str, epochs: int | None, folder: Path) -> dict:
    """The default `ae train` on the default workspace's zoo (a fresh run), then the first map in a fresh process."""
    workspace = folder / "ws"
    subprocess.run(
        [sys.executable, "-m", "core", "workspace", "unpack", "--from", ROOT / "assets" / "digits-workspace.zip"]
        + ["--workspace", workspace, "--quiet"],
        check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    argv = [sys.executable, "-m", "core", "ae", "train", "--workspace", workspace, "--run", "bench"]
    argv += ["--device", device, "--quiet", "--json"] + (["--epochs", str(epochs)] if epochs else [])
    samples: list[float] = []
    with subprocess.Popen(list(map(str, argv)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        watcher = threading.Thread(target=lambda: samples.extend(_gpu_utilisation(process)))
        watcher.start()
        out, err = process.communicate()
        watcher.join()
    if process.returncode:
        raise RuntimeError(f"ae train failed: {err.decode()[-2000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    config = json.loads((workspace / "ae" / "bench" / "config.json").read_text())
    first_map = _in_process("map", workspace / "ae" / "bench" / "embeddings.parquet")
    return {
        "ae_train_s": round(result["train_seconds"], 2),
        "ae_epochs": result["epochs_trained"],
        "ae_s_per_epoch": round(result["train_seconds"] / result["epochs_trained"], 3),
        "ae_batch_size": config["train"]["batch_size"],
        "ae_lr": config["train"]["lr"],
        "gpu_utilisation_pct": round(statistics.mean(samples), 1) if samples else None,
        "first_map_s": round(first_map["first_map_s"], 2),
        "map_points": first_map["points"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="small sizes for a 2-core CPU (a few minutes)")
    parser.add_argument("--plain-models", type=int, default=4, help="models the plain loop is timed on")
    parser.add_argument("--max-grouped-models", type=int, default=None, help="skip the grouped path above this")
    parser.add_argument("--paths", default=None, help="comma-separated population paths to time (default: all)")
    args = parser.parse_args()

    from core.runtime import resolve_device

    device = resolve_device(args.device)
    sizes, epochs, ae_epochs = ((256, 1024), 1, 5) if args.quick else ((256, 4096, 16384), 3, None)
    results: dict = {"device": device, "quick": args.quick, "architecture": "cnn-small", "batch_size": 32}
    plain = _in_process("zoo", "plain", args.plain_models, 1, device)
    results["plain_model_epochs_per_s"] = round(plain["model_epochs_per_s"], 2)
    _progress("plain", args.plain_models, plain)
    impls = IMPLS[1:] + (CUDA_ONLY_IMPLS if device == "cuda" else ())
    impls = tuple(i for i in impls if args.paths is None or i in args.paths.split(","))
    rows = []
    for models in sizes:
        for impl in impls:
            if impl == "grouped" and args.max_grouped_models and models > args.max_grouped_models:
                continue
            measured = _in_process("zoo", impl, models, epochs, device)
            _progress(impl, models, measured)
            rows.append((models, impl, measured))
            results[f"{impl}_{models}_model_epochs_per_s"] = round(measured["model_epochs_per_s"], 1)
            results[f"{impl}_{models}_peak_mb"] = round(measured["peak_mb"])
            results[f"{impl}_{models}_chunks"] = measured["chunks"]
        results[f"data_order_{models}_s_per_epoch"] = round(measured["order_s"], 3)
    largest, fastest = sizes[-1], max(m["model_epochs_per_s"] for n, _, m in rows if n == sizes[-1])
    results[f"zoo_{largest}_models_15_epochs_train_s_from_throughput"] = round(largest * 15 / fastest, 1)
    with tempfile.TemporaryDirectory() as folder:
        results.update(_autoencoder(device, ae_epochs, Path(folder)))
    print(f"measured ae train and first map: {json.dumps(results)}", file=sys.stderr, flush=True)

    print(f"device {device}; plain nn.Module loop: {plain['model_epochs_per_s']:.1f} model-epochs/s")
    print(f"{'models':>7} {'path':>12} {'model-ep/s':>11} {'x plain':>8} {'chunks':>7} {'peak MB':>8}")
    for models, impl, measured in rows:
        speedup = measured["model_epochs_per_s"] / plain["model_epochs_per_s"]
        print(
            f"{models:>7} {impl:>12} {measured['model_epochs_per_s']:>11.1f} {speedup:>7.1f}x "
            f"{measured['chunks']:>7} {measured['peak_mb']:>8.0f}"
        )
    utilisation = results["gpu_utilisation_pct"]
    print(
        f"ae train: {results['ae_train_s']} s for {results['ae_epochs']} epochs ({results['ae_s_per_epoch']} s/epoch, "
        f"batch {results['ae_batch_size']}, GPU utilisation {'n/a' if utilisation is None else f'{utilisation}%'}); "
        f"first map in a fresh process: {results['first_map_s']} s ({results['map_points']} points)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "zoo":
            print(json.dumps(_zoo_worker(rest[0], int(rest[1]), int(rest[2]), rest[3])))
        else:
            print(json.dumps(_map_worker(rest[0])))
    else:
        main()
