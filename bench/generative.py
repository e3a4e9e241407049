"""The generative protocol of Schürholt et al. (2022) on the default digits zoo, and transfer to shapes.

Rows: sampled models (S_KDE, S_Gauss, S_Neigh, and S_KDE from an autoencoder trained without layer-wise loss
normalisation), random init, the anchors themselves, and the three simple weight-space baselines of Zeng et
al. (2025): anchor + noise, average of anchors, per-weight Gaussian. Columns: mean test accuracy after 0, 1, 3
and 5 epochs of fine-tuning, and the median largest error-IoU with any zoo checkpoint (copies score ~1).
Usage: python bench/generative.py [--workdir DIR] [--n 16] [--ae-epochs N]
The last line of stdout is JSON: {task: {row: {"acc": [...], "max_iou_median": x}}}.
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

from core.gen.config import SampleConfig  # noqa: E402
from core.pipeline import generate, train_and_map  # noqa: E402
from core.rep.autoencoder import AEConfig  # noqa: E402
from core.rep.loop import TrainConfig  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from core.zoo.generate import ZooConfig, generate_zoo  # noqa: E402

EPOCHS_SHOWN = (0, 1, 3, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="keep the zoo and runs here (default: a temporary folder)")
    parser.add_argument("--n", type=int, default=16, help="models per sampler")
    parser.add_argument("--ae-epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tune_cpu_allocator()  # as the CLI and the app do
    zoo = ZooConfig()
    # The same folder and run names as bench/ae_quality.py, so that one workdir serves both.
    workspace = Workspace(
        Path(args.workdir or tempfile.mkdtemp(prefix="generative-")) / f"zoo-{zoo.models}-k{zoo.init_seeds}"
    )
    if not workspace.exists():
        generate_zoo(workspace, zoo)
    train = replace(TrainConfig(), epochs=args.ae_epochs)
    default_run = train_and_map(workspace, AEConfig(), train, run="default").name
    plain_run = train_and_map(workspace, AEConfig(), replace(train, layer_norm=False), run="no-layer-norm").name

    table: dict[str, dict] = {}
    for task, dataset in (("digits", None), ("transfer to shapes", "shapes")):
        rows: dict[str, dict] = {}
        base = SampleConfig(n=args.n, finetune_epochs=max(EPOCHS_SHOWN), dataset=dataset, seed=args.seed)
        for label, method, run, baselines in (
            ("S_KDE", "kde", default_run, True),
            ("S_Gauss", "gauss", default_run, False),
            ("S_Neigh", "neighbour", default_run, False),
            ("S_KDE (no layer norm)", "kde", plain_run, False),
        ):
            result = generate(workspace, replace(base, method=method, baselines=baselines), run).to_json()
            rows[label] = _row(result["curves"]["generated"], result["novelty"]["max_iou_median"])
            if baselines:
                for group, figures in result["novelty_baselines"].items():
                    rows[group] = _row(result["curves"][group], figures["max_iou_median"])
                rows["random init"] = _row(result["curves"]["random_init"], None)
        table[task] = rows
        print(f"\n{task}: mean test accuracy by fine-tuning epoch, and median max error-IoU with the zoo")
        print(f"{'':<24}" + "".join(f"{'ep ' + str(e):>8}" for e in EPOCHS_SHOWN) + f"{'max IoU':>9}")
        for label, row in rows.items():
            iou = f"{row['max_iou_median']:>9.3f}" if row["max_iou_median"] is not None else f"{'-':>9}"
            print(f"{label:<24}" + "".join(f"{a:>8.3f}" for a in row["acc"]) + iou)
    print(json.dumps(table))


def _row(curve: list[float], iou: float | None) -> dict:
    return {"acc": [curve[e] for e in EPOCHS_SHOWN], "max_iou_median": iou}


if __name__ == "__main__":
    main()
