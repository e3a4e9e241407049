"""Blocks of a zoo's models that train one after another, so that generation stays within the memory budget
(`--memory`, core/store/budget.py) whatever the number of models.

The population trainer holds, per model, its weights, gradients and two Adam moments, and while an epoch's
resumable state is committed, copies of three of those and their serialised bytes: `TRAINING_COPIES` copies of
the weights. A block is a run of consecutive models of the plan whose copies fit `TRAINING_SHARE` of the budget;
it trains through every epoch before the next begins. Every model draws its init, data order and dropout masks
from its own seed, so a model trains the same in any block (at one torch thread bit for bit: with several, oneDNN
splits a grouped convolution's work by its number of groups, and the last bit may differ, as between populations
of different sizes anyway).
"""

from __future__ import annotations

import math

from core.errors import UserError
from core.limits import MAX_ZOO_VALUES
from core.store.budget import memory_mb, share_bytes
from core.zoo.arch import Spec

# Copies of every model's weights the population trainer holds at its peak (see the module's docstring).
TRAINING_COPIES = 10
# The budget's share for a block's training state: the rest holds the interpreter and torch (about 400 MB), the
# dataset, the activations of a training step (core/zoo/backend.py) and the snapshot being written.
TRAINING_SHARE = 0.25


def training_bytes(spec: Spec) -> int:
    """The bytes one model of `spec` holds while it trains."""
    return 4 * spec.n_params * TRAINING_COPIES


def block_capacity() -> int:
    """The bytes of training state one block may hold: its share of the budget, and at most MAX_ZOO_VALUES (an
    absolute ceiling on a population's values, whatever budget is asked for)."""
    return min(share_bytes(TRAINING_SHARE), 4 * MAX_ZOO_VALUES)


def check_model_fits(specs: list[Spec], capacity: int) -> None:
    """Refuse an architecture one model of which does not fit a block (the smallest unit of training)."""
    for spec in specs:
        need = training_bytes(spec)
        if need > capacity:
            least = math.ceil(memory_mb() * need / capacity)
            raise UserError(
                f"one {spec.name} model holds {need / 2**20:,.0f} MB while it trains (its weights, gradients, Adam's "
                f"moments and the copies a resumable state takes), more than the {capacity / 2**20:,.0f} MB that "
                f"--memory {memory_mb()} allows a block of models; give --memory {least} or more"
            )


def model_blocks(costs: list[int], capacity: int, start: int = 0) -> list[range]:
    """Consecutive ranges covering models `start..len(costs)` (each model's training bytes in `costs`), each within
    `capacity` and of about equal cost, so that the blocks take about equal time: one range where all fit."""
    total = sum(costs[start:])
    if total <= capacity:
        return [range(start, len(costs))] if start < len(costs) else []
    target = total / math.ceil(total / capacity)
    blocks, first, held = [], start, 0
    for model in range(start, len(costs)):
        if model > first and (held + costs[model] > capacity or held >= target):
            blocks.append(range(first, model))
            first, held = model, 0
        held += costs[model]
    blocks.append(range(first, len(costs)))
    return blocks
