"""Whether a run learns: after its first epochs, has the validation reconstruction moved away from what a model
that learned nothing scores? If not, a warning for the run's record and the command line that says what to change.

Why this check: the weights a run reconstructs are standardised per layer over the training zoo, so predicting every
entry as its layer's mean scores a validation reconstruction of about 1 (its variance). SANE's paper preset, at the
paper's learning rate of 1e-4, stayed there on a 48-model zoo (1.02 after 120 steps on an H200: a zoo that small
gives one or two steps per epoch, the paper's zoos thousands), while the CPU-sized SANE learned at 1e-3. A run that
silently trains for hours at the mean is worse than one that says so after a few epochs.
"""

from __future__ import annotations

from core.rep.loop import TrainConfig

# Above this validation reconstruction (a share of the weights' variance) the run has explained less than a tenth
# of the weights: not learning yet.
NOT_LEARNING = 0.9
# The check waits for the warm-up twice over, and at least this many epochs.
MIN_CHECK_EPOCH = 5
# What the warning suggests: the learning rate times this.
SUGGESTED_LR_FACTOR = 10


def check_epoch(config: TrainConfig) -> int | None:
    """The epoch after which a run is checked; None for runs too short to judge (the check would fall after the
    first half of the run, where a short test run or a resumed one has no time to recover anyway)."""
    epoch = max(2 * config.warmup_epochs, MIN_CHECK_EPOCH)
    return epoch if 2 * epoch <= config.epochs else None


def learning_warning(history: list[dict], config: TrainConfig) -> str | None:
    """The warning for a run whose best validation reconstruction up to the check epoch is still at least
    NOT_LEARNING; None when it learns, when the run is too short or has not reached the check epoch, or when it does
    not train the weight-space reconstruction. `config` has the kind's loss weights filled in."""
    when = check_epoch(config)
    if not config.structure_weight:  # trained on behaviour alone: the weight-space error is no measure of it
        return None
    rows = [row for row in history if row["epoch"] <= (when or 0)]
    if when is None or not rows or rows[-1]["epoch"] != when:
        return None
    best = min(row["val_reconstruction"] for row in rows)
    if best < NOT_LEARNING:
        return None
    suggested = config.lr * SUGGESTED_LR_FACTOR
    return (
        f"the autoencoder is not learning: after {when} epochs its best validation reconstruction error is "
        f"{best:.3g} of the weights' variance (predicting each layer's mean scores about 1). The learning rate "
        f"{config.lr:g} may be too low for this zoo's few steps per epoch: try --lr {suggested:g}"
    )
