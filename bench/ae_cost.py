"""What the behavioural loss costs: seconds per autoencoder training epoch on the default zoo with the weight-space
loss alone (the 2022 method), the behavioural loss alone (today's default) and both, each kind of run trained a few
epochs at a time in turn in one process, so that a machine's changing load falls on all of them alike. Goal (issue
"good and new"): the default within 2x of the weight-space loss alone on 2 CPU cores.

Usage: python bench/ae_cost.py [--rounds 3] [--epochs 3] [--kind hyperrep|sane]. The last line of stdout is JSON.
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
from core.pipeline import unpack_workspace  # noqa: E402
from core.rep.loop import TrainConfig  # noqa: E402
from core.rep.methods import KINDS, method_named  # noqa: E402
from core.rep.train import train_autoencoder  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402

VARIANTS = {
    "structure": TrainConfig(structure_weight=1.0, behaviour_weight=0.0),
    "behaviour": TrainConfig(),
    "both": TrainConfig(structure_weight=1.0, behaviour_weight=1.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant per round")
    parser.add_argument("--kind", choices=KINDS, default=KINDS[0])
    args = parser.parse_args()
    tune_cpu_allocator()
    ae_config = method_named(args.kind).config_type()
    per_epoch = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        workspace = unpack_workspace(ASSET, Path(tmp) / "digits")
        for round_number in range(args.rounds):
            for name, config in VARIANTS.items():
                fresh = Workspace(workspace.root)
                run_config = TrainConfig(**{**config.__dict__, "epochs": args.epochs, "seed": round_number})
                run = train_autoencoder(fresh, ae_config, run_config, run=f"{name}-{round_number}")
                seconds = run.history["elapsed_s"].to_list()
                per_epoch[name] += [b - a for a, b in zip([0.0, *seconds], seconds)][1:]  # the first warms up
    medians = {name: statistics.median(values) for name, values in per_epoch.items()}
    base = medians["structure"]
    print(f"{'variant':<12}{'s / epoch':>10}{'vs structure':>14}   ({args.kind}, median of {args.rounds} rounds)")
    for name, value in medians.items():
        print(f"{name:<12}{value:>10.2f}{value / base:>13.2f}x")
    print(
        json.dumps(
            {"kind": args.kind, "seconds_per_epoch": medians, "ratio": {k: v / base for k, v in medians.items()}}
        )
    )


if __name__ == "__main__":
    main()
