"""The hyper-representation (Schürholt et al. 2021/2022) as a kind of autoencoder: per-neuron tokens of one CNN
architecture, the whole model at once, one latent vector per model (which is also its embedding).

The training models are kept in memory when they fit a quarter of the memory budget, else read from the zoo's
shards a batch at a time (core/rep/training_rows.py); the PCA start and the validation read them in blocks either way.

Training (both views of a batch): a function-preserving permutation (optional), per-neuron tokens, additive noise
and random erasing; the loss is gamma x NT-Xent between the two views' projections plus (1 - gamma) x the
reconstruction error of the clean tokens, normalised per layer (2022) unless turned off, plus, with a behaviour
weight, the behavioural loss of the first view's reconstruction (core/rep/behaviour.py).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from core.errors import UserError
from core.rep.augment import Permuter
from core.rep.autoencoder import AEConfig, HyperRepresentationAE
from core.rep.loop import TrainConfig, shuffled_batches
from core.rep.losses import nt_xent, reconstruction_loss
from core.rep.methods.base import chunks, make_behaviour
from core.rep.pca import principal_directions
from core.rep.prepare import PreparedZoo
from core.rep.sane import aggregate
from core.rep.tokens import TokenLayout, add_noise, detokenize, random_erase, token_layout, tokenize
from core.rep.training_rows import StoredRows, model_rows, training_rows
from core.store.budget import chunk_rows, share_bytes
from core.zoo.model_zoo import Zoo


def token_std(prepared: PreparedZoo, layout: TokenLayout) -> torch.Tensor:
    """[tokens, 1]: the std of each token's layer (a CNN is standardised one layer at a time)."""
    return prepared.layer_std[layout.token_layer].unsqueeze(1)


def pca_start(flat: torch.Tensor | StoredRows, layout: TokenLayout, rank: int, seed: int):
    """(mean [tokens x width], directions [<= rank, tokens x width]) of the training tokens, for the linear path's
    start. Tokens are the standardised weights rearranged and zero-padded, so the PCA of the weights, read in blocks
    of models, gives theirs. Its [m, m] matrix (m = min(models, params); float64) with eigh's eigenvectors and
    workspace, about three copies, must fit a quarter of the memory budget, else the PCA is that of a seeded sample
    of the training models that does: a start, not a result. Two blocks of rows (float64, with their centred
    copies) take an eighth."""
    count, params = len(flat), layout.spec.n_params
    rows, most = torch.arange(count), math.isqrt(share_bytes() // (3 * 8))
    if min(count, params) > most:
        rows = torch.from_numpy(np.sort(np.random.default_rng([seed, 3]).choice(count, most, replace=False)))
    parts = rows.split(max(1, share_bytes(1 / 8) // (4 * 8 * params)))

    def blocks(first: int):
        for part in parts[first:]:
            yield model_rows(flat, part).cpu()

    mean, directions = principal_directions(blocks, rank)
    return tokenize(layout, mean.unsqueeze(0)).flatten(), tokenize(layout, directions).flatten(1)


class HyperRepTrainer:
    """The per-neuron autoencoder's part of the loop: its model, start, batches, losses and validation criterion."""

    def __init__(self, prepared: PreparedZoo, config: AEConfig, train: TrainConfig, generator, device: str):
        self.prepared, self.config, self.train, self.generator, self.device = (
            prepared, config, train, generator, device
        )  # fmt: skip
        self.layout = token_layout(prepared.zoo.spec)
        self.mask = self.layout.mask.to(device)
        self.token_std = token_std(prepared, self.layout).to(device)
        self.device_layout = self.layout.to(device)
        self.permute = Permuter(prepared.zoo.spec, train.permute_probability, train.seed, generator, device)
        rows = prepared.rows("train")
        self.flat = training_rows(prepared, rows, device)
        self.rows = torch.from_numpy(rows).to(device)  # zoo-table rows of `flat`, looked up on the batch's device
        self.steps_per_epoch = math.ceil(len(self.flat) / train.batch_size)
        self.behaviour = make_behaviour(prepared, train, generator, device)
        self.entry_std = prepared.entry_std().to(device)
        self.entry_mean = prepared.entry_mean().to(device)

    def build(self) -> HyperRepresentationAE:
        return HyperRepresentationAE(self.layout.n_tokens, self.layout.width, self.config).to(self.device)

    def initialise(self, model: HyperRepresentationAE) -> None:
        if self.train.pca_init:
            model.init_linear_path(*pca_start(self.flat, self.layout, self.config.latent_dim, self.train.seed))

    def batches(self) -> list[torch.Tensor]:
        return shuffled_batches(len(self.flat), self.train.batch_size, self.generator, self.device)

    def view(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(augmented tokens, the clean tokens they must reconstruct)."""
        clean = tokenize(self.device_layout, self.permute(flat))
        scale = torch.ones(self.layout.n_tokens, 1, device=self.device)  # tokens are standardised
        noisy = add_noise(clean, self.mask, scale, self.train.noise, self.generator)
        return random_erase(noisy, self.train.erase_probability, self.train.erase_area, self.generator), clean

    def weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """Aligned (not standardised) flat weights of standardised tokens: what the population forward reads."""
        return detokenize(self.layout, tokens) * self.entry_std + self.entry_mean

    def losses(self, model: HyperRepresentationAE, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = model_rows(self.flat, batch)
        (view_a, target_a), (view_b, target_b) = self.view(flat), self.view(flat)
        _, recon, proj = model(torch.cat([view_a, view_b]))  # both views in one pass: half the kernel launches
        (recon_a, recon_b), (proj_a, proj_b) = recon.chunk(2), proj.chunk(2)
        # Tokens are standardised; scaling by the layer std gives raw-weight errors, which the loss then
        # normalises per layer or, in the ablation, leaves as they are.
        std = self.token_std
        rec = 0.5 * sum(
            reconstruction_loss(r * std, t * std, self.mask, std, self.train.layer_norm)
            for r, t in ((recon_a, target_a), (recon_b, target_b))
        )
        gamma = self.train.gamma
        con = nt_xent(proj_a, proj_b, self.train.temperature) if gamma > 0 else torch.zeros((), device=self.device)
        parts = {"loss": gamma * con + (1 - gamma) * self.train.structure_weight * rec}
        parts |= {"reconstruction": rec, "contrastive": con}
        if self.behaviour is not None:  # the first view's reconstruction against its clean original
            original = flat * self.entry_std + self.entry_mean
            beh = self.behaviour.loss(self.weights(recon_a), original, self.rows[batch], self.behaviour.queries())
            parts["loss"] = parts["loss"] + self.train.behaviour_weight * beh
            parts["behaviour"] = beh
        return parts

    @torch.no_grad()
    def validation(self, model: HyperRepresentationAE) -> dict[str, float]:
        """Layer-normalised reconstruction error of clean validation tokens and, with the behavioural loss, the
        behavioural distance of their reconstructions on fixed queries: means over models, a block at a time."""
        model.eval()
        val, std, error, behaviour = self.prepared.rows("val"), self.token_std, 0.0, 0.0
        block = chunk_rows(self.layout.n_tokens * self.layout.width, copies=8)
        queries = self.behaviour.fixed_queries(self.train.seed) if self.behaviour is not None else None
        for start, aligned in self.prepared.iter_aligned(val, block):
            rows = torch.from_numpy(val[start : start + len(aligned)])
            tokens = tokenize(self.layout, self.prepared.standardise(aligned)).to(self.device)
            recon = model.decode(model.encode(tokens))
            error += float(reconstruction_loss(recon * std, tokens * std, self.mask, std, True)) * len(rows)
            if self.behaviour is not None:
                distance = self.behaviour.loss(self.weights(recon), self.weights(tokens), rows, queries)
                behaviour += float(distance) * len(rows)
        figures = {"val_reconstruction": error / max(len(val), 1)}
        if self.behaviour is not None:
            figures["val_behaviour"] = behaviour / max(len(val), 1)
        return figures


class HyperRep:
    kind: ClassVar[str] = "hyperrep"
    config_type: ClassVar[type] = AEConfig
    title: ClassVar[str] = "Hyper-representation: one token per neuron, the whole model at once (2021/2022)"
    sampling_note: ClassVar[str] = ""
    # How a run's embedding is made (the first is new runs' default): the latent (the code) beside the encoder's
    # per-neuron states pooled per layer (mean and std of each layer's states); the latent alone; the states
    # pooled by depth like SANE's (core/rep/sane.py `aggregate`), or over all tokens; or per layer alone. Why the
    # default: with the PCA start the latent stays a linear map of the weights, which a probe of the flat weights
    # already contains (on a 96-model MNIST zoo the latent probes test accuracy exactly as its linear path does,
    # R^2 0.885); the pooled states are nonlinear and permutation-invariant within a layer. Probe R^2 of test
    # accuracy / epoch on bench/paper.py's three quick MNIST zoos (seeds 0, 1, 2): latent+layerstd 0.948 / 0.926,
    # 0.963 / 0.939, 0.968 / 0.941; latent 0.905 / 0.879, 0.884 / 0.845, 0.949 / 0.863; layerstd 0.890 / 0.934,
    # 0.962 / 0.888, 0.960 / 0.896; s(W) 0.905 / 0.861, 0.954 / 0.917, 0.952 / 0.917. On the shipped digits zoo:
    # latent+layerstd 0.982 / 0.984, latent 0.989 / 0.965.
    aggregations: ClassVar[tuple[str, ...]] = ("latent+layerstd", "latent", "depthstd", "meanstd", "layerstd")
    unrecorded_aggregation: ClassVar[str] = "latent"
    # The behavioural loss alone (bench/frontier.py, default zoo): held-out reconstructions keep 102% of accuracy
    # (the weight-space loss alone: 98%, both: 101%) and generated models beat the noise baseline at all 5 novelty
    # levels; the price is weight-space fidelity (reconstruction R^2 0.90 against 0.98), not function.
    loss_weights: ClassVar[dict[str, float]] = {"structure_weight": 0.0, "behaviour_weight": 1.0}
    gpu_presets: ClassVar[dict[str, dict]] = {}

    def check_zoos(self, zoos: list[Zoo]) -> None:
        if len(zoos) > 1:
            names = ", ".join(z.spec.name for z in zoos)
            raise UserError(
                f"the zoo holds {len(zoos)} architectures ({names}); the per-neuron autoencoder reads one "
                "architecture: train SANE (--kind sane) on the whole zoo"
            )
        if not zoos[0].spec.plain_units:
            raise UserError(
                f"the per-neuron autoencoder reads the CNN family, not {zoos[0].spec.name}: train SANE (--kind sane)"
            )

    def trainer(self, parts: list[PreparedZoo], config: AEConfig, train: TrainConfig, generator, device: str):
        return HyperRepTrainer(parts[0], config, train, generator, device)

    def shape(self, parts: list[PreparedZoo], config: AEConfig) -> dict:
        layout = token_layout(parts[0].zoo.spec)
        return {"n_tokens": layout.n_tokens, "token_width": layout.width}

    def build(self, config: AEConfig, shape: dict) -> HyperRepresentationAE:
        return HyperRepresentationAE(shape["n_tokens"], shape["token_width"], config)

    @torch.no_grad()
    def encode(self, model, prepared: PreparedZoo, weights: torch.Tensor, device: str) -> np.ndarray:
        model.eval().to(device)
        tokens = tokenize(token_layout(prepared.zoo.spec), prepared.standardise(weights))
        return torch.cat([model.encode(tokens[part].to(device)).float().cpu() for part in chunks(len(tokens))]).numpy()

    @torch.no_grad()
    def decode(self, model, prepared: PreparedZoo, codes: torch.Tensor, device: str) -> torch.Tensor:
        model.eval().to(device)
        layout = token_layout(prepared.zoo.spec)
        parts = [detokenize(layout, model.decode(codes[part].to(device)).float().cpu()) for part in chunks(len(codes))]
        return prepared.destandardise(torch.cat(parts))

    def embed(self, model, prepared, weights, device: str, aggregations: tuple[str, ...]) -> dict[str, np.ndarray]:
        """{aggregation: [N, dim]}: the latent itself, or the encoder's token states pooled by depth."""
        tokens = tokenize(token_layout(prepared.zoo.spec), prepared.standardise(weights))
        return self._embed_tokens(model, prepared, tokens, device, aggregations)

    @torch.no_grad()
    def _embed_tokens(self, model, prepared, tokens: torch.Tensor, device: str, aggregations) -> dict[str, np.ndarray]:
        model.eval().to(device)
        layers = token_layout(prepared.zoo.spec).token_layer.to(device)
        parts = {how: [] for how in aggregations}
        for part in chunks(len(tokens)):
            batch = tokens[part].to(device)
            states = model.token_states(batch)  # the transformer once; the latent is computed from its states
            latent = model.latent_of(batch, states)
            for how in aggregations:
                parts[how].append(_pooled(latent, states, how, layers).float().cpu())
        return {how: torch.cat(chunked).numpy() for how, chunked in parts.items()}

    @torch.no_grad()
    def code_embedding(self, model, prepared, codes: np.ndarray, aggregation: str) -> np.ndarray:
        """The code itself for the latent; else the pooled encoder states of the tokens it decodes to."""
        if aggregation == "latent":
            return np.asarray(codes, dtype=np.float32)
        model.eval().cpu()
        tokens = torch.cat([model.decode(torch.as_tensor(codes[part]).float()) for part in chunks(len(codes))])
        return self._embed_tokens(model, prepared, tokens, "cpu", (aggregation,))[aggregation]


def layer_pooled(states: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
    """[B, tokens, d] token states and each token's layer [tokens] -> [B, 2 x layers x d]: the mean of each layer's
    token states, then their standard deviation, layer by layer (a layer of one token has spread 0)."""
    members = [layers == layer for layer in layers.unique(sorted=True)]
    means = [states[:, mask].mean(1) for mask in members]
    return torch.cat(means + [states[:, mask].std(1, correction=0) for mask in members], dim=1)


def _pooled(latent: torch.Tensor, states: torch.Tensor, how: str, layers: torch.Tensor) -> torch.Tensor:
    """One aggregation of a batch: the latent, the per-layer pooling, both side by side, or SANE's by depth."""
    if how == "latent":
        return latent
    if how == "layerstd":
        return layer_pooled(states, layers)
    if how == "latent+layerstd":
        return torch.cat([latent, layer_pooled(states, layers)], dim=1)
    return aggregate(states, how, layers)
