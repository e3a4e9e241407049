"""`ae train --nproc N`: the same command again in N processes on this machine, through torchrun's launcher.

torchrun (torch.distributed.run) is the launcher the field uses for DDP; on several machines it is run directly
(README, "Beyond one machine"). Here its launcher is called as a function rather than through its command line,
whose parser would read our options as abbreviations of its own (--run as --run-path). Each process then trains
its share of every batch (core/rep/distributed.py) and rank 0 alone writes, draws the bar and prints the result;
the others are silent, even about an error rank 0 reports itself.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from core.errors import UserError

MAX_PROCESSES = 256


def without_nproc(argv: list[str]) -> list[str]:
    """The command line each process runs: the caller's, less --nproc and its value."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def launch(nproc: int, argv: list[str]) -> int:
    """Run `python -m core ARGV` in `nproc` processes as `torchrun --standalone --nproc-per-node N` would (one
    node, a rendezvous of its own on a free port, no restarts); returns the exit code, rank 0's where one failed
    (2 for bad input)."""
    if not 1 <= nproc <= MAX_PROCESSES:
        raise UserError(f"--nproc must lie in 1..{MAX_PROCESSES}, got {nproc}")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)  # its INFO lines are not ours to show
    # As torchrun does for several processes, but sharing the cores out rather than one thread each.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        elastic_launch(config, sys.executable)("-m", "core", *without_nproc(argv))
    except ChildFailedError as exc:
        return min(failure.exitcode for failure in exc.failures.values() if failure.exitcode > 0) or 1
    return 0
