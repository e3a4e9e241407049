"""What a generation is asked to do: one frozen config, the single source of its defaults (the CLI derives its
options from it, the Generate page reads its defaults)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import UserError
from core.gen.path import generated_ref
from core.gen.samplers import METHODS
from core.gen.selection import SELECTIONS, Selection
from core.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_SAMPLES, MAX_SEED, MAX_SPREAD
from core.settings import setting
from core.zoo.tasks import parse_task

# The defaults are measured (bench/paper.py on three MNIST zoos, bench/frontier.py on digits): neighbour noise whose
# spread is chosen per zoo as the largest that keeps 99% of the anchors' validation accuracy before selection, and
# the best 16 of 64 draws on validation accuracy. On the MNIST quick zoos that kept 100.4% of the source anchors'
# accuracy as generated, at a median max error-IoU at or below anchor + noise (0.1)'s; the old fixed spread 1.5 kept
# 91% there (it had been tuned on one digits zoo).


@dataclass(frozen=True)
class SampleConfig:
    method: str = setting("neighbour", "sampler", choices=METHODS)
    anchors: str = setting("top:0.3", "top:F (best fraction by validation accuracy), epoch:E or ids:a,b,c")
    n: int = setting(16, "number of models to generate")
    finetune_epochs: int = setting(3, "fine-tuning epochs after generation (0: evaluate only)")
    dataset: str | None = setting(None, "fine-tune on another dataset (a transfer task), e.g. shapes")
    seed: int = setting(0, "seed of every random choice of the generation")
    spread: float | None = setting(
        None,
        "noise around the anchors, in units of their median nearest-neighbour distance (0: the anchors); default: "
        "chosen for the zoo by --spread-keep",
        parse=float,
    )
    # core/gen/calibrate.py: the spread chosen per zoo by what it does to the decoded models.
    spread_keep: float = setting(
        0.99,
        "without --spread, the spread is chosen for this zoo: the largest whose draws, kept as the selection keeps "
        "them, keep this share of their source anchors' validation accuracy; the trial and the choice are recorded "
        "in the run",
        parse=float,
    )
    # core/gen/fidelity.py: what the decoder loses on an anchor, every draw around it loses too.
    anchor_fidelity: float = setting(
        0.97,
        "leave out anchors whose own decodes keep less than this share of their validation accuracy (0: keep "
        "every anchor); not applied at spread 0 or on a latent path",
        parse=float,
    )
    baselines: bool = setting(True, "also make the simple weight-space baselines (noise, average, per-weight Gaussian)")
    lr: float | None = setting(
        None, "fine-tuning learning rate (default: the zoo's)", flag="--finetune-lr", parse=float
    )
    batch_size: int | None = setting(
        None, "fine-tuning batch size (default: the zoo's)", flag="--finetune-batch-size", parse=int
    )
    # Which of the draws to keep (core/gen/selection.py).
    selection: str = setting(
        "subsample",
        "guided: draw n x candidates, keep the n a probe of the embedding predicts most accurate (no data needed); "
        "subsample: keep the best n on validation data; bootstrap: repeat, refitting the sampler on the kept ones "
        "(SANE, 2024); diverse: keep n by greedy ensemble selection on validation NLL (Caruana et al. 2004; a model "
        "may be kept twice)",
        choices=SELECTIONS,
    )
    candidates: int = setting(4, "draws per kept model (guided, subsample, bootstrap, diverse)")
    rounds: int = setting(3, "bootstrap rounds")
    # Off by default: see core/gen/ensemble_groups.py for what it costs.
    ensemble: bool = setting(
        False,
        "also evaluate ensembles of the generated models beside anchors, anchor + noise and a deep ensemble "
        "(core/gen/ensemble.py)",
    )
    # A point of a latent path (core/gen/path.py): the draws centre on the code at t between two anchors.
    path_t: float | None = setting(
        None,
        "centre the draws on the point at t of the straight line between the two anchors' codes (anchors ids:a,b; "
        "0: a's code, 1: b's): with spread 0, the model decoded at that point of the latent path",
        parse=float,
    )
    path_to: str | None = setting(
        None,
        "with --path-t: the path runs from the one anchor (anchors ids:a) to generated model RUN:I (model I of "
        "samples run RUN, made by the same autoencoder run) instead of to a second checkpoint",
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown sampler {self.method!r}; choose one of {', '.join(METHODS)}")
        if not (1 <= self.n <= MAX_SAMPLES and 0 <= self.finetune_epochs <= MAX_EPOCHS):
            raise UserError(f"need 1 to {MAX_SAMPLES} samples and fine-tune epochs in 0..{MAX_EPOCHS}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"the seed must lie in 0..{MAX_SEED}, got {self.seed}")
        if self.dataset is not None:
            parse_task(self.dataset)  # the name's grammar and length, before any work
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"the fine-tuning learning rate must be finite and positive, got {self.lr}")
        if self.batch_size is not None and not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise UserError(f"the fine-tuning batch size must lie in 1..{MAX_BATCH_SIZE}, got {self.batch_size}")
        if self.spread is not None and not (math.isfinite(self.spread) and 0 <= self.spread <= MAX_SPREAD):
            raise UserError(f"the spread must be a finite number in 0..{MAX_SPREAD:g}, got {self.spread}")
        if not (math.isfinite(self.spread_keep) and 0 < self.spread_keep <= 1.5):
            raise UserError(f"the share of accuracy to keep must lie in (0, 1.5], got {self.spread_keep}")
        if not (math.isfinite(self.anchor_fidelity) and 0 <= self.anchor_fidelity <= 1.5):
            raise UserError(f"the anchors' decode fidelity must lie in 0..1.5, got {self.anchor_fidelity}")
        if self.path_t is not None and not (math.isfinite(self.path_t) and 0 <= self.path_t <= 1):
            raise UserError(f"the position on the path must lie in 0..1, got {self.path_t}")
        if self.path_to is not None:
            if self.path_t is None:
                raise UserError("a path's generated end (path_to) needs a position on the path (path_t)")
            generated_ref(self.path_to)
        Selection(self.selection, self.candidates, self.rounds)  # validates the selection settings
        if self.n * self.candidates > MAX_SAMPLES or self.rounds > MAX_EPOCHS:
            raise UserError(f"n x candidates must stay within {MAX_SAMPLES} draws, and rounds within {MAX_EPOCHS}")

    @property
    def selector(self) -> Selection:
        return Selection(self.selection, self.candidates, self.rounds)
