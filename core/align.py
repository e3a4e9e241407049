"""Canonical alignment of a zoo: reorder each model's hidden units to match a reference model.

Models trained from different seeds compute similar functions with their units in different orders, so
their weight vectors sit in different permutation-equivalent corners of weight space; an autoencoder then
memorises rather than generalises. Weight matching removes that nuisance exactly: per hidden layer, a
linear assignment pairs the model's units with the reference's by the similarity of their incoming weights
and bias (with the previous layer's reordering already applied to the inputs), and the reordering is then
carried to the next layer's inputs. The function of every model is unchanged.

Each model gets one permutation, computed from its last checkpoint and applied to all its checkpoints, so a
training trajectory stays one trajectory.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from core.arch import ArchSpec, layer_slices
from core.tokens import permutation_index


def match_to_reference(spec: ArchSpec, vector: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The gather index that aligns one model's flat weights to a reference's."""
    perms: list[torch.Tensor] = []
    slices = layer_slices(spec)
    for number, layer in enumerate(spec.layers[:-1]):
        out, fan_in = layer.weight_shape[0], layer.fan_in
        rows = []
        for source in (vector, reference):
            span = source[slices[number]]
            weight = span[: out * fan_in].view(out, fan_in)
            rows.append(torch.cat([weight, span[out * fan_in :].view(out, 1)], dim=1))
        model_rows, reference_rows = rows
        if perms:
            previous = perms[-1]
            block = fan_in // previous.numel()
            weight = model_rows[:, :fan_in].view(out, previous.numel(), block)[:, previous].reshape(out, fan_in)
            model_rows = torch.cat([weight, model_rows[:, fan_in:]], dim=1)
        similarity = (reference_rows @ model_rows.T).double().numpy()  # [reference unit, model unit]
        _, model_units = linear_sum_assignment(similarity, maximize=True)
        perms.append(torch.from_numpy(np.asarray(model_units, dtype=np.int64)))
    return permutation_index(spec, perms)


def align_zoo(
    spec: ArchSpec,
    weights: torch.Tensor,
    model_ids: np.ndarray,
    epochs: np.ndarray,
    reference_row: int,
    iterations: int = 1,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Aligned weights [checkpoints, params] and each model's gather index.

    The first pass aligns every model to the checkpoint `reference_row`; each further iteration aligns them
    to the mean of the previous pass's aligned last checkpoints (an "iterated mean" reference).
    """
    last_rows = {}
    for row, (model, epoch) in enumerate(zip(model_ids.tolist(), epochs.tolist())):
        if model not in last_rows or epoch > epochs[last_rows[model]]:
            last_rows[model] = row
    reference = weights[reference_row]
    indices: dict[int, torch.Tensor] = {}
    for _ in range(max(1, iterations)):
        indices = {model: match_to_reference(spec, weights[row], reference) for model, row in last_rows.items()}
        reference = torch.stack([weights[row][indices[model]] for model, row in last_rows.items()]).mean(0)
    gather = torch.stack([indices[model] for model in model_ids.tolist()])
    return torch.gather(weights, 1, gather), indices
