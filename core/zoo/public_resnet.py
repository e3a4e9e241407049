"""The public ResNet zoos' checkpoint layout, mapped onto our `resnet` spec (core/zoo/resnet.py).

The ResNet-18 zoos of SANE (Schürholt et al., ICML 2024) save torchvision's ResNet with the CIFAR stem: conv1 is a
3x3 convolution of stride 1 without bias and the max-pool is an Identity (no parameters), then four stages of two
BasicBlocks (64, 128, 256, 512 channels), a 1x1 conv + BatchNorm shortcut (`downsample.0`, `downsample.1`) where a
stage starts, global average pooling and `fc`. Their keys are ours by design; what differs is that every
BatchNorm also stores `num_batches_tracked`, an integer counter that only sets the momentum of further training:
it is checked and dropped (a module built from the spec starts its own).

The spec is read off the shapes (stem width and input channels from conv1, each stage's width and block count
from its `layerN.M.conv1`, classes from fc), then the state dict must hold exactly that spec's keys and shapes:
anything else (the ImageNet 7x7 stem, Bottleneck blocks, an extra or missing key) is refused with one line naming
the key.
"""

from __future__ import annotations

import re

import torch

from core.errors import ArchitectureError
from core.zoo.arch import flatten, param_names
from core.zoo.resnet import ResNetSpec, resnet

# A stage beyond this many, or a block index beyond this many, is not a zoo network: a bound on the key scan.
MAX_STAGES = 8
MAX_BLOCKS = 64
# Wrappers that prefix every key: `model.` (a Lightning/ray module holding the net), `module.` (DataParallel).
_PREFIXES = ("model.", "module.")
_COUNTER = "num_batches_tracked"
# The CIFAR input size of the public ResNet zoos; a dataset named at import sets the real one.
CIFAR_SIZE = 32


def looks_like_resnet(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is meant as a torchvision-style ResNet (then it is read as one or refused)."""
    keys = _strip_prefix(state)
    return "conv1.weight" in keys and any(key.startswith("layer1.") for key in keys)


def resnet_vector(state: dict[str, torch.Tensor], in_size: int = CIFAR_SIZE) -> tuple[ResNetSpec, torch.Tensor]:
    """The spec a torchvision-style CIFAR ResNet state dict fits, and its flat float32 vector (BatchNorm running
    statistics included, counters dropped). Raise ValueError naming the key that does not fit."""
    state = _strip_prefix(state)
    spec = _spec_of(state, in_size)
    expected = {name for name, _ in param_names(spec)}
    counters = {f"{layer.key}.{_COUNTER}" for layer in spec.layers if layer.kind == "norm"}
    unexpected = sorted(set(state) - expected - counters)
    if unexpected:
        raise ValueError(f"{unexpected[0]}: not a key of {_describe(spec)}")
    missing = sorted(expected - set(state))
    if missing:
        raise ValueError(f"{missing[0]}: missing; {_describe(spec)} needs it")
    for key in counters & set(state):
        counter = state[key]
        if counter.numel() != 1 or counter.dtype.is_floating_point or counter.dtype == torch.bool:
            raise ValueError(f"{key}: expected one integer (a BatchNorm's batch counter), got {_shape_text(counter)}")
    for name, _ in param_names(spec):
        if not state[name].dtype.is_floating_point:
            raise ValueError(f"{name}: {state[name].dtype} values, expected floating point weights")
    try:
        return spec, flatten(spec, state)
    except ArchitectureError as exc:
        raise ValueError(str(exc)) from None


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without a wrapper's prefix that every key carries."""
    for prefix in _PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            return {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _spec_of(state: dict[str, torch.Tensor], in_size: int) -> ResNetSpec:
    stem = _shape(state, "conv1.weight", 4)
    if stem[2:] != (3, 3):
        raise ValueError(
            f"conv1.weight: a {stem[2]}x{stem[3]} stem (the ImageNet ResNet); only the CIFAR variant with a 3x3 stem "
            "and no max-pool is imported"
        )
    if "fc.weight" not in state:
        raise ValueError("fc.weight: missing; a ResNet ends in a linear classifier fc")
    widths, blocks = [], []
    for stage in range(1, MAX_STAGES + 1):
        count = _block_count(state, stage)
        if count == 0:
            break
        widths.append(_shape(state, f"layer{stage}.0.conv1.weight", 4)[0])
        blocks.append(count)
    if not widths:
        raise ValueError("layer1.0.conv1.weight: missing; a ResNet has at least one stage of blocks")
    if stem[0] != widths[0]:
        raise ValueError(f"conv1.weight: {stem[0]} channels, but layer1 has {widths[0]} (they share one stream)")
    n_classes = _shape(state, "fc.weight", 2)[0]
    try:
        return resnet(stem[1], n_classes, "relu", tuple(widths), tuple(blocks), in_size)
    except ArchitectureError as exc:
        raise ValueError(str(exc)) from None


def _block_count(state: dict[str, torch.Tensor], stage: int) -> int:
    """How many blocks `layer<stage>` holds, which must be numbered 0..n-1."""
    pattern = re.compile(rf"^layer{stage}\.(\d+)\.")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    if indices and indices != set(range(len(indices))):
        raise ValueError(f"layer{stage}: blocks numbered {sorted(indices)[:8]}, expected 0..{len(indices) - 1}")
    if len(indices) > MAX_BLOCKS:
        raise ValueError(f"layer{stage}: {len(indices)} blocks, more than the {MAX_BLOCKS} read")
    return len(indices)


def _shape(state: dict[str, torch.Tensor], key: str, dims: int) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"{key}: missing")
    shape = tuple(state[key].shape)
    if len(shape) != dims or min(shape) < 1:
        raise ValueError(f"{key}: shape {list(shape)}, expected {dims} positive dimensions")
    return shape


def _shape_text(tensor: torch.Tensor) -> str:
    return f"{tensor.dtype} of shape {list(tensor.shape)}"


def _describe(spec: ResNetSpec) -> str:
    return f"the CIFAR ResNet {spec.name} (widths {list(spec.widths)}, blocks {list(spec.blocks)})"
