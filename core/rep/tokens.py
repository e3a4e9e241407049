"""Weights <-> per-neuron tokens, and the augmentations the autoencoder trains with.

A token is one neuron's incoming weights and its bias (conv: one output channel's kernel; linear: one output
row), as in Schürholt et al. 2021. Tokens are zero-padded to the widest layer's width; `mask` marks the real
entries. All maps here are index gathers precomputed from the spec, so they are exact and cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.zoo.arch import ArchSpec


@dataclass(frozen=True)
class TokenLayout:
    spec: ArchSpec
    index: torch.Tensor  # long [tokens, width]: position in the flat weight vector, 0 where padded
    mask: torch.Tensor  # bool [tokens, width]: real entries
    token_layer: torch.Tensor  # long [tokens]: which layer each token belongs to

    @property
    def n_tokens(self) -> int:
        return self.index.shape[0]

    def to(self, device: str | torch.device) -> TokenLayout:
        """The layout with its index tensors on `device`: a training step then tokenizes without copying them
        from the host (on CUDA each copy waits for the GPU)."""
        return TokenLayout(self.spec, self.index.to(device), self.mask.to(device), self.token_layer.to(device))

    @property
    def width(self) -> int:
        return self.index.shape[1]


def token_layout(spec: ArchSpec) -> TokenLayout:
    width = max(layer.fan_in + 1 for layer in spec.layers)
    rows, masks, layers, offset = [], [], [], 0
    for number, layer in enumerate(spec.layers):
        out, fan_in = layer.weight_shape[0], layer.fan_in
        weight = offset + torch.arange(out * fan_in).view(out, fan_in)
        bias = offset + out * fan_in + torch.arange(out).view(out, 1)
        real = torch.cat([weight, bias], dim=1)
        rows.append(torch.nn.functional.pad(real, (0, width - fan_in - 1)))
        masks.append(torch.arange(width).expand(out, width) < fan_in + 1)
        layers.append(torch.full((out,), number))
        offset += layer.n_params
    return TokenLayout(spec, torch.cat(rows), torch.cat(masks), torch.cat(layers))


def tokenize(layout: TokenLayout, vectors: torch.Tensor) -> torch.Tensor:
    """[B, n_params] -> [B, tokens, width], zeros in the padding."""
    tokens = vectors[:, layout.index.to(vectors.device)]
    return tokens * layout.mask.to(vectors.device)


def detokenize(layout: TokenLayout, tokens: torch.Tensor) -> torch.Tensor:
    """[B, tokens, width] -> [B, n_params]; padding entries are ignored."""
    mask = layout.mask.to(tokens.device)
    vectors = torch.empty(tokens.shape[0], layout.spec.n_params, dtype=tokens.dtype, device=tokens.device)
    vectors[:, layout.index.to(tokens.device)[mask]] = tokens[:, mask]
    return vectors


# ---------------------------------------------------------------- permutation symmetry


def permutation_index(spec: ArchSpec, perms: list[torch.Tensor]) -> torch.Tensor:
    """A gather index g with `vector[g]` = the same network with hidden units reordered.

    `perms[l][i]` is the old unit that becomes unit i of hidden layer l (every layer but the last). The
    outgoing weights move with their unit: the next layer's input channels (a block of k*k entries per channel
    for a conv, of H*W features for the linear layer after the last conv) are reordered the same way.
    """
    if len(perms) != len(spec.layers) - 1:
        raise ValueError(f"need one permutation per hidden layer ({len(spec.layers) - 1}), got {len(perms)}")
    parts, offset = [], 0
    for number, layer in enumerate(spec.layers):
        out, fan_in = layer.weight_shape[0], layer.fan_in
        weight = offset + torch.arange(out * fan_in).view(out, fan_in)
        bias = offset + out * fan_in + torch.arange(out)
        if number < len(perms):
            weight, bias = weight[perms[number]], bias[perms[number]]
        if number > 0:
            previous = perms[number - 1]
            block = fan_in // previous.numel()
            weight = weight.view(out, previous.numel(), block)[:, previous].reshape(out, fan_in)
        parts += [weight.reshape(-1), bias]
        offset += layer.n_params
    return torch.cat(parts)


def hidden_sizes(spec: ArchSpec) -> list[int]:
    return [layer.weight_shape[0] for layer in spec.layers[:-1]]


def random_permutation_indices(spec: ArchSpec, count: int, generator: torch.Generator) -> torch.Tensor:
    """[count, n_params] gather indices of random function-preserving permutations."""
    return torch.stack(
        [
            permutation_index(spec, [torch.randperm(n, generator=generator) for n in hidden_sizes(spec)])
            for _ in range(count)
        ]
    )


# ---------------------------------------------------------------- token-space augmentations


def add_noise(tokens: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor, std: float, generator) -> torch.Tensor:
    """Additive Gaussian noise, `std` times each token's layer scale (`scale` [tokens, 1]), real entries only."""
    if std <= 0:
        return tokens
    noise = torch.randn(tokens.shape, generator=generator, device=tokens.device)
    return tokens + noise * (std * scale) * mask


def random_erase(
    tokens: torch.Tensor, probability: float, area: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """Zero one random rectangle of the [tokens, width] grid per model, with the given probability.

    The rectangle covers a fraction of the grid drawn from `area`, with an aspect ratio between 1/3 and 3
    (the random-erasing recipe of Zhong et al. that the 2021 paper adapts to weight tokens).
    """
    if probability <= 0:
        return tokens
    batch, rows, cols = tokens.shape
    device = tokens.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator, device=device)

    fraction = uniform(*area)
    ratio = torch.exp(uniform(math.log(1 / 3), math.log(3)))
    height = (fraction * rows * cols * ratio).sqrt().round().clamp(1, rows)
    width = (fraction * rows * cols / ratio).sqrt().round().clamp(1, cols)
    top = (uniform(0, 1) * (rows - height + 1)).floor()
    left = (uniform(0, 1) * (cols - width + 1)).floor()
    apply = torch.rand(batch, generator=generator, device=device) < probability
    r = torch.arange(rows, device=device).view(1, rows, 1)
    c = torch.arange(cols, device=device).view(1, 1, cols)
    box = (
        (r >= top.view(-1, 1, 1))
        & (r < (top + height).view(-1, 1, 1))
        & (c >= left.view(-1, 1, 1))
        & (c < (left + width).view(-1, 1, 1))
    )
    return tokens.masked_fill(box & apply.view(-1, 1, 1), 0.0)
