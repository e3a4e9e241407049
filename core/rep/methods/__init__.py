"""The autoencoder kinds, by the name runs are stored under. Add a kind here (see base.py)."""

from __future__ import annotations

from dataclasses import replace

from core.errors import UserError
from core.rep.loop import TrainConfig
from core.rep.methods.base import Method
from core.rep.methods.hyperrep import HyperRep
from core.rep.methods.sane import Sane

METHODS: dict[str, Method] = {method.kind: method for method in (HyperRep(), Sane())}
KINDS = tuple(METHODS)


def method_named(kind: str) -> Method:
    if kind not in METHODS:
        raise UserError(f"unknown autoencoder kind {kind!r}; choose one of {', '.join(KINDS)}")
    return METHODS[kind]


def method_for(config) -> Method:
    """The kind whose config `config` is."""
    for method in METHODS.values():
        if isinstance(config, method.config_type):
            return method
    raise TypeError(f"{type(config).__name__} is no autoencoder kind's config")


def with_kind_defaults(ae_config, train: TrainConfig) -> TrainConfig:
    """The training settings with the kind's own loss weights wherever the user gave none."""
    missing = {k: v for k, v in method_for(ae_config).loss_weights.items() if getattr(train, k) is None}
    return replace(train, **missing) if missing else train
