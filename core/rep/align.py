"""Canonical alignment of a zoo: reorder each model's hidden units to match a reference model.

Models trained from different seeds compute similar functions with their units in different orders, so
their weight vectors sit in different permutation-equivalent corners of weight space; an autoencoder then
memorises rather than generalises. Weight matching removes that nuisance exactly: per hidden layer, a
linear assignment pairs the model's units with the reference's by the similarity of their incoming weights
and bias (with the previous layer's reordering already applied to the inputs), and the reordering is then
carried to the next layer's inputs. The function of every model is unchanged. ResNets, whose residual streams
tie layers together, are matched by core/rep/align_resnet.py.

Each family of checkpoints (a model's trajectory, or all models that share an initialisation) gets one
permutation, computed from its last checkpoints and applied to all of them, so a trajectory stays one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from core.rep.align_resnet import match_resnet
from core.rep.tokens import permutation_index
from core.store.budget import chunk_rows
from core.zoo.arch import ArchSpec, Spec, layer_slices


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


def match_any(spec: Spec, vector: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The gather index aligning one model to a reference, for either family."""
    if spec.plain_units:
        return match_to_reference(spec, vector, reference)
    return match_resnet(spec, vector, reference)


def family_indices(
    spec: Spec,
    read_rows: Callable[[np.ndarray], torch.Tensor],
    families: np.ndarray,
    epochs: np.ndarray,
    reference_row: int,
    iterations: int = 1,
) -> dict[int, torch.Tensor]:
    """Each family's gather index [params], reading the zoo one family at a time (`read_rows(rows)` -> weights),
    a family's last checkpoints a chunk at a time (`family_mean`), so memory holds one chunk and one running mean,
    never the zoo.

    A family is a set of checkpoints that must move together: one model's trajectory, or all models that
    share an initialisation (they train into the same basin with their units already in corresponding
    order; aligning them one by one would scatter them). A family is matched through the mean of its
    last-epoch checkpoints. The first pass aligns every family to the checkpoint `reference_row`; each
    further iteration aligns them to the mean of the previous pass's aligned family means.
    """
    last_rows = {}
    for family in np.unique(families).tolist():
        rows = np.flatnonzero(families == family)
        last_rows[family] = rows[epochs[rows] == epochs[rows].max()]
    reference = read_rows(np.array([reference_row]))[0]
    indices: dict[int, torch.Tensor] = {}
    for _ in range(max(1, iterations)):
        total = torch.zeros_like(reference)
        for family, rows in last_rows.items():
            vector = family_mean(read_rows, rows, chunk_rows(len(reference)))
            indices[family] = match_any(spec, vector, reference)
            total += vector[indices[family]]
        reference = total / len(last_rows)
    return indices


def family_mean(read_rows: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray, chunk: int) -> torch.Tensor:
    """The mean of the weights of `rows`, read `chunk` rows at a time. Rows that fit one chunk give the plain float32
    mean (what runs aligned before chunks recompute on loading); more are summed in float64."""
    if len(rows) <= chunk:
        return read_rows(rows).mean(0)
    total = sum(read_rows(rows[start : start + chunk]).double().sum(0) for start in range(0, len(rows), chunk))
    return (total / len(rows)).float()


def align_zoo(
    spec: Spec,
    weights: torch.Tensor,
    families: np.ndarray,
    epochs: np.ndarray,
    reference_row: int,
    iterations: int = 1,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Aligned weights [checkpoints, params] of a zoo in memory, and each family's gather index
    (`family_indices`; a zoo on disk is aligned a chunk at a time through core/rep/prepare.py)."""
    indices = family_indices(
        spec, lambda rows: weights[torch.from_numpy(rows)], families, epochs, reference_row, iterations
    )
    gather = torch.stack([indices[f] for f in families.tolist()])
    return torch.gather(weights, 1, gather), indices
