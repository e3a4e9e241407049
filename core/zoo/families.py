"""The architecture families the engine knows (CNN, ResNet): specs read back from JSON, and presets by name.

A spec's JSON says its family (`"family": "resnet"`); CNN specs were written before there was a second
family and carry no such key, so a missing family means CNN and old workspaces load unchanged.
"""

from __future__ import annotations

from core.errors import ArchitectureError
from core.zoo.arch import ArchSpec, Spec, cnn_l, cnn_s, cnn_small, default_arch
from core.zoo.resnet import ResNetSpec, resnet

_FROM_JSON = {"cnn": ArchSpec.from_json, "resnet": ResNetSpec.from_json}
_CNN_PRESETS = {"cnn-small": cnn_small, "cnn-s": cnn_s, "cnn-l": cnn_l}
# "auto" and "cnn": the CNN family member sized for the images; "resnet": the ResNet preset at their size.
ARCH_NAMES = ("auto", "cnn", "resnet", *_CNN_PRESETS)


def spec_from_json(data: dict) -> Spec:
    family = data.get("family", "cnn") if isinstance(data, dict) else None
    if family not in _FROM_JSON:
        raise ArchitectureError(f"unknown architecture family {family!r}; known: {', '.join(_FROM_JSON)}")
    return _FROM_JSON[family](data)


def family_of(name: str) -> str:
    """The family an architecture name of ARCH_NAMES belongs to."""
    if name not in ARCH_NAMES:
        raise ArchitectureError(f"unknown architecture {name!r}; choose one of {', '.join(ARCH_NAMES)}")
    return "resnet" if name == "resnet" else "cnn"


def arch_by_name(name: str, image_shape: tuple[int, int, int], n_classes: int, activation: str = "relu") -> Spec:
    """The named architecture for a dataset's images [channels, height, width] and class count."""
    family_of(name)
    channels, height, width = image_shape
    if name in ("auto", "cnn"):
        return default_arch(image_shape, n_classes, activation)
    if height != width:
        raise ArchitectureError(f"images of {height}x{width} are not square; the presets need square inputs")
    if name == "resnet":
        return resnet(channels, n_classes, activation, in_size=height)
    spec = _CNN_PRESETS[name](channels, n_classes, activation)
    if spec.in_size != height:
        raise ArchitectureError(
            f"{name} takes {spec.in_size}x{spec.in_size} images, the dataset's are {height}x{width}"
        )
    return spec
