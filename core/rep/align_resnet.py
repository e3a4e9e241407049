"""Permutation symmetry and weight matching for ResNets (git re-basin: Ainsworth, Hayase and Srinivasa, 2023).

A ResNet's channels cannot be reordered one layer at a time as a plain CNN's can: every block adds its output to
the residual stream, so all layers that write to one stream (the stem, each block's second conv, a shortcut conv)
must share one permutation, and every layer that reads the stream (each block's first conv and shortcut, the
classifier) takes it on its inputs. A new stream starts where a shortcut conv changes the shape. Each block's
inner channels (between its two convs) are a permutation of their own. A BatchNorm moves with the conv it follows:
its scale, shift and running statistics are per-channel rows like the conv's filters.

Weight matching chooses the permutations that bring a model closest to a reference: one linear assignment per
permutation at a time, holding the others fixed, summing the similarities of every layer that permutation touches
(outputs and inputs), until a whole pass changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from core.zoo.resnet import ResNetSpec

MAX_PASSES = 50  # coordinate descent converges in a handful of passes on our zoos; a bound, not a tuning knob


@dataclass(frozen=True)
class Tensor:
    """One stored tensor: its span in the flat vector, its shape, and the permutations on its first two axes."""

    offset: int
    shape: tuple[int, ...]
    out_group: int | None
    in_group: int | None

    def index(self) -> torch.Tensor:
        """Flat positions as [out, in or 1, rest]."""
        shape = self.shape if len(self.shape) > 1 else (*self.shape, 1)
        return self.offset + torch.arange(math.prod(self.shape)).view(shape[0], shape[1], -1)


def permutation_groups(spec: ResNetSpec) -> tuple[list[Tensor], list[int]]:
    """Every stored tensor with the permutation groups of its axes, and each group's size."""
    sizes: list[int] = []

    def new_group(size: int) -> int:
        sizes.append(size)
        return len(sizes) - 1

    stream = new_group(spec.widths[0])
    axes = {"conv1": (stream, None), "bn1": (stream, None)}
    for block in spec.block_plan():
        inner = new_group(block.out_channels)
        written = new_group(block.out_channels) if block.has_shortcut_conv else stream
        axes |= {f"{block.key}.conv1": (inner, stream), f"{block.key}.bn1": (inner, None)}
        axes |= {f"{block.key}.conv2": (written, inner), f"{block.key}.bn2": (written, None)}
        axes |= {f"{block.key}.downsample.0": (written, stream), f"{block.key}.downsample.1": (written, None)}
        stream = written
    axes["fc"] = (None, stream)
    tensors, offset = [], 0
    for layer in spec.layers:
        out_group, in_group = axes[layer.key]
        for _, shape, _ in layer.tensors:
            tensors.append(Tensor(offset, shape, out_group, in_group if len(shape) > 1 else None))
            offset += math.prod(shape)
    return tensors, sizes


def resnet_permutation_index(spec: ResNetSpec, perms: list[torch.Tensor]) -> torch.Tensor:
    """A gather index g with `vector[g]` = the same ResNet with channels reordered; `perms[k][i]` is the old
    channel that becomes channel i of group k (groups as `permutation_groups` numbers them)."""
    tensors, sizes = permutation_groups(spec)
    if [len(p) for p in perms] != sizes:
        raise ValueError(f"need permutations of sizes {sizes}, got {[len(p) for p in perms]}")
    parts = []
    for tensor in tensors:
        index = tensor.index()
        if tensor.out_group is not None:
            index = index[perms[tensor.out_group]]
        if tensor.in_group is not None:
            index = index[:, perms[tensor.in_group]]
        parts.append(index.reshape(-1))
    return torch.cat(parts)


def random_resnet_permutations(spec: ResNetSpec, count: int, generator: torch.Generator) -> torch.Tensor:
    """[count, n_params] gather indices of random function-preserving channel permutations."""
    _, sizes = permutation_groups(spec)
    return torch.stack(
        [resnet_permutation_index(spec, [torch.randperm(n, generator=generator) for n in sizes]) for _ in range(count)]
    )


def _similarity(tensors, group: int, size: int, vector, reference, perms) -> torch.Tensor:
    """[reference channel, model channel]: summed inner products of the rows (outputs) and columns (inputs) of
    every tensor the group permutes, with the model's other axes already permuted."""
    total = torch.zeros(size, size, dtype=torch.float64)
    for tensor in tensors:
        if group not in (tensor.out_group, tensor.in_group):
            continue
        index = tensor.index()
        model, ref = vector[index].double(), reference[index].double()
        if tensor.out_group is not None and tensor.out_group != group:
            model = model[perms[tensor.out_group]]
        if tensor.in_group is not None and tensor.in_group != group:
            model = model[:, perms[tensor.in_group]]
        if tensor.out_group == group:
            total += ref.flatten(1) @ model.flatten(1).T
        else:
            total += ref.transpose(0, 1).flatten(1) @ model.transpose(0, 1).flatten(1).T
    return total


def match_resnet(spec: ResNetSpec, vector: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The gather index that aligns one ResNet's flat weights to a reference's."""
    tensors, sizes = permutation_groups(spec)
    perms = [torch.arange(n) for n in sizes]
    for _ in range(MAX_PASSES):
        changed = False
        for group, size in enumerate(sizes):
            similarity = _similarity(tensors, group, size, vector, reference, perms).numpy()
            _, model_channels = linear_sum_assignment(similarity, maximize=True)
            new = torch.from_numpy(np.asarray(model_channels, dtype=np.int64))
            changed |= not torch.equal(new, perms[group])
            perms[group] = new
        if not changed:
            break
    return resnet_permutation_index(spec, perms)
