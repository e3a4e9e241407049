"""The training loop every autoencoder kind shares: AdamW with warm-up and cosine decay, gradient clipping, early
stopping on the validation reconstruction, and a resumable state every few seconds and whenever stopped (removed
once the run is trained: core/rep/train.py).

What differs between kinds (the model, its batches, its losses, its validation criterion) comes from a `Trainer`
(core/rep/methods/). Resuming restores model, optimiser, schedule and random-generator states, so on CPU an
interrupted and resumed run ends bit-identical to an uninterrupted one. Randomness comes from the run's own
generators; torch's global generator (which module initialisation uses) is seeded inside `torch.random.fork_rng`,
so the caller's random state is left as it was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import torch
from torch import nn

from core.errors import Interrupted, UserError
from core.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LR, MAX_SEED
from core.rep.behaviour import DISTANCES, QUERIES
from core.rep.distributed import chunk, loss_step, mean_across, own_stream, place, share_generator
from core.settings import setting
from core.store.files import atomic_path, write_parquet, write_tensors
from core.store.runs import AERunFiles

# When the resumable state is written: whenever stopped, and otherwise once at least
# STATE_EVERY_S seconds and STATE_COST_FACTOR times the last write's duration have passed, so that writing costs at
# most about a tenth of the training however large the model. Written after every epoch, the default state (model,
# AdamW's moments, the best model: 30 MB) took 55 ms of each 0.18 s epoch on an H200; SANE's paper preset writes 14 GB.
STATE_EVERY_S = 5.0
STATE_COST_FACTOR = 10.0


# The contrastive weight (gamma) each objective trains with. Measured on five quick MNIST zoos (README, "Choices
# worth knowing"): gamma 0.5 probed test accuracy better on four (R^2 0.906 on average against 0.867 at 0.05, the
# weight statistics 0.896) and cost the decoder up to a quarter of the accuracy it kept on two; the best embedding
# for probes and the best decoder for generation are not one run, so the user says which the run is for. On ten
# cpu-scale MNIST zoos (256 models) gamma 0.5 probed 0.950 against 0.946 (no measurable difference, but its lead
# over W and s(W) is measurable where the default's is not) at no cost to the decoder.
OBJECTIVES = {"generate": 0.05, "probe": 0.5}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(60, "training epochs")
    batch_size: int = setting(64, "models per batch")
    lr: float = setting(1e-3, "AdamW learning rate")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    warmup_epochs: int = setting(5, "epochs of linear learning-rate warm-up before the cosine decay")
    lr_floor: float = setting(0.0, "where the cosine decay ends, as a fraction of the learning rate (0: at zero)")
    objective: str = setting(
        "generate",
        "what the run is for, which sets the contrastive weight where --gamma is left out: generate (a decoder that "
        "keeps the anchors' accuracy; gamma 0.05) or probe (an embedding that predicts the models' properties; 0.5)",
        choices=tuple(OBJECTIVES),
    )
    gamma: float | None = setting(
        None,
        "weight of the contrastive loss (0..1; default: the objective's); 1 - gamma weighs reconstruction",
        parse=float,
    )
    temperature: float = setting(0.1, "NT-Xent temperature")
    noise: float = setting(0.05, "additive noise augmentation, in units of each layer's std")
    # The 2021 paper's p = 0.5 (the per-neuron autoencoder; SANE has no erasing). Chosen on MNIST (bench/paper.py
    # quick, 10 seed-recipe zoos, paired against 0): generated models newer at the default spread (median max
    # error-IoU -0.019 [-0.035, -0.003]) at the same share of their source anchors' accuracy (-0.003 [-0.012,
    # 0.007]); probe and frontier margin no measurable difference. It had been off since an early 8-init digits
    # zoo, where it lowered the share of reconstructions keeping 90% of their accuracy from 0.97 to 0.92.
    erase_probability: float = setting(0.5, "probability of random erasing", flag="--erase")
    erase_area: tuple[float, float] = (0.02, 0.33)
    permute_probability: float = setting(0.0, "probability of a permutation augmentation", flag="--permute")
    # Start the AE's linear path at PCA of the training zoo (core/rep/autoencoder.py).
    pca_init: bool = setting(True, "start the per-neuron AE's linear path at PCA of the training zoo")
    layer_norm: bool = setting(True, "layer-wise normalised reconstruction loss (off: plain MSE)")
    align: bool = setting(True, "align the zoo (weight matching) before training")
    align_iterations: int = 2
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    # The behavioural loss (core/rep/behaviour.py): decoded and original models' outputs on query inputs. The two
    # weights below default to the autoencoder kind's own (core/rep/methods/, `loss_weights`), measured per kind.
    behaviour_weight: float | None = setting(
        None, "weight of the behavioural loss (0: off; default: the kind's, hyperrep 1, sane 1)", parse=float
    )
    behaviour_distance: str = setting("kl", "how outputs are compared", choices=DISTANCES)
    queries: str = setting("train", "query inputs of the behavioural loss", choices=QUERIES)
    query_batch: int = setting(64, "query inputs per training step of the behavioural loss")
    structure_weight: float | None = setting(
        None, "weight of the reconstruction loss in weight space (default: the kind's, hyperrep 0, sane 1)", parse=float
    )
    patience: int = setting(40, "stop after this many epochs without a better validation reconstruction")
    clip: float = 1.0
    seed: int = setting(0, "seed of the split, the initialisation and every random choice of training")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise UserError("autoencoder training needs epochs >= 1 and batch size >= 2")
        if self.epochs > MAX_EPOCHS or self.warmup_epochs > MAX_EPOCHS:
            raise UserError(
                f"autoencoder training: epochs and warm-up epochs at most {MAX_EPOCHS}, got {self.epochs} and "
                f"{self.warmup_epochs}"
            )
        if self.batch_size > MAX_BATCH_SIZE:
            raise UserError(f"autoencoder training: batch size at most {MAX_BATCH_SIZE}, got {self.batch_size}")
        if self.objective not in OBJECTIVES:
            raise UserError(f"objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)}")
        if self.gamma is not None and not 0 <= self.gamma <= 1:
            raise UserError(f"gamma must lie in [0, 1], got {self.gamma}")
        positive = {"lr": self.lr, "temperature": self.temperature, "clip": self.clip}
        bad = [f"{k} {v}" for k, v in positive.items() if not (math.isfinite(v) and v > 0)]
        bad += [f"lr {self.lr} (at most {MAX_LR:g})"] if self.lr > MAX_LR else []
        non_negative = {"weight decay": self.weight_decay, "noise": self.noise, "warm-up epochs": self.warmup_epochs}
        for name, weight in (("behaviour weight", self.behaviour_weight), ("structure weight", self.structure_weight)):
            if weight is not None:
                non_negative[name] = weight
        bad += [f"{k} {v}" for k, v in non_negative.items() if not (math.isfinite(v) and v >= 0)]
        if not 0 <= self.lr_floor <= 1:
            bad.append(f"learning-rate floor {self.lr_floor} (a fraction of the rate, in [0, 1])")
        for name, p in (("erase", self.erase_probability), ("permute", self.permute_probability)):
            if not 0 <= p <= 1:
                bad.append(f"{name} probability {p} (must lie in [0, 1])")
        if not 0 <= self.seed <= MAX_SEED or self.patience < 1:
            bad.append(f"seed {self.seed} and patience {self.patience} (seed in 0..{MAX_SEED}, patience >= 1)")
        if not 1 <= self.query_batch <= MAX_BATCH_SIZE:
            bad.append(f"query batch {self.query_batch} (must lie in 1..{MAX_BATCH_SIZE})")
        if self.structure_weight == 0 and self.behaviour_weight == 0:  # both given, both 0
            bad.append("no reconstruction signal (structure and behaviour weights are both 0)")
        if bad:
            raise UserError(f"autoencoder training: {', '.join(bad)}")


class Trainer(Protocol):
    """One autoencoder kind's part of the loop."""

    steps_per_epoch: int

    def build(self) -> nn.Module: ...

    def initialise(self, model: nn.Module) -> None: ...

    def batches(self) -> list[Any]: ...

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """The losses of one batch by name: "loss" (the total, which is minimised), "reconstruction",
        "contrastive" and any other part the kind logs ("behaviour")."""
        ...

    def validation(self, model: nn.Module) -> dict[str, float]:
        """Figures on the validation models: "val_reconstruction" and, with the behavioural loss, "val_behaviour"."""
        ...


def shuffled_batches(count: int, batch_size: int, generator: torch.Generator, device: str) -> list[torch.Tensor]:
    """A shuffled epoch of row indices in batches, leaving out a last batch of one (the contrastive loss needs a
    negative) or of fewer rows than processes. Under torchrun, this process's chunk of each (core/rep/
    distributed.py)."""
    order = torch.randperm(count, generator=generator, device=device)
    least = max(2, place().world)
    return [chunk(b) for b in (order[i : i + batch_size] for i in range(0, count, batch_size)) if len(b) >= least]


def schedule(warmup_steps: int, total_steps: int, floor: float = 0.0) -> Callable[[int], float]:
    """The learning rate's factor at each step: linear warm-up, then cosine decay to `floor` (a floor keeps the last
    steps of a short run learning, where a decay to zero spends them at almost no rate)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class _Fit:
    """The loop's mutable state: what `_save_state` writes and a resume reads back."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    history: list[dict]
    epoch: int = 0
    best: float = float("inf")
    best_epoch: int = 0
    best_weights: dict | None = None


def fit(
    files: AERunFiles,
    trainer: Trainer,
    config: TrainConfig,
    generator: torch.Generator,
    state: dict | None,
    device: str,
    on_progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[int, list[dict]]:
    """Train to the end (or early stop), write the best model and the history; returns the last epoch trained and
    the history (a row per epoch).
    Raises Interrupted after saving when `should_stop` says so. Under torchrun every process trains its share of
    each batch (core/rep/distributed.py) and rank 0 alone writes."""
    writer = place().writer
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device == "cuda" else []):
        torch.manual_seed(config.seed)
        run = _start(trainer, config, generator, state)
        step = loss_step(trainer, run.model)
        started = saved = time.monotonic()
        wait = STATE_EVERY_S
        for epoch in range(run.epoch + 1, config.epochs + 1):
            if epoch - run.best_epoch > config.patience:
                break
            row = _epoch(run, trainer, step, config, device, generator, epoch, started, files)
            if on_progress:
                on_progress(epoch, config.epochs, {k: v for k, v in row.items() if k != "epoch"})
            stopping = should_stop is not None and should_stop() and epoch < config.epochs
            if writer and (stopping or time.monotonic() - saved >= wait):
                writing = time.monotonic()
                _save_state(files.state, run, generator)
                saved = time.monotonic()
                wait = max(STATE_EVERY_S, STATE_COST_FACTOR * (saved - writing))
            if stopping:
                raise Interrupted(f"stopped after epoch {epoch}; run the same command again to resume")
    if writer:
        write_tensors(files.model, run.best_weights)
        write_parquet(files.history, pl.DataFrame(run.history))
    return run.epoch, run.history


def _start(trainer: Trainer, config: TrainConfig, generator: torch.Generator, state: dict | None) -> _Fit:
    model = trainer.build()
    # On CUDA, fused AdamW updates every parameter in one kernel: the default step is launch-bound there (GPU
    # utilisation 4-5% on an H200). torch.compile of the model was measured there too and does not pay: an epoch's
    # 4 steps took 68-69 ms against 74 ms eager, after 17-31 s of compilation (the whole default run trains in 6-8 s).
    fused = next(model.parameters()).is_cuda
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    steps = trainer.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, schedule(config.warmup_epochs * steps, config.epochs * steps, config.lr_floor)
    )
    run = _Fit(model, optimizer, scheduler, [])
    if state is None:
        trainer.initialise(model)
        return run
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    run.best_weights, run.history = state["best_model"], state["history"]
    run.epoch, run.best, run.best_epoch = state["epoch"], state["best"], state["best_epoch"]
    return run


def _epoch(run: _Fit, trainer: Trainer, step, config: TrainConfig, device: str, generator, epoch: int, started, files):
    """One epoch of training and validation; the history row it adds. Under torchrun the processes draw the same
    batches, then augment from streams of their own; the row holds the means over processes."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    run.model.train()
    sums: dict[str, torch.Tensor] = {}
    share_generator(generator)
    batches = trainer.batches()  # SANE's count varies a little from epoch to epoch (random window offsets)
    own_stream(generator, config.seed, epoch)
    for batch in batches:
        with autocast:
            parts = step(batch)
        run.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.clip)
        run.optimizer.step()
        run.scheduler.step()
        for name, value in parts.items():  # kept on the device: one host transfer per epoch, below
            sums[name] = sums.get(name, 0.0) + value.detach().float()
    figures = trainer.validation(run.model)
    val = config.structure_weight * figures["val_reconstruction"]
    val += config.behaviour_weight * figures.get("val_behaviour", 0.0)  # the model-selection criterion
    if not math.isfinite(val):
        raise UserError(f"{files.folder}: training diverged at epoch {epoch} (validation loss {val}); try a lower --lr")
    if val < run.best:
        run.best, run.best_epoch = val, epoch
        run.best_weights = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
    means = dict(zip(sums, (mean_across(torch.stack(list(sums.values()))) / max(1, len(batches))).tolist()))
    row = {
        "epoch": epoch,
        **means,
        **figures,
        "lr": run.scheduler.get_last_lr()[0],
        "elapsed_s": time.monotonic() - started,
    }
    run.history.append(row)
    run.epoch = epoch
    return row


def _save_state(path: Path, run: _Fit, generator: torch.Generator) -> None:
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "epoch": run.epoch,
        "best": run.best,
        "best_epoch": run.best_epoch,
        "best_model": run.best_weights,
        "history": run.history,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
