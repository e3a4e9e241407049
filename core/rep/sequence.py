"""Weights <-> a sequence of fixed-width tokens (SANE: Schürholt, Mahoney and Borth, ICML 2024).

Works on any model given as an ordered list of named parameter tensors (the order of its flat vector), so it
serves CNNs, ResNets with normalisation layers, and several architectures alike. The parameters of one module
(`layer1.0.conv1.weight`, `...bias`; a BatchNorm's weight, bias and running statistics) form one layer of the
sequence: each output unit's row is its slice of every one of the module's tensors laid side by side
(a conv's kernel then its bias; a BatchNorm channel's scale, shift, mean and variance). Rows are cut into
tokens of `width` entries, the last one zero-padded, so a row wider than `width` spans several tokens and a
narrow row fills one. Each token carries a three-part position: its place in the whole sequence, its layer,
and its place within the layer. All maps are precomputed index gathers: exact and cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

ParamShapes = list[tuple[str, tuple[int, ...]]]


@dataclass(frozen=True)
class SequenceLayout:
    width: int
    n_params: int
    index: torch.Tensor  # long [tokens, width]: position in the flat vector, 0 where padded
    mask: torch.Tensor  # bool [tokens, width]: real entries
    positions: torch.Tensor  # long [tokens, 3]: (sequence position, layer, position within the layer)
    layer_names: tuple[str, ...]

    @property
    def n_tokens(self) -> int:
        return self.index.shape[0]

    def to(self, device: str | torch.device) -> SequenceLayout:
        """The layout with its tensors on `device`: a training step then tokenizes without copying them from the
        host (on CUDA each copy waits for the GPU)."""
        moved = {name: getattr(self, name).to(device) for name in ("index", "mask", "positions")}
        return replace(self, **moved)

    @property
    def token_layer(self) -> torch.Tensor:
        return self.positions[:, 1]


def module_groups(shapes: ParamShapes) -> list[tuple[str, list[tuple[int, str, tuple[int, ...]]]]]:
    """[(module, [(offset, name, shape), ...])] in flat-vector order; parameters join the module before the
    last dot when they share its first dimension (one row per output unit), else they form their own layer."""
    groups: list[tuple[str, list]] = []
    offset, current = 0, None
    for name, shape in shapes:
        shape = tuple(shape) or (1,)
        module = name.rsplit(".", 1)[0] if "." in name else ""
        if groups and module == current and groups[-1][1][0][2][0] == shape[0]:
            groups[-1][1].append((offset, name, shape))
        else:
            groups.append((module if module != current else name, [(offset, name, shape)]))
            current = module
        offset += math.prod(shape)
    return groups


def sequence_layout(shapes: ParamShapes, width: int) -> SequenceLayout:
    if width < 1:
        raise ValueError("token width must be at least 1")
    rows, masks, positions, names = [], [], [], []
    n_params = sum(math.prod(tuple(s) or (1,)) for _, s in shapes)
    for layer, (module, members) in enumerate(module_groups(shapes)):
        units = members[0][2][0]
        parts = []
        for offset, _, shape in members:
            row_size = math.prod(shape[1:])
            parts.append(offset + torch.arange(units * row_size).view(units, row_size))
        content = torch.cat(parts, dim=1)  # [units, row entries]
        per_row = math.ceil(content.shape[1] / width)
        padded = torch.nn.functional.pad(content, (0, per_row * width - content.shape[1]), value=-1)
        tokens = padded.reshape(units * per_row, width)
        rows.append(tokens.clamp_min(0))
        masks.append(tokens >= 0)
        within = torch.arange(len(tokens))
        positions.append(torch.stack([within, torch.full_like(within, layer), within], dim=1))
        names.append(module)
    positions = torch.cat(positions)
    positions[:, 0] = torch.arange(len(positions))
    return SequenceLayout(width, n_params, torch.cat(rows), torch.cat(masks), positions, tuple(names))


def to_sequence(layout: SequenceLayout, vectors: torch.Tensor) -> torch.Tensor:
    """[B, n_params] -> [B, tokens, width], zeros in the padding."""
    return vectors[:, layout.index.to(vectors.device)] * layout.mask.to(vectors.device)


def from_sequence(layout: SequenceLayout, tokens: torch.Tensor) -> torch.Tensor:
    """[B, tokens, width] -> [B, n_params]; padding entries are ignored."""
    mask = layout.mask.to(tokens.device)
    vectors = torch.empty(tokens.shape[0], layout.n_params, dtype=tokens.dtype, device=tokens.device)
    vectors[:, layout.index.to(tokens.device)[mask]] = tokens[:, mask]
    return vectors


def state_dict_shapes(state_dict: dict[str, torch.Tensor]) -> ParamShapes:
    """Floating-point entries of a state dict, in its order (integer buffers such as BatchNorm's batch
    counter carry no weights)."""
    return [(k, tuple(v.shape)) for k, v in state_dict.items() if v.is_floating_point()]


def flatten_state_dict(state_dict: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.detach().reshape(-1).float() for v in state_dict.values() if v.is_floating_point()])
