"""Zoo architectures as explicit specs: build an nn.Module, flatten weights to one vector and back.

Two families share the flat-vector functions here (they only read `spec.layers`): the CNNs below and the
ResNets of core/resnet.py. The CNN module layout follows the public model zoos of Schürholt et al. (a
`module_list` Sequential of conv -> pool -> activation [-> dropout] blocks, flatten, then linear layers), so
that their state-dict keys (`module_list.0.weight`, ...) are ours too and imported checkpoints load without
renaming.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar, Protocol

import torch
from torch import nn

from core.errors import ArchitectureError

ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "leakyrelu")


@dataclass(frozen=True)
class Conv:
    out_channels: int
    kernel: int
    padding: int = 0
    pool: int = 1  # max-pool window and stride after the convolution; 1 = none


@dataclass(frozen=True)
class Layer:
    """One layer with stored tensors: its state-dict prefix and the shapes of what it stores.

    The flat vector holds, per layer, the weight, the bias (unless the layer has none, as a conv followed by a
    normalisation), then non-trainable per-unit buffers (BatchNorm's running statistics): the order of the float
    entries of the nn.Module's state dict, so a zoo checkpoint is a complete model."""

    key: str
    kind: str  # "conv", "linear" or "norm"
    weight_shape: tuple[int, ...]
    bias_shape: tuple[int, ...] | None  # None: no bias
    buffers: tuple[str, ...] = ()  # names of per-unit buffers, stored after weight and bias

    @property
    def tensors(self) -> list[tuple[str, tuple[int, ...], bool]]:
        """(name, shape, trainable) of each stored tensor, in flat-vector order."""
        tensors = [("weight", self.weight_shape, True)]
        if self.bias_shape is not None:
            tensors.append(("bias", self.bias_shape, True))
        return tensors + [(name, self.weight_shape[:1], False) for name in self.buffers]

    @property
    def n_params(self) -> int:
        return sum(math.prod(shape) for _, shape, _ in self.tensors)

    @property
    def fan_in(self) -> int:
        return math.prod(self.weight_shape[1:])


class Spec(Protocol):
    """What the engine needs of an architecture of either family (ArchSpec here, ResNetSpec in core/resnet.py)."""

    family: ClassVar[str]
    # Every layer is a conv or linear layer of plain units (no normalisation, no residual stream): per-neuron
    # tokens (core/rep/tokens.py) and weight matching (core/rep/align.py) read such specs.
    plain_units: ClassVar[bool]
    name: str
    in_channels: int
    in_size: int
    n_classes: int
    activation: str
    layers: tuple[Layer, ...]

    @property
    def n_params(self) -> int: ...

    def with_activation(self, activation: str) -> Spec: ...

    def module(self, dropout: float = 0.0) -> nn.Module: ...

    def param_counts(self) -> dict[str, int]: ...

    def to_json(self) -> dict: ...


def norm_layer(key: str, channels: int) -> Layer:
    """A BatchNorm: scale and shift (trained), running mean and variance (estimated, not trained)."""
    return Layer(key, "norm", (channels,), (channels,), ("running_mean", "running_var"))


@dataclass(frozen=True)
class ArchSpec:
    """A CNN: conv blocks, flatten, linear layers."""

    family: ClassVar[str] = "cnn"
    plain_units: ClassVar[bool] = True
    name: str
    in_channels: int
    in_size: int
    convs: tuple[Conv, ...]
    hidden: tuple[int, ...]
    n_classes: int
    activation: str = "relu"
    # Whether the layout holds Dropout modules (as CNN-l's does). They have no parameters; the rate is per model.
    dropout_slots: bool = False
    layers: tuple[Layer, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ArchitectureError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        object.__setattr__(self, "layers", tuple(_layers(self)))

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    def with_activation(self, activation: str) -> ArchSpec:
        return replace(self, activation=activation)

    def module(self, dropout: float = 0.0) -> nn.Module:
        convs = [asdict(conv) for conv in self.convs]
        act = activation_class(self.activation)
        return ZooCNN(
            self.in_channels, self.in_size, convs, self.hidden, self.n_classes, act, self.dropout_slots, dropout
        )

    def feature_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, height, width) after each conv block."""
        shapes, channels, size = [], self.in_channels, self.in_size
        for conv in self.convs:
            size = size + 2 * conv.padding - conv.kernel + 1
            if size <= 0:
                raise ArchitectureError(f"{self.name}: input of {self.in_size}px is too small for its convolutions")
            size //= conv.pool
            channels = conv.out_channels
            shapes.append((channels, size, size))
        return shapes

    def param_counts(self) -> dict[str, int]:
        return {layer.key: layer.n_params for layer in self.layers}

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("layers")
        return data

    @staticmethod
    def from_json(data: dict) -> ArchSpec:
        try:
            convs = tuple(Conv(**c) for c in data["convs"])
            return ArchSpec(
                name=data["name"],
                in_channels=int(data["in_channels"]),
                in_size=int(data["in_size"]),
                convs=convs,
                hidden=tuple(int(h) for h in data["hidden"]),
                n_classes=int(data["n_classes"]),
                activation=data.get("activation", "relu"),
                dropout_slots=bool(data.get("dropout_slots", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchitectureError(f"malformed architecture spec {json.dumps(data)[:200]}: {exc}") from exc


def _module_indices(spec: ArchSpec) -> list[int]:
    """Positions of the parameterised modules inside `module_list`, as the public zoos number them."""
    indices, position = [], 0
    for conv in spec.convs:
        indices.append(position)
        position += 1 + (conv.pool > 1) + 1 + spec.dropout_slots  # conv, [pool], act, [dropout]
    position += 1  # flatten
    for _ in spec.hidden:
        indices.append(position)
        position += 2 + spec.dropout_slots  # linear, act, [dropout]
    indices.append(position)
    return indices


def _layers(spec: ArchSpec) -> list[Layer]:
    keys = [f"module_list.{i}" for i in _module_indices(spec)]
    layers, channels = [], spec.in_channels
    for key, conv in zip(keys, spec.convs):
        shape = (conv.out_channels, channels, conv.kernel, conv.kernel)
        layers.append(Layer(key, "conv", shape, (conv.out_channels,)))
        channels = conv.out_channels
    c, h, w = spec.feature_shapes()[-1] if spec.convs else (spec.in_channels, spec.in_size, spec.in_size)
    width = c * h * w
    for key, out in zip(keys[len(spec.convs) :], (*spec.hidden, spec.n_classes)):
        layers.append(Layer(key, "linear", (out, width), (out,)))
        width = out
    return layers


# ---------------------------------------------------------------- presets


CNN_SMALL_WIDTHS = (8, 6, 4)


def cnn_small(
    in_channels: int = 1, n_classes: int = 10, activation: str = "relu", widths: tuple[int, int, int] = CNN_SMALL_WIDTHS
) -> ArchSpec:
    """Our default for 8x8 inputs (digits, shapes): the papers' CNN-s, resized. 1,288 parameters at (8, 6, 4).

    Other widths get their own name (`cnn-small-w16-12-8`): one workspace may hold several architectures,
    told apart by name."""
    a, b, c = widths
    convs = (Conv(a, 3, padding=1, pool=2), Conv(b, 3, padding=1), Conv(c, 3, padding=1, pool=2))
    name = "cnn-small" if tuple(widths) == CNN_SMALL_WIDTHS else f"cnn-small-w{a}-{b}-{c}"
    return ArchSpec(name, in_channels, 8, convs, (20,), n_classes, activation)


def cnn_s(in_channels: int = 1, n_classes: int = 10, activation: str = "tanh") -> ArchSpec:
    """The public zoos' CNN-s for 28x28 inputs: 2,464 parameters with one input channel, 2,864 with three."""
    convs = (Conv(8, 5, pool=2), Conv(6, 5, pool=2), Conv(4, 2))
    return ArchSpec("cnn-s", in_channels, 28, convs, (20,), n_classes, activation)


def cnn_l(in_channels: int = 3, n_classes: int = 10, activation: str = "tanh") -> ArchSpec:
    """The public zoos' CNN-l for 32x32 inputs (dropout after every block): 10,853 parameters."""
    convs = (Conv(16, 3, pool=2), Conv(32, 3, pool=2), Conv(15, 3, pool=2))
    return ArchSpec("cnn-l", in_channels, 32, convs, (20,), n_classes, activation, dropout_slots=True)


def default_arch(image_shape: tuple[int, int, int], n_classes: int, activation: str = "relu") -> ArchSpec:
    """The CNN family member sized for a dataset's images."""
    channels, height, width = image_shape
    if height != width:
        raise ArchitectureError(f"images of {height}x{width} are not square; the CNN family needs square inputs")
    if height == 8:
        return cnn_small(channels, n_classes, activation)
    if height == 28:
        return cnn_s(channels, n_classes, activation)
    if height == 32:
        return cnn_l(channels, n_classes, activation)
    raise ArchitectureError(f"no CNN in the family for {height}x{width} inputs (have 8x8, 28x28 and 32x32)")


# ---------------------------------------------------------------- modules and flat vectors


def activation_class(name: str) -> type[nn.Module]:
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "leakyrelu": nn.LeakyReLU}[name]


class ZooCNN(nn.Module):
    """The CNN as a plain module, built from plain values (convs as dicts of out_channels, kernel, padding, pool) and
    torch alone: an export bundle carries this class's source as its model definition, so the bundle and the engine
    cannot drift apart."""

    def __init__(
        self,
        in_channels: int,
        in_size: int,
        convs: list[dict],
        hidden: tuple[int, ...],
        n_classes: int,
        activation: type[nn.Module],
        dropout_slots: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        layers, channels, size = [], in_channels, in_size
        for conv in convs:
            layers.append(nn.Conv2d(channels, conv["out_channels"], conv["kernel"], padding=conv["padding"]))
            size = size + 2 * conv["padding"] - conv["kernel"] + 1
            if conv["pool"] > 1:
                layers.append(nn.MaxPool2d(conv["pool"]))
                size //= conv["pool"]
            layers.append(activation())
            if dropout_slots:
                layers.append(nn.Dropout(dropout))
            channels = conv["out_channels"]
        layers.append(nn.Flatten())
        width = channels * size * size
        for units in hidden:
            layers += [nn.Linear(width, units), activation()]
            if dropout_slots:
                layers.append(nn.Dropout(dropout))
            width = units
        layers.append(nn.Linear(width, n_classes))
        self.module_list = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module_list(x)


def build_module(spec: Spec, vector: torch.Tensor | None = None, dropout: float = 0.0) -> nn.Module:
    """The spec's plain nn.Module (either family), loaded with `vector` when given. Entries the vector does not
    hold (BatchNorm's integer batch counter) keep the module's own values."""
    module = spec.module(dropout)
    if vector is not None:
        state = module.state_dict()
        state.update(unflatten(spec, vector))
        module.load_state_dict(state)
    return module


def param_names(spec: Spec) -> list[tuple[str, tuple[int, ...]]]:
    """State-dict names and shapes, in the order of the flat vector."""
    return [(f"{layer.key}.{name}", shape) for layer in spec.layers for name, shape, _ in layer.tensors]


def _spans(sizes: list[int]) -> list[slice]:
    ends = [0, *itertools.accumulate(sizes)]
    return [slice(start, stop) for start, stop in zip(ends, ends[1:])]


def layer_slices(spec: Spec) -> list[slice]:
    """Each layer's span (weight, bias, buffers) in the flat vector."""
    return _spans([layer.n_params for layer in spec.layers])


def tensor_slices(spec: Spec) -> list[slice]:
    """Each stored tensor's span in the flat vector, in the order of `param_names`."""
    return _spans([math.prod(shape) for _, shape in param_names(spec)])


def trainable_mask(spec: Spec) -> torch.Tensor:
    """Bool [n_params]: False on entries that are estimated, not trained (BatchNorm's running statistics)."""
    return torch.cat(
        [torch.full((math.prod(shape),), trainable) for layer in spec.layers for _, shape, trainable in layer.tensors]
    )


def flatten(spec: Spec, state_dict: dict[str, torch.Tensor]) -> torch.Tensor:
    """A state dict as one float32 vector; raise ArchitectureError if a key is missing or a shape is off."""
    parts = []
    for name, shape in param_names(spec):
        if name not in state_dict:
            raise ArchitectureError(f"state dict lacks {name} required by {spec.name}")
        tensor = state_dict[name]
        if tuple(tensor.shape) != shape:
            raise ArchitectureError(f"{name} has shape {tuple(tensor.shape)}, {spec.name} needs {shape}")
        parts.append(tensor.detach().reshape(-1).to(torch.float32))
    return torch.cat(parts)


def unflatten(spec: Spec, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    if vector.shape != (spec.n_params,):
        raise ArchitectureError(
            f"weight vector of shape {tuple(vector.shape)} does not fit {spec.name} ({spec.n_params})"
        )
    out, start = {}, 0
    for name, shape in param_names(spec):
        size = math.prod(shape)
        out[name] = vector[start : start + size].reshape(shape).clone()
        start += size
    return out


def match_state_dict(state_dict: dict[str, torch.Tensor], candidates: list[ArchSpec]) -> ArchSpec | None:
    """The first candidate whose parameter names and shapes are exactly those of `state_dict`."""
    shapes = {name: tuple(t.shape) for name, t in state_dict.items() if name.endswith(("weight", "bias"))}
    for spec in candidates:
        if shapes == dict(param_names(spec)):
            return spec
    return None
