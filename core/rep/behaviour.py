"""The behavioural loss (Meynent, Melev, Schürholt, Kauermann and Borth 2025, "Structure Is Not Enough"): what a
decoded model computes, compared with what its original computes, on the same query inputs.

A weight-space loss reconstructs weights closely but not function: a small error in a few sensitive weights costs
accuracy that a mean squared error over all weights hardly sees. Running the decoded and the original weights
through the population forward pass (core/zoo/population.py, differentiable in the weights) on one batch of
queries, and comparing the outputs, prices exactly those errors. The original runs in evaluation mode, on the
running statistics it stores. A decoded model with BatchNorm runs on its batch statistics over the queries: its
statistics re-estimated, then its outputs, as decoded models are evaluated (core/gen/draw.py re-estimates them), so
the loss prices the weights that matter there rather than decoded running statistics that are replaced anyway.
Models of one architecture may differ in activation; each activation is one population.

Two distances, both a mean over models of each model's own value (so a batch gives the mean of what each model
alone would give):
- `kl`: KL(softmax(original) || softmax(decoded)), averaged over queries;
- `mse`: the squared error of the logits, divided by the variance of the original model's logits (scale-free).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import UserError
from core.zoo.backend import backend_for
from core.zoo.data import load_dataset
from core.zoo.model_zoo import Zoo
from core.zoo.population import StackedNet, stacked_net

QUERIES = ("train", "noise")  # the zoo's training images, or Gaussian noise images of their shape
DISTANCES = ("kl", "mse")


def output_distance(decoded: torch.Tensor, original: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over models of each model's distance between logits [models, queries, classes]."""
    if kind == "kl":
        target = F.log_softmax(original, dim=-1)
        per_query = (target.exp() * (target - F.log_softmax(decoded, dim=-1))).sum(-1)
        return per_query.mean(1).mean()
    if kind == "mse":
        scale = original.var(dim=(1, 2), correction=0).clamp_min(1e-8)
        return ((decoded - original).pow(2).mean(dim=(1, 2)) / scale).mean()
    raise UserError(f"unknown behaviour distance {kind!r}; choose one of {', '.join(DISTANCES)}")


class Behaviour:
    """The behavioural loss of one architecture's training models: their activations, the query source, and
    the population forward of each activation."""

    def __init__(self, zoo: Zoo, queries: str, distance: str, query_batch: int, generator, device: str):
        if queries not in QUERIES:
            raise UserError(f"unknown queries {queries!r}; choose one of {', '.join(QUERIES)}")
        self.spec, self.distance, self.query_batch = zoo.spec, distance, query_batch
        self.generator, self.device = generator, device
        self.activations = zoo.table["activation"].to_list()  # per zoo-table row
        # Most zoos use one activation: their models run as one population, with no look-up of rows on the host.
        self.only_activation = self.activations[0] if len(set(self.activations)) == 1 else None
        self.images = _query_images(zoo, queries).to(device)
        self.noise = queries == "noise"
        self.nets: dict[str, StackedNet] = {}

    def queries(self) -> torch.Tensor:
        """A fresh batch of query inputs [Q, C, H, W]."""
        if self.noise:
            shape = (self.query_batch, *self.images.shape[1:])
            return torch.randn(shape, generator=self.generator, device=self.device)
        pick = torch.randint(0, len(self.images), (self.query_batch,), generator=self.generator, device=self.device)
        return self.images[pick]

    def fixed_queries(self, seed: int) -> torch.Tensor:
        """The same queries every time (for a validation criterion that does not jitter)."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        if self.noise:
            return torch.randn((self.query_batch, *self.images.shape[1:]), generator=generator, device=self.device)
        count = min(self.query_batch, len(self.images))
        return self.images[torch.randperm(len(self.images), generator=generator, device=self.device)[:count]]

    def outputs(
        self, weights: torch.Tensor, rows: torch.Tensor, queries: torch.Tensor, batch_statistics: bool = False
    ) -> torch.Tensor:
        """Logits [models, queries, classes] of flat weights [models, params], the zoo-table rows `rows`; with
        `batch_statistics`, BatchNorm normalises by the queries' statistics instead of the stored ones."""
        if self.only_activation is not None:
            return self._forward(self.only_activation, weights, queries, batch_statistics)
        chosen = [self.activations[r] for r in rows.tolist()]
        groups = {a: [i for i, b in enumerate(chosen) if b == a] for a in sorted(set(chosen))}
        parts = {a: self._forward(a, weights[members], queries, batch_statistics) for a, members in groups.items()}
        if len(parts) == 1:
            return next(iter(parts.values()))
        order = torch.tensor([i for members in groups.values() for i in members], device=weights.device)
        return torch.cat(list(parts.values()))[torch.argsort(order)]

    def _forward(self, activation: str, weights: torch.Tensor, queries: torch.Tensor, batch_statistics: bool):
        if activation not in self.nets:
            conv = backend_for(self.device).conv  # the formulation this device runs fastest
            self.nets[activation] = stacked_net(self.spec.with_activation(activation), conv)
        net = self.nets[activation]
        if not batch_statistics:
            return net.forward(weights, queries, shared=True)
        index = torch.arange(len(queries), device=queries.device).expand(len(weights), -1)
        return net.train_forward(weights, net.batch_input(queries, index))[0]

    def loss(
        self, decoded: torch.Tensor, original: torch.Tensor, rows: torch.Tensor, queries: torch.Tensor
    ) -> torch.Tensor:
        """The distance between decoded and original models' outputs; gradients flow into `decoded` only."""
        with torch.no_grad():
            target = self.outputs(original, rows, queries)
        return output_distance(self.outputs(decoded, rows, queries, batch_statistics=True), target, self.distance)


def _query_images(zoo: Zoo, queries: str) -> torch.Tensor:
    """The zoo's training images (for noise queries, one of them: its shape)."""
    dataset = zoo.manifest.get("dataset", {})
    try:
        data = load_dataset(dataset.get("name", "unknown"), seed=dataset.get("seed", 0))
    except UserError as exc:
        if queries == "noise":
            shape = (zoo.spec.in_channels, zoo.spec.in_size, zoo.spec.in_size)
            return torch.zeros(1, *shape)
        raise UserError(
            f"the behavioural loss queries the zoo's training images, and its dataset is not available ({exc}); "
            "use --queries noise, or --behaviour-weight 0"
        ) from None
    return data.x_train if queries == "train" else data.x_train[:1]
