"""What a generation is asked to do: one frozen config, the single source of its defaults (the CLI derives its
options from it, the Generate page reads its defaults)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import UserError
from core.gen.samplers import METHODS
from core.gen.samplers.gauss import COVARIANCES
from core.gen.samplers.kde import BANDWIDTHS
from core.gen.selection import SELECTIONS, Selection
from core.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_SAMPLES, MAX_SEED
from core.settings import setting


@dataclass(frozen=True)
class SampleConfig:
    method: str = setting("kde", "sampler", choices=METHODS)
    anchors: str = setting("top:0.3", "top:F (best fraction by validation accuracy), epoch:E or ids:a,b,c")
    n: int = setting(16, "number of models to generate")
    finetune_epochs: int = setting(3, "fine-tuning epochs after generation (0: evaluate only)")
    dataset: str | None = setting(None, "fine-tune on another dataset (a transfer task), e.g. shapes")
    seed: int = setting(0, "seed of every random choice of the generation")
    # Cross-validated: in 64 dimensions Scott's rule gives kernels as wide as the anchors' spread, and such
    # samples decoded to 19% accuracy against 77% with cross-validation (digits, 8-init zoo).
    bandwidth: str = setting("cv", "kde bandwidth: cv, scott, silverman, or a number")
    covariance: str = setting("full", "gauss covariance", choices=COVARIANCES)
    baselines: bool = setting(True, "also make the simple weight-space baselines (noise, average, per-weight Gaussian)")
    lr: float | None = setting(
        None, "fine-tuning learning rate (default: the zoo's)", flag="--finetune-lr", parse=float
    )
    batch_size: int | None = setting(
        None, "fine-tuning batch size (default: the zoo's)", flag="--finetune-batch-size", parse=int
    )
    # SANE's selection of sampled models on validation data (core/gen/selection.py): none, subsample, bootstrap.
    selection: str = setting(
        "none",
        "subsample: draw n x candidates, keep the best n on validation data; bootstrap: repeat, refitting the "
        "sampler on the kept ones (SANE, 2024)",
        choices=SELECTIONS,
    )
    candidates: int = setting(4, "draws per kept model (subsample, bootstrap)")
    rounds: int = setting(3, "bootstrap rounds")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown sampler {self.method!r}; choose one of {', '.join(METHODS)}")
        if not (1 <= self.n <= MAX_SAMPLES and 0 <= self.finetune_epochs <= MAX_EPOCHS):
            raise UserError(f"need 1 to {MAX_SAMPLES} samples and fine-tune epochs in 0..{MAX_EPOCHS}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"the seed must lie in 0..{MAX_SEED}, got {self.seed}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"the fine-tuning learning rate must be finite and positive, got {self.lr}")
        if self.batch_size is not None and not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise UserError(f"the fine-tuning batch size must lie in 1..{MAX_BATCH_SIZE}, got {self.batch_size}")
        if self.covariance not in COVARIANCES:
            raise UserError(f"unknown covariance {self.covariance!r}; choose one of {', '.join(COVARIANCES)}")
        Selection(self.selection, self.candidates, self.rounds)  # validates the selection settings
        if self.n * self.candidates > MAX_SAMPLES or self.rounds > MAX_EPOCHS:
            raise UserError(f"n x candidates must stay within {MAX_SAMPLES} draws, and rounds within {MAX_EPOCHS}")
        _check_bandwidth(self.bandwidth)

    @property
    def selector(self) -> Selection:
        return Selection(self.selection, self.candidates, self.rounds)


def _check_bandwidth(bandwidth: str) -> None:
    if bandwidth in BANDWIDTHS:
        return
    try:
        width = float(bandwidth)
    except ValueError:
        width = float("nan")
    if not (math.isfinite(width) and width > 0):
        raise UserError(f"kde bandwidth {bandwidth!r}: use {', '.join(BANDWIDTHS)} or a positive number")
