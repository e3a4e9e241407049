"""What an autoencoder kind is to the rest of the engine: the `Method` interface.

A kind says which zoos it reads, how it trains (a `Trainer` for the shared loop, core/rep/loop.py), how it builds
its model, and how a model's weights become a latent code and back. The codes are what samplers fit and draw from
(core/gen/); the embedding is what the map and the probes use. To add a kind, write a module beside hyperrep.py
and sane.py and register it in core/rep/methods/__init__.py; nothing else tests for a kind.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from core.rep.behaviour import Behaviour
from core.rep.loop import TrainConfig, Trainer
from core.rep.prepare import PreparedZoo
from core.zoo.model_zoo import Zoo


class Method(Protocol):
    kind: ClassVar[str]  # the name runs are stored under ("hyperrep", "sane")
    config_type: ClassVar[type]  # its frozen config dataclass
    title: ClassVar[str]  # one line for pages and help texts
    sampling_note: ClassVar[str]  # what sampling from this kind's codes means, for the Generate page ("" if plain)
    # Ways to pool a model's latents into one embedding, the default first; one entry when a model has one latent.
    aggregations: ClassVar[tuple[str, ...]]
    # The aggregation of a run whose config records none (runs made before they recorded it, with the default then).
    unrecorded_aggregation: ClassVar[str]
    # The kind's own loss weights, used where the training settings give none (measured per kind: bench/frontier.py).
    loss_weights: ClassVar[dict[str, float]]
    # Named sets of settings sized for a GPU (`ae train --preset`); refused on other devices.
    gpu_presets: ClassVar[dict[str, dict]]

    def check_zoos(self, zoos: list[Zoo]) -> None:
        """Raise a UserError saying why, when this kind cannot read these architectures."""
        ...

    def trainer(
        self, parts: list[PreparedZoo], config: Any, train: TrainConfig, generator: torch.Generator, device: str
    ) -> Trainer: ...

    def shape(self, parts: list[PreparedZoo], config: Any) -> dict:
        """What `build` needs besides the config to make the model again (stored in the run's config.json)."""
        ...

    def build(self, config: Any, shape: dict) -> nn.Module: ...

    def encode(self, model: nn.Module, prepared: PreparedZoo, weights: torch.Tensor, device: str) -> np.ndarray:
        """Codes [N, code] of weight vectors [N, params] (aligned, not standardised)."""
        ...

    def decode(self, model: nn.Module, prepared: PreparedZoo, codes: torch.Tensor, device: str) -> torch.Tensor:
        """Weight vectors [N, params] (aligned, not standardised) of codes [N, code]."""
        ...

    def embed(
        self, model: nn.Module, prepared: PreparedZoo, weights: torch.Tensor, device: str, aggregations: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """{aggregation: embeddings [N, dim]} of weight vectors, for each aggregation asked for."""
        ...

    def code_embedding(
        self, model: nn.Module, prepared: PreparedZoo, codes: np.ndarray, aggregation: str
    ) -> np.ndarray:
        """The embeddings [N, dim] of codes [N, code] of `prepared`'s architecture, without decoding them (what a
        probe of the map reads)."""
        ...


def chunks(n: int, size: int = 256) -> list[slice]:
    """Slices of at most `size` rows covering 0..n: models are encoded and decoded a chunk at a time."""
    return [slice(start, min(start + size, n)) for start in range(0, max(n, 1), size)]


def make_behaviour(prepared: PreparedZoo, train: TrainConfig, generator, device: str) -> Behaviour | None:
    """The behavioural loss of this architecture's models, or None when its weight is 0."""
    if train.behaviour_weight <= 0:
        return None
    return Behaviour(prepared.zoo, train.queries, train.behaviour_distance, train.query_batch, generator, device)
