"""Small ResNets for zoos: the spec (layer names and shapes in state-dict order) and the plain nn.Module.

The layout is the CIFAR ResNet of He et al. (2016) shrunk for 8x8 images: a 3x3 stem conv with BatchNorm,
stages of BasicBlocks (two 3x3 convs, each followed by BatchNorm; stride 2 at the start of every stage after
the first, with a 1x1 conv + BatchNorm shortcut where the shape changes), global average pooling and a linear
classifier, which comes last in the flat vector so that transfer can redraw it as a fresh head. Keys follow
torchvision's (`layer1.0.conv1.weight`, `layer2.0.downsample.1.running_var`, `fc.bias`).

`BasicBlock` and `ZooResNet` use torch alone: an export bundle carries their source as its model definition,
so the bundle and the engine cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from core.errors import ArchitectureError
from core.zoo.arch import ACTIVATIONS, Layer, activation_class, norm_layer

# ~20k parameters for 1-channel digits: a 32-model zoo trains 10 epochs in about a minute on 2 CPU cores.
RESNET_WIDTHS = (8, 16, 32)
RESNET_BLOCKS = (1, 1, 1)
# ResNet-18 (He et al., 2016) as the public SANE zoos train it on CIFAR: 11,173,962 trained parameters at 10 classes.
RESNET18_WIDTHS = (64, 128, 256, 512)
RESNET18_BLOCKS = (2, 2, 2, 2)


class Block(NamedTuple):
    key: str  # state-dict prefix, e.g. "layer2.0"
    in_channels: int
    out_channels: int
    stride: int

    @property
    def has_shortcut_conv(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels


@dataclass(frozen=True)
class ResNetSpec:
    family: ClassVar[str] = "resnet"
    plain_units: ClassVar[bool] = False
    name: str
    in_channels: int
    in_size: int
    widths: tuple[int, ...]  # channels of each stage
    blocks: tuple[int, ...]  # BasicBlocks per stage
    n_classes: int
    activation: str = "relu"
    layers: tuple[Layer, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ArchitectureError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if not self.widths or len(self.widths) != len(self.blocks):
            raise ArchitectureError(
                f"{self.name}: need one block count per stage width, got {self.widths} and {self.blocks}"
            )
        if min(self.widths) < 1 or min(self.blocks) < 1 or min(self.in_channels, self.in_size, self.n_classes) < 1:
            raise ArchitectureError(f"{self.name}: widths, block counts, channels, size and classes must be positive")
        object.__setattr__(self, "layers", tuple(_layers(self)))

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    def with_activation(self, activation: str) -> ResNetSpec:
        return replace(self, activation=activation)

    def module(self, dropout: float = 0.0) -> nn.Module:
        if dropout:
            raise ArchitectureError(f"{self.name}: ResNets have no dropout (got a rate of {dropout})")
        return ZooResNet(self.in_channels, self.widths, self.blocks, self.n_classes, activation_class(self.activation))

    def block_plan(self) -> list[Block]:
        """Every BasicBlock in forward order."""
        plan, channels = [], self.widths[0]
        for stage, (width, count) in enumerate(zip(self.widths, self.blocks)):
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                plan.append(Block(f"layer{stage + 1}.{index}", channels, width, stride))
                channels = width
        return plan

    def param_counts(self) -> dict[str, int]:
        return {layer.key: layer.n_params for layer in self.layers}

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "name": self.name,
            "in_channels": self.in_channels,
            "in_size": self.in_size,
            "widths": list(self.widths),
            "blocks": list(self.blocks),
            "n_classes": self.n_classes,
            "activation": self.activation,
        }

    @staticmethod
    def from_json(data: dict) -> ResNetSpec:
        try:
            return ResNetSpec(
                name=data["name"],
                in_channels=int(data["in_channels"]),
                in_size=int(data["in_size"]),
                widths=tuple(int(w) for w in data["widths"]),
                blocks=tuple(int(b) for b in data["blocks"]),
                n_classes=int(data["n_classes"]),
                activation=data.get("activation", "relu"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchitectureError(f"malformed ResNet spec {json.dumps(data)[:200]}: {exc}") from exc


def _conv(key: str, out_channels: int, in_channels: int, kernel: int) -> Layer:
    return Layer(key, "conv", (out_channels, in_channels, kernel, kernel), None)


def _layers(spec: ResNetSpec) -> list[Layer]:
    layers = [_conv("conv1", spec.widths[0], spec.in_channels, 3), norm_layer("bn1", spec.widths[0])]
    for block in spec.block_plan():
        key, width = block.key, block.out_channels
        layers += [_conv(f"{key}.conv1", width, block.in_channels, 3), norm_layer(f"{key}.bn1", width)]
        layers += [_conv(f"{key}.conv2", width, width, 3), norm_layer(f"{key}.bn2", width)]
        if block.has_shortcut_conv:
            layers += [
                _conv(f"{key}.downsample.0", width, block.in_channels, 1),
                norm_layer(f"{key}.downsample.1", width),
            ]
    layers.append(Layer("fc", "linear", (spec.n_classes, spec.widths[-1]), (spec.n_classes,)))
    return layers


def resnet(
    in_channels: int = 1,
    n_classes: int = 10,
    activation: str = "relu",
    widths: tuple[int, ...] = RESNET_WIDTHS,
    blocks: tuple[int, ...] = RESNET_BLOCKS,
    in_size: int = 8,
) -> ResNetSpec:
    """Our ResNet preset: 20,146 parameters for 1-channel 10-class 8x8 images at the default widths. Any input
    size works (global average pooling); ResNet-18's widths and blocks are named `resnet-18`, other widths or block
    counts get their own name."""
    widths, blocks = tuple(widths), tuple(blocks)
    name = "resnet"
    if (widths, blocks) == (RESNET18_WIDTHS, RESNET18_BLOCKS):
        name = "resnet-18"
    elif (widths, blocks) != (RESNET_WIDTHS, RESNET_BLOCKS):
        name = f"resnet-w{'-'.join(map(str, widths))}-b{'-'.join(map(str, blocks))}"
    return ResNetSpec(name, in_channels, in_size, widths, blocks, n_classes, activation)


# ---------------------------------------------------------------- the module (torch only: exported as source)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: type[nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.act = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        return self.act(out + (x if self.downsample is None else self.downsample(x)))


class ZooResNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        n_classes: int,
        activation: type[nn.Module],
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act = activation()
        self.stages = len(widths)
        channels = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            stage_blocks = []
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                stage_blocks.append(BasicBlock(channels, width, stride, activation))
                channels = width
            setattr(self, f"layer{stage + 1}", nn.Sequential(*stage_blocks))
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        for stage in range(self.stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return self.fc(x.mean((2, 3)))
