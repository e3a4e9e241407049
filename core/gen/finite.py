"""A generation's numbers checked before anything is written: every value is finite, or the run is refused with
the option that made it overflow. Spreads and learning rates are bounded in SampleConfig, but whether a finite
setting overflows depends on the zoo and the autoencoder (a spread is in units of the anchors' spacing; a
learning rate diverges on some models and not others), so the outcome itself is checked too: an all-NaN run
written with exit 0, and then exported, is worse than a refusal."""

from __future__ import annotations

import math

import numpy as np
import torch

from core.errors import UserError


def check_codes(codes: np.ndarray, spread: float) -> None:
    """Drawn latent codes, before they are decoded."""
    if not np.isfinite(codes).all():
        raise UserError(
            f"--spread {spread}: the drawn latent codes are not finite (beyond float32's range); choose a smaller "
            "--spread (1.5 is the default; 4 already moves four anchor spacings away)"
        )


def _bad_rows(weights: torch.Tensor) -> int:
    return int((~torch.isfinite(weights).all(dim=1)).sum()) if weights.numel() else 0


def check_generated(generated: torch.Tensor, spread: float) -> None:
    """The decoded models' weights [n, params], as soon as they are drawn."""
    bad = _bad_rows(generated)
    if bad:
        raise UserError(
            f"--spread {spread}: {bad} of the {len(generated)} generated models hold non-finite weights (the decoder "
            "overflowed); choose a smaller --spread; nothing was written"
        )


def check_results(generated: torch.Tensor, finetuned: torch.Tensor, figures: dict, spread: float, lr) -> None:
    """The generated and fine-tuned weights [n, params] and the run's figures (curves and novelty medians, any
    nesting of dicts and lists), each finite; else UserError naming the option to change."""
    check_generated(generated, spread)
    bad = _bad_rows(finetuned)
    if bad:
        shown = "the zoo's" if lr is None else str(lr)
        raise UserError(
            f"--finetune-lr {shown}: fine-tuning made {bad} of the {len(finetuned)} models' weights non-finite "
            "(it diverged); choose a smaller --finetune-lr, or --finetune-epochs 0; nothing was written"
        )
    where = _non_finite(figures)
    if where:
        raise UserError(
            f"--spread {spread}: the figure {where} is not finite (the models overflowed); choose a smaller --spread; "
            "nothing was written"
        )


def _non_finite(value, where: str = "") -> str | None:
    """The key path of the first non-finite number in nested dicts and lists, or None."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return where or "?" if is_number and not math.isfinite(value) else None
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None
