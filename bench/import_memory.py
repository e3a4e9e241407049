"""Peak RSS of `zoo import` on a public-layout ResNet-18 zoo at 1x and 2x the models: whether the import's memory
grows with the zoo (it should not: checkpoints go to shard files as they are read, core/zoo/model_zoo.py
ZooWriter).

The zoo is the test fixture's torchvision CIFAR ResNet-18 (tests/zoo/resnet_fixture.py) at its real width (about
11.2 M values, 45 MB a checkpoint), written once at the largest scale; the smaller scales take its first trial
folders (hard links, so nothing is copied). Each import runs as a child (`python -m core zoo import --memory MB`),
whose peak RSS is its own high-water mark (`wait4`'s ru_maxrss), read by a small trampoline process that forks
and execs it: Linux carries a process's high-water mark over `exec`, so a child spawned straight from this
process (which writes the zoo, and imports torch) would report at least this process's own peak. `import_floor`
is a process that only imports the engine: the part of the RSS no chunk size can lower.

Usage: python bench/import_memory.py [--models 4] [--epochs 3] [--scales 1,2] [--memory 2048] [--root DIR]
The defaults (12 and 24 checkpoints, 0.5 and 1.1 GB of weights) take about two minutes on our 2-core machine.
The last line of stdout is JSON: {"memory_mb", "checkpoint_mb", "import_floor_mb", "scales": {scale:
{"checkpoints", "zoo_mb", "peak_rss_mb", "seconds"}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peak_rss import measured  # noqa: E402
from tests.zoo.resnet_fixture import RESNET18, write_resnet_zoo  # noqa: E402

# ResNet-18 with the CIFAR stem on 3-channel 32x32 images, 10 classes: its stored values per checkpoint (the
# trained 11,173,962 and the BatchNorms' running statistics, 9,600).
RESNET18_VALUES = 11_183_562


def linked_subset(source: Path, target: Path, trials: list[str]) -> None:
    """`target` holding the trial folders `trials` of `source`, every file a hard link (no bytes copied)."""
    for trial in trials:
        for path in (source / trial).rglob("*"):
            if path.is_file():
                (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target / path.relative_to(source))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4, help="models at 1x")
    parser.add_argument("--epochs", type=int, default=3, help="checkpoints per model")
    parser.add_argument("--scales", default="1,2")
    parser.add_argument("--memory", type=int, default=2048, help="the import's --memory MB")
    parser.add_argument("--root", default=None, help="folder for the zoos (default: a temporary one, removed)")
    args = parser.parse_args()
    scales = sorted(int(s) for s in args.scales.split(","))
    root = Path(args.root or tempfile.mkdtemp(prefix="import-memory-"))
    try:
        full = root / "zoo"
        if not full.exists():
            write_resnet_zoo(full, models=args.models * scales[-1], epochs=tuple(range(args.epochs)),
                             in_channels=3, **RESNET18)  # fmt: skip
        trials = sorted(p.name for p in full.iterdir())
        results = {}
        for scale in scales:
            source = root / f"zoo-{scale}x"
            if not source.exists():
                linked_subset(full, source, trials[: args.models * scale])
            workspace = root / f"ws-{scale}x"
            shutil.rmtree(workspace, ignore_errors=True)
            argv = ["zoo", "import", "--from", str(source), "--workspace", str(workspace)]
            rss, seconds, info = measured(["-m", "core", *argv, "--memory", str(args.memory), "--json", "--quiet"])
            results[scale] = {
                "checkpoints": info["checkpoints"],
                "zoo_mb": round(info["checkpoints"] * info["n_params"] * 4 / 2**20, 1),
                "peak_rss_mb": round(rss, 1),
                "seconds": round(seconds, 1),
            }
        floor = measured(["-c", "import core.pipeline, core.cli"])[0]
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'scale':>5} {'checkpoints':>11} {'zoo MB':>8} {'peak RSS MB':>11} {'seconds':>8}")
    for scale, row in results.items():
        print(f"{scale:>4}x {row['checkpoints']:>11} {row['zoo_mb']:>8} {row['peak_rss_mb']:>11} {row['seconds']:>8}")
    print(f"import floor (engine imports only): {floor:.0f} MB; budget --memory {args.memory} MB")
    checkpoint_mb = round(RESNET18_VALUES * 4 / 2**20, 1)
    summary = {"memory_mb": args.memory, "checkpoint_mb": checkpoint_mb, "import_floor_mb": round(floor, 1)}
    print(json.dumps({**summary, "scales": results}))


if __name__ == "__main__":
    main()
