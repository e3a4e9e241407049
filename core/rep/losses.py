"""Losses of the hyper-representation autoencoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.rep.distributed import gathered


def reconstruction_loss(
    predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, token_std: torch.Tensor, layer_norm: bool
) -> torch.Tensor:
    """Mean squared error over the real entries of [B, tokens, width] weight tokens.

    With `layer_norm` (Schürholt et al. 2022) each entry's error is divided by the variance of its layer's
    weights over the training zoo (`token_std` [tokens, 1] holds that layer's std for each token), so small-
    magnitude layers count as much as large ones: sum_l sum_e (w_hat - w)^2 / sigma_l^2 / (B * entries).
    """
    error = (predicted - target) * mask
    if layer_norm:
        error = error / token_std
    return error.pow(2).sum() / (predicted.shape[0] * mask.sum())


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """The normalised-temperature cross-entropy of SimCLR: view a[i] must pick b[i] among all 2B - 1 others. Under
    torchrun B is the global batch: every process's projections are gathered, so the negatives are the ones a
    single process would see."""
    a, b = gathered(a), gathered(b)
    z = F.normalize(torch.cat([a, b]), dim=1)
    similarity = z @ z.T / temperature
    n = a.shape[0]
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(0, n, device=z.device)])
    return F.cross_entropy(similarity, targets)
