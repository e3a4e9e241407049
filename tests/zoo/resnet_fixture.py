"""A small zoo in the public ResNet layout: ray-tune trial folders whose checkpoints hold torchvision's ResNet
state dict with the CIFAR stem (as the SANE ResNet-18 zoos save it), at any widths and block counts.

The keys are written here from torchvision's own naming (module registration order: conv1, bn1, layer1..4 of
BasicBlocks with conv1, bn1, conv2, bn2 and, where a stage changes the shape, downsample.0/.1; then fc; every
BatchNorm with weight, bias, running_mean, running_var, num_batches_tracked), not from our spec, so that a test
that imports them checks our mapping against the layout rather than against itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

RESNET18 = dict(widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2))
# ResNet-18's depth at tiny widths: a zoo of them imports, trains and samples in seconds on a CPU.
TINY_RESNET = dict(widths=(4, 4, 8, 8), blocks=(2, 2, 2, 2))


def torchvision_resnet_state(
    in_channels: int, n_classes: int, widths, blocks, seed: int, epoch: int = 0
) -> dict[str, torch.Tensor]:
    """A state dict in torchvision's CIFAR-ResNet layout; later epochs drift from the seed's initial weights."""
    generator = torch.Generator().manual_seed(seed)
    drift = torch.Generator().manual_seed(seed * 1000 + epoch)
    state: dict[str, torch.Tensor] = {}

    def normal(*shape, scale=1.0):
        return scale * (torch.randn(shape, generator=generator) + 0.1 * epoch * torch.randn(shape, generator=drift))

    def conv(key, out_channels, in_channels, kernel):
        fan_in = in_channels * kernel**2
        state[f"{key}.weight"] = normal(out_channels, in_channels, kernel, kernel, scale=fan_in**-0.5)

    def norm(key, channels):
        state[f"{key}.weight"] = 1 + normal(channels, scale=0.1)
        state[f"{key}.bias"] = normal(channels, scale=0.1)
        state[f"{key}.running_mean"] = normal(channels, scale=0.1)
        state[f"{key}.running_var"] = 1 + normal(channels, scale=0.1).abs()
        state[f"{key}.num_batches_tracked"] = torch.tensor(100 * epoch, dtype=torch.long)

    conv("conv1", widths[0], in_channels, 3)
    norm("bn1", widths[0])
    inplanes = widths[0]
    for stage, (planes, count) in enumerate(zip(widths, blocks), start=1):
        for index in range(count):
            key, stride = f"layer{stage}.{index}", 2 if stage > 1 and index == 0 else 1
            conv(f"{key}.conv1", planes, inplanes, 3)
            norm(f"{key}.bn1", planes)
            conv(f"{key}.conv2", planes, planes, 3)
            norm(f"{key}.bn2", planes)
            if stride != 1 or inplanes != planes:
                conv(f"{key}.downsample.0", planes, inplanes, 1)
                norm(f"{key}.downsample.1", planes)
            inplanes = planes
    state["fc.weight"] = normal(n_classes, inplanes, scale=inplanes**-0.5)
    state["fc.bias"] = normal(n_classes, scale=0.01)
    return state


def trial_metrics(seed: int, epoch: int) -> dict:
    test_acc = 0.1 + 0.1 * epoch + 0.01 * seed
    return {
        "training_iteration": epoch,
        "train_loss": 2.0 - 0.3 * epoch,
        "train_acc": test_acc + 0.05,
        "test_loss": 2.1 - 0.3 * epoch,
        "test_acc": test_acc,
    }


def write_resnet_trial(
    root: Path, name: str, seed: int, epochs=(0, 1, 2), in_channels: int = 1, n_classes: int = 10, **arch
) -> dict[int, dict[str, torch.Tensor]]:
    """One trial folder as the SANE ResNet zoos write it: params.json (model::type Resnet18, a dropout rate and an
    nlin the net never applies), result.json and checkpoint_<epoch>/checkpoints; the state dicts by epoch."""
    arch = arch or TINY_RESNET
    folder = root / name
    folder.mkdir(parents=True)
    params = {
        "model::type": "Resnet18",
        "model::channels_in": in_channels,
        "model::o_dim": n_classes,
        "model::nlin": "relu",
        "model::dropout": 0.2,
        "model::init_type": "kaiming_uniform",
        "optim::optimizer": "sgd",
        "optim::lr": 0.1,
        "optim::wd": 5e-4,
        "seed": seed,
        "training::batchsize": 128,
    }
    (folder / "params.json").write_text(json.dumps(params))
    (folder / "result.json").write_text("".join(json.dumps(trial_metrics(seed, e)) + "\n" for e in epochs))
    states = {}
    for epoch in epochs:
        states[epoch] = torchvision_resnet_state(in_channels, n_classes, arch["widths"], arch["blocks"], seed, epoch)
        path = folder / f"checkpoint_{epoch:06d}" / "checkpoints"
        path.parent.mkdir()
        torch.save(states[epoch], path)
    return states


def write_resnet_zoo(root: Path, models: int = 4, epochs=(0, 1, 2), **arch) -> dict[str, dict]:
    """`models` trial folders (seeds 1..models), sorted by name as the importer numbers them."""
    return {f"trial_{seed:02d}": write_resnet_trial(root, f"trial_{seed:02d}", seed, epochs, **arch)
            for seed in range(1, models + 1)}  # fmt: skip
