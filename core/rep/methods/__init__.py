"""The autoencoder kinds, by the name runs are stored under. Add a kind here (see base.py)."""

from __future__ import annotations

from dataclasses import replace

from core.errors import UserError
from core.rep.loop import OBJECTIVES, TrainConfig
from core.rep.methods.base import Method
from core.rep.methods.hyperrep import HyperRep
from core.rep.methods.sane import Sane

METHODS: dict[str, Method] = {method.kind: method for method in (HyperRep(), Sane())}
KINDS = tuple(METHODS)


def method_named(kind: str) -> Method:
    if kind not in METHODS:
        raise UserError(f"unknown autoencoder kind {kind!r}; choose one of {', '.join(KINDS)}")
    return METHODS[kind]


PRESETS = tuple(sorted({name for method in METHODS.values() for name in method.gpu_presets}))


def preset_settings(method: Method, name: str | None, device: str) -> dict:
    """The settings of a kind's GPU preset (none without a name); refused, saying why, for another kind or off a
    GPU: the official sizes are hundreds of millions of parameters, weeks of steps on a CPU."""
    if name is None:
        return {}
    if name not in method.gpu_presets:
        have = ", ".join(method.gpu_presets) or "none"
        raise UserError(f"--preset {name}: not a preset of {method.kind} (its presets: {have})")
    if device != "cuda":
        sizes = ", ".join(f"{k} {v}" for k, v in method.gpu_presets[name].items() if k in ("d_model", "window"))
        raise UserError(
            f"--preset {name} is the paper's GPU size ({sizes}, 8+8 transformer blocks, trained in bf16) and needs "
            f"a CUDA GPU; this run would go on {device}. Leave out --preset for the CPU-sized defaults."
        )
    return dict(method.gpu_presets[name])


def method_for(config) -> Method:
    """The kind whose config `config` is."""
    for method in METHODS.values():
        if isinstance(config, method.config_type):
            return method
    raise TypeError(f"{type(config).__name__} is no autoencoder kind's config")


def with_kind_defaults(ae_config, train: TrainConfig) -> TrainConfig:
    """The training settings with the kind's own loss weights, and the objective's contrastive weight, wherever the
    user gave none."""
    missing = {k: v for k, v in method_for(ae_config).loss_weights.items() if getattr(train, k) is None}
    if train.gamma is None:
        missing["gamma"] = OBJECTIVES[train.objective]
    return replace(train, **missing) if missing else train
