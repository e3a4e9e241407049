"""Long work split into shards that run as Ray tasks: zoo generation (core/zoo/generate.py) and the fine-tuning of
many generated models (core/gen/finetune.py) both hand `run_shards` a generator function that trains one shard and
yields its progress, then its result.

Why Ray: the public model zoos were trained as Ray Tune trials, a Ray cluster spans one machine or many with the
same calls (`ray start --head` / `ray start --address ...`), and it reruns a task whose worker died. We schedule
nothing ourselves: each shard is one task that asks for a GPU where the cluster has them, else an equal share of
its CPUs, and Ray places it. Every shard streams its items back (`num_returns="streaming"`), so the driver passes
progress on while shards train and receives each finished shard as soon as it is done; a shard whose worker is lost
(after Ray's retries) costs that shard only, and the caller keeps the others.

Ray is optional (requirements-cluster.txt): nothing imports it until a cluster is asked for, so the engine, the app
and the tests run without it.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.errors import Interrupted, UserError
from core.runtime import DEVICES, tune_cpu_allocator
from core.settings import setting

ADDRESSES = "local (start one on this machine), auto (the cluster `ray start` runs here) or ray://HOST:PORT"
_CLIENT_ADDRESS = re.compile(r"ray://[A-Za-z0-9.\-\[\]:]+:\d{1,5}")
MAX_SHARDS = 4096
# Workers import the driver's own `core` (shipped to the cluster when this process connects), so a cluster runs the
# code that asked. A process that connected to Ray itself gives its workers `core` its own way.
_CORE = str(Path(__file__).resolve().parent)
# Workers sleep while waiting for work, as the CLI's own process does (core/runtime.py `sleep_while_waiting`).
_RUNTIME_ENV = {"py_modules": [_CORE], "excludes": ["__pycache__"], "env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}


@dataclass(frozen=True)
class ClusterConfig:
    """Where shards run. Not part of what a zoo or a sample is: the same settings give the same models on any
    cluster, with any number of shards."""

    cluster: str | None = setting(None, f"train in shards as Ray tasks: {ADDRESSES}")
    shards: int | None = setting(
        None, "disjoint shards of the models, one Ray task each (default: one per GPU, else per CPU)", parse=int
    )
    retries: int = setting(3, "times Ray reruns a shard whose worker died (then a rerun of the command finishes it)")
    # Where shards compute: "auto" (a GPU per shard where the cluster has GPUs), "cpu" or "cuda". The commands set
    # it from --device, which on a cluster is the cluster's to resolve, not the driver's.
    device: str = "auto"

    def __post_init__(self) -> None:
        address = self.cluster
        if address is not None and address not in ("local", "auto") and not _CLIENT_ADDRESS.fullmatch(address):
            raise UserError(f"--cluster {address!r}: expected {ADDRESSES}")
        if self.shards is not None and not 1 <= self.shards <= MAX_SHARDS:
            raise UserError(f"--shards must lie in 1..{MAX_SHARDS}, got {self.shards}")
        if self.shards is not None and address is None:
            raise UserError("--shards needs --cluster (local, auto or ray://HOST:PORT)")
        if self.device not in DEVICES:
            raise UserError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if not 0 <= self.retries <= 100:
            raise UserError(f"--retries must lie in 0..100, got {self.retries}")


@dataclass(frozen=True)
class Placement:
    """How many shards, on which device, and what each task asks Ray for."""

    shards: int
    device: str
    resources: dict[str, float]

    @property
    def threads(self) -> int:
        return max(1, int(self.resources.get("num_cpus", 1)))


def connect(address: str) -> dict[str, float]:
    """The cluster's resources ({"CPU": 2.0, "GPU": ...}), connecting first unless this process already is."""
    try:
        import ray  # lazy: ray is optional (requirements-cluster.txt); the engine runs without it
    except ImportError:
        raise UserError(f"--cluster {address} needs Ray: pip install -r requirements-cluster.txt") from None
    if not ray.is_initialized():
        # Ray logs each step of connecting at INFO on stderr; a command prints only its bar, its result or one error.
        logging.getLogger("ray").setLevel(logging.WARNING)
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address == "local":
            quiet["include_dashboard"] = False
        try:
            with warnings.catch_warnings():  # a Ray Client warns before it raises; the error below says it once
                warnings.simplefilter("ignore")
                ray.init(address=None if address == "local" else address, runtime_env=_RUNTIME_ENV, **quiet)
        except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError, ... depending on the address kind
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--cluster {address}: cannot connect to a Ray cluster ({first})") from None
    return ray.cluster_resources()


def placement(config: ClusterConfig, resources: dict[str, float], items: int) -> Placement:
    """One GPU per shard where the cluster has GPUs (unless --device cpu), else an equal share of its CPUs; by
    default as many shards as GPUs (or CPUs), never more than `items` (models)."""
    device, gpus, cpus = config.device, int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if device == "cuda" and not gpus:
        raise UserError("--device cuda: the Ray cluster has no GPU")
    on_gpu = gpus > 0 and device != "cpu"
    shards = min(config.shards or (gpus if on_gpu else cpus), items)
    if config.shards and config.shards > items:
        raise UserError(f"--shards {config.shards}: more shards than the {items} models to share out")
    if on_gpu:
        return Placement(shards, "cuda", {"num_gpus": 1, "num_cpus": 1})
    return Placement(shards, "cpu", {"num_cpus": max(1, cpus // shards)})


def shard_rows(count: int, shards: int, shard: int) -> list[int]:
    """The items of one shard: every `shards`-th, so each shard draws evenly from every architecture and setting."""
    return list(range(shard, count, shards))


def _in_worker(function: Callable[..., Iterator], threads: int, *args) -> Iterator:
    """What a Ray task runs: the shard's generator, with torch's thread pool sized to the CPUs Ray granted (a
    worker would otherwise spin one thread per core of the machine against its neighbours)."""
    torch.set_num_threads(threads)
    tune_cpu_allocator()
    yield from function(*args)


def run_shards(
    function: Callable[..., Iterator],
    shared: tuple,
    shards: dict[int, tuple],
    where: Placement,
    on_item: Callable[[int, Any], None],
    retries: int,
    should_stop: Callable[[], bool] | None = None,
) -> dict[int, str]:
    """Run `function(*shared, *shards[k])` for every shard k as a Ray task and call `on_item(k, item)` for each item
    it yields, as it arrives. `shared` arguments go into Ray's object store once, not once per task. Returns the
    shards whose worker was lost (after `retries` reruns by Ray), with the reason; an error raised by the function
    itself is raised here. `should_stop` cancels what is still running and raises Interrupted."""
    import ray  # lazy: see connect, which the caller has run

    shared_refs = [ray.put(value) for value in shared]
    task = ray.remote(_in_worker).options(num_returns="streaming", max_retries=retries, **where.resources)
    streams = {task.remote(function, where.threads, *shared_refs, *args): k for k, args in shards.items()}
    pending, lost = list(streams), {}
    try:
        while pending:
            if should_stop and should_stop():
                raise Interrupted("stopped; the finished shards are kept: run the same command again to finish")
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for stream in ready:
                shard = streams[stream]
                try:
                    item = ray.get(next(stream))
                except StopIteration:
                    continue
                except ray.exceptions.RayTaskError as exc:  # the function raised: a user error or a bug, not a loss
                    if isinstance(exc.cause, UserError):
                        raise exc.cause from None
                    raise
                except ray.exceptions.RayError as exc:  # the worker, its node or the object was lost
                    lost[shard] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    continue
                on_item(shard, item)
                pending.append(stream)
    finally:
        for stream in pending:
            ray.cancel(stream, force=True)
    return lost


def lost_message(lost: dict[int, str], shards: int, what: str) -> str:
    """One line naming the lost shards and what a rerun does."""
    reasons = "; ".join(f"shard {k}: {reason}" for k, reason in sorted(lost.items()))
    return f"{len(lost)} of {shards} shards lost ({reasons}); {what}"
