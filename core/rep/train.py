"""Training an autoencoder run: choose the kind, split and prepare the zoo, store the run's record and
statistics, and run the shared loop (core/rep/loop.py) to a trained model.

A run's status goes "training" -> "trained" (model written) -> "done" (map written; core/pipeline.py). Training
again with the same settings resumes a stopped run and returns a trained one as it is; other settings under the
same name are refused.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, replace

import torch

from core.errors import UserError
from core.limits import MAX_TRAIN_STATE_BYTES
from core.rep.distributed import barrier, place, stop
from core.rep.learning_check import check_epoch, learning_warning
from core.rep.loop import TrainConfig, fit
from core.rep.methods import method_for, with_kind_defaults
from core.rep.prepare import Split, prepare, split_models
from core.rep.run import AERun, load_run, run_name, stats_tensors, with_later_settings
from core.store.files import read_torch, write_tensors
from core.store.runs import AERunFiles
from core.store.workspace import Workspace, zoo_stamp
from core.zoo.model_zoo import Progress, combined_table, load_zoos

TRAINED = ("trained", "done")
# On CUDA the default step is launch-bound, not arithmetic-bound: an H100 trained the default run in 41.6 s, about
# 50 ms for each of its 840 steps of 64 models. Four times the batch takes a quarter of the steps, each expected to
# take about as long (not measured: no GPU was lent); Adam's square-root rule (lr x sqrt(4)) keeps the size of an
# update. On the CPU, where it could be measured, the default zoo's run at batch 256 and lr 2e-3 kept its quality:
# held-out reconstruction R^2 0.985 (0.985 at the defaults), accuracy kept 0.984 (0.981), share keeping 90% of
# accuracy 0.961 (0.954), embedding probe R^2 for test accuracy 0.987 (0.986).
GPU_BATCH_FACTOR = 4


def settings_for_device(train_config: TrainConfig, device: str) -> TrainConfig:
    """The training settings a run uses on `device`. On CUDA, a default batch size and learning rate become
    GPU_BATCH_FACTOR times the batch and sqrt(GPU_BATCH_FACTOR) times the rate (the run records what it used);
    on the CPU, and wherever either was changed from its default, the settings stay as given."""
    default = TrainConfig()
    chosen = (train_config.batch_size, train_config.lr) != (default.batch_size, default.lr)
    if torch.device(device).type != "cuda" or chosen:
        return train_config
    batch_size, lr = default.batch_size * GPU_BATCH_FACTOR, default.lr * math.sqrt(GPU_BATCH_FACTOR)
    return replace(train_config, batch_size=batch_size, lr=lr)


def train_autoencoder(
    workspace: Workspace,
    ae_config,
    train_config: TrainConfig | None = None,
    run: str | None = None,
    device: str = "cpu",
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AERun | None:
    """The trained run of these settings: trained now, resumed, or loaded when it was trained before. Under torchrun
    every process trains (core/rep/distributed.py); rank 0 alone holds the lock, writes, and returns the run (the
    others None). All processes read the run's files before rank 0 writes any."""
    train_config = with_kind_defaults(ae_config, train_config or TrainConfig())
    method = method_for(ae_config)
    files = AERunFiles.of(workspace, run or run_name(ae_config, train_config))
    writer = place().writer
    with workspace.lock() if writer else contextlib.nullcontext():
        if files.exists():
            files.check_zoo(workspace.zoo_stamp())  # a run of a replaced zoo is neither resumed nor returned
        if files.exists() and files.status() in TRAINED:
            _resume_state(files, ae_config, train_config)  # refuses a finished run of other settings
            return load_run(workspace, files.name) if writer else None
        zoos = load_zoos(workspace)
        method.check_zoos(zoos)
        state = _resume_state(files, ae_config, train_config)
        if state is None:
            model_ids = combined_table(zoos)["model_id"].unique().sort().to_list()
            split = split_models(model_ids, train_config.split, train_config.seed)
        else:
            split = Split(**files.read_config()["split"])
        parts = [prepare(z, split, train_config.align, train_config.align_iterations) for z in zoos]
        generator = torch.Generator(device=device).manual_seed(train_config.seed)
        trainer = method.trainer(parts, ae_config, train_config, generator, device)
        record = {
            "kind": method.kind,
            "ae": ae_config.to_json(),
            "train": asdict(train_config),
            "split": asdict(split),
            **method.shape(parts, ae_config),
            "architectures": [z.spec.name for z in zoos],
            "aggregation": method.aggregations[0],
            **zoo_stamp(zoos[0].manifest),
            "status": "training",
        }
        barrier()  # every process has read what it needs
        if state is None and writer:  # write_tensors makes the run's folder (never through a link: core/store/files.py)
            write_tensors(files.stats, stats_tensors(parts))
            files.write_config(record)
        report = _checking(on_progress, train_config)
        last, history = fit(files, trainer, train_config, generator, state, device, report, should_stop)
        stop()  # the processes part here: rank 0 alone goes on to write, map and evaluate
        if not writer:
            return None
        warnings = [w for w in [learning_warning(history, train_config)] if w]
        files.write_config({**record, "status": "trained", "stopped_at_epoch": last, "warnings": warnings})
        files.state.unlink(missing_ok=True)  # a trained run is never resumed: its state is only disk used
        return load_run(workspace, files.name)


def _checking(on_progress: Progress | None, train_config: TrainConfig) -> Progress:
    """`on_progress` with the learning check's warning in the info of the epoch it is made at (info["warning"]),
    so that a long run says so while it trains (the record gets it at the end, also after a resume)."""
    seen: list[dict] = []

    def report(done: int, total: int, info: dict) -> None:
        seen.append({"epoch": done, **info})
        warning = learning_warning(seen, train_config) if done == check_epoch(train_config) else None
        if on_progress:
            on_progress(done, total, {**info, "warning": warning} if warning else info)

    return report


def _resume_state(files: AERunFiles, ae_config, train_config: TrainConfig) -> dict | None:
    if not files.exists():
        return None
    config = files.read_config()
    stored = with_later_settings(config.get("train", {}))
    if config.get("ae") != ae_config.to_json() or stored != json.loads(json.dumps(asdict(train_config))):
        raise UserError(f"{files.folder}: a run of that name exists with other settings; choose another --run")
    if not files.state.exists():
        return None
    return read_torch(files.state, MAX_TRAIN_STATE_BYTES)
