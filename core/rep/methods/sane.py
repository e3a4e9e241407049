"""SANE (Schürholt, Mahoney and Borth, ICML 2024) as a kind of autoencoder: fixed-width sequence tokens of any
architecture, trained on windows, one latent per token.

An epoch tiles every training model's whole sequence with windows (core/rep/windows.py) and trains on them in
shuffled batches of windows of one architecture; the two views of a window differ by noise (and by a permutation
of the window's model, when that augmentation is on). With several architectures, each one's windows
come in batches of their own, in a shuffled order. A model's code is all of its
token latents (encoded window by window with halo context), flattened, so a sampler models their joint density;
its embedding aggregates them (core/rep/sane.py `aggregate`). Decoding goes window by window too, so a code of any
length decodes with the memory of one window.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from core.errors import UserError
from core.rep.augment import Permuter
from core.rep.loop import TrainConfig, shuffled_batches
from core.rep.methods.base import chunks, make_behaviour
from core.rep.prepare import PreparedZoo
from core.rep.sane import (
    AGGREGATIONS,
    PRESETS,
    SANE,
    SANEConfig,
    aggregate,
    decode_sequence,
    encode_sequence,
    sane_losses,
)
from core.rep.sequence import SequenceLayout, from_sequence, sequence_layout, to_sequence
from core.rep.training_rows import model_rows, training_rows
from core.rep.windows import StoredEntries, Windows, epoch_windows, splice, window_tokens
from core.store.budget import chunk_rows
from core.zoo.arch import Spec, param_names
from core.zoo.model_zoo import Zoo

# Whole-model copies a behavioural-loss step holds per window: the standardised rows, the aligned and the decoded
# models, each layer's weights as the forward reads them, and the gradients of the last two.
BEHAVIOUR_COPIES = 8
# A chunk's copy of its whole models is also kept under 16 MB: larger tensors come from glibc's mmap (page faults on
# every step) instead of its reused heap. Measured on the 1.2 M-parameter models of bench/out_of_core.py, 32 windows a
# step on our 2-core CPU: chunks of 3-4 models 0.62-0.72 s a step, of 6 0.89 s, of 8-12 1.26-1.38 s, the whole batch
# of 32 at once 0.77-0.84 s (and 3-6x the step's memory).
BEHAVIOUR_CHUNK_BYTES = 16 << 20


def sane_layout(spec: Spec, config: SANEConfig) -> SequenceLayout:
    return sequence_layout(param_names(spec), config.token_width)


class _Part:
    """One architecture's training data: its sequence layout, standardised training models, (when asked) its
    function-preserving permutations, and its behavioural loss (with a behaviour weight)."""

    def __init__(self, prepared: PreparedZoo, config: SANEConfig, train: TrainConfig, generator, device: str):
        self.prepared = prepared
        self.layout = sane_layout(prepared.zoo.spec, config)
        self.positions, self.mask = self.layout.positions.to(device), self.layout.mask.to(device)
        self.device_layout = self.layout.to(device)
        self.permute = Permuter(prepared.zoo.spec, train.permute_probability, train.seed, generator, device)
        rows = torch.from_numpy(prepared.rows("train"))
        self.flat = training_rows(prepared, prepared.rows("train"), device, StoredEntries)
        self.rows = rows.to(device)  # zoo-table rows of `flat`, looked up per batch on the batch's device
        self.behaviour = make_behaviour(prepared, train, generator, device)
        self.entry_std, self.entry_mean = prepared.entry_std().to(device), prepared.entry_mean().to(device)
        self.length = min(config.window, self.layout.n_tokens)
        # How many whole models a chunk of the behavioural loss holds (`behaviour_loss`).
        n_params = prepared.zoo.spec.n_params
        self.behaviour_chunk = chunk_rows(n_params, BEHAVIOUR_COPIES, share=0.25)
        if torch.device(device).type == "cpu":
            self.behaviour_chunk = min(self.behaviour_chunk, max(1, BEHAVIOUR_CHUNK_BYTES // (4 * n_params)))

    def windows(self, picked: Windows):
        """(tokens, positions, loss mask, flat entries) of a batch of windows, each model permuted or not."""
        pick = self.permute.draw(len(picked))
        entries = None if pick is None else lambda entry: self.permute.entries(pick, entry)
        return window_tokens(self.device_layout, self.flat, picked, self.length, entries)

    def weights(self, sequence: torch.Tensor) -> torch.Tensor:
        """Aligned (not standardised) flat weights of standardised token sequences."""
        return from_sequence(self.layout, sequence) * self.entry_std + self.entry_mean

    def aligned_models(self, model: torch.Tensor) -> torch.Tensor:
        """Whole aligned (not standardised) training models [len(model), params]."""
        return torch.addcmul(self.entry_mean, self.models(model), self.entry_std)

    def spliced(self, aligned: torch.Tensor, entry: torch.Tensor, mask: torch.Tensor, recon: torch.Tensor):
        """`aligned` (each window's whole model) with the window's counted entries replaced by their reconstruction:
        the window's share of the function. Only the window's entries are destandardised, so the whole-model
        arithmetic stays out of autograd (a window is a few percent of a large model: the full-size products and
        their gradients were most of a step's time)."""
        at = torch.where(mask, entry, 0)
        return splice(aligned, entry, mask, recon * self.entry_std[at] + self.entry_mean[at])

    def models(self, model: torch.Tensor) -> torch.Tensor:
        """Whole standardised training models [len(model), params], from memory or from the store."""
        return model_rows(self.flat, model)

    def behaviour_loss(self, model: torch.Tensor, entry: torch.Tensor, mask: torch.Tensor, recon: torch.Tensor):
        """Mean behavioural distance between each window's model with the window decoded (every other entry clean)
        and the model itself: the forward pass runs over whole models, the decoder over one window. Whole models
        come a chunk at a time, within a quarter of the memory budget (and on the CPU BEHAVIOUR_CHUNK_BYTES); where
        a batch needs several chunks, each chunk's whole-model tensors are made again in the backward pass
        (activation checkpointing) rather than kept for every window at once (32 ResNet-18s are 1.4 GB a copy)."""
        queries, step = self.behaviour.queries(), self.behaviour_chunk
        if step >= len(model):
            return self._behaviour(model, entry, mask, recon, queries)
        total = recon.new_zeros(())
        for start in range(0, len(model), step):
            piece = slice(start, start + step)
            args = (model[piece], entry[piece], mask[piece], recon[piece], queries)
            total = total + checkpoint(self._behaviour, *args, use_reentrant=False) * len(args[0])
        return total / len(model)

    def _behaviour(self, model, entry, mask, recon, queries) -> torch.Tensor:
        original = self.aligned_models(model)
        decoded = self.spliced(original, entry, mask, recon)
        return self.behaviour.loss(decoded, original, self.rows[model], queries)


class SANETrainer:
    def __init__(self, parts: list[PreparedZoo], config: SANEConfig, train: TrainConfig, generator, device: str):
        self.config, self.train, self.generator, self.device = config, train, generator, device
        self.parts = [_Part(p, config, train, generator, device) for p in parts]
        # A typical epoch's count: random offsets add a window for some models (the schedule's cosine then rests
        # at its end for those few steps).
        self.steps_per_epoch = sum(
            math.ceil(len(p.flat) * math.ceil(p.layout.n_tokens / p.length) / train.batch_size) for p in self.parts
        )
        layers = max(int(p.layout.positions[:, 1].max()) + 1 for p in self.parts)
        if layers > config.max_layers:
            raise UserError(f"the zoo's models have up to {layers} layers; raise max_layers to at least that")

    def build(self) -> SANE:
        return SANE(self.config).to(self.device)

    def initialise(self, model: SANE) -> None:
        """SANE starts from its random initialisation."""

    def batches(self) -> list[tuple[_Part, Windows]]:
        batches = []
        for part in self.parts:
            tiled = epoch_windows(len(part.flat), part.layout.n_tokens, self.config.window, self.generator)
            batches += [
                (part, tiled[picked])
                for picked in shuffled_batches(len(tiled), self.train.batch_size, self.generator, self.device)
            ]
        if len(self.parts) == 1:
            return batches
        order = torch.randperm(len(batches), generator=self.generator, device=self.device).tolist()
        return [batches[i] for i in order]

    def losses(self, model: SANE, batch: tuple[_Part, Windows]):
        part, picked = batch
        target_a, positions, mask, entry = part.windows(picked)
        # The same windows, through another permutation when augmenting; without augmentation the very same
        # entries, read once (from the store, reading them is most of a streamed step).
        target_b = part.windows(picked)[0] if part.permute.active else target_a
        noise, real = self.train.noise, part.device_layout.mask[positions[..., 0]]
        view_a = target_a + noise * torch.randn(target_a.shape, generator=self.generator, device=self.device) * real
        view_b = target_b + noise * torch.randn(target_b.shape, generator=self.generator, device=self.device) * real
        gamma, temperature = self.train.gamma, self.train.temperature
        rec, con, recon_a = sane_losses(model, view_a, view_b, target_a, target_b, mask, positions, gamma, temperature)
        parts = {"loss": gamma * con + (1 - gamma) * self.train.structure_weight * rec}
        parts |= {"reconstruction": rec, "contrastive": con}
        if part.behaviour is not None:
            beh = part.behaviour_loss(picked.model, entry, mask, recon_a)
            parts["loss"] = parts["loss"] + self.train.behaviour_weight * beh
            parts["behaviour"] = beh
        return parts

    @torch.no_grad()
    def validation(self, model: SANE) -> dict[str, float]:
        """Masked squared error of clean validation models, over every architecture's entries; with the
        behavioural loss, the behavioural distance of whole decoded models on fixed queries (mean over models)."""
        model.eval()
        error, entries, behaviour, models = 0.0, 0.0, 0.0, 0
        for part in self.parts:
            val = part.prepared.rows("val")
            for start, aligned in part.prepared.iter_aligned(val, chunk_rows(part.prepared.zoo.spec.n_params, 8)):
                rows = torch.from_numpy(val[start : start + len(aligned)])
                tokens = to_sequence(part.layout, part.prepared.standardise(aligned)).to(self.device)
                recon = decode_sequence(model, encode_sequence(model, tokens, part.positions), part.positions)
                error += float(((recon - tokens) * part.mask).pow(2).sum())
                entries += float(part.mask.sum()) * len(tokens)
                if part.behaviour is not None and len(rows):
                    queries = part.behaviour.fixed_queries(self.train.seed)
                    distance = part.behaviour.loss(part.weights(recon), part.weights(tokens), rows, queries)
                    behaviour, models = behaviour + float(distance) * len(rows), models + len(rows)
        figures = {"val_reconstruction": error / max(entries, 1.0)}
        if any(part.behaviour is not None for part in self.parts):
            figures["val_behaviour"] = behaviour / max(models, 1)
        return figures


class Sane:
    kind: ClassVar[str] = "sane"
    config_type: ClassVar[type] = SANEConfig
    title: ClassVar[str] = "SANE: fixed-width tokens, trained on windows; memory independent of model size (2024)"
    sampling_note: ClassVar[str] = (
        "a SANE run: the sampler works on every token latent of the anchors (encoded window by window with halo "
        "context), and new models are decoded window by window."
    )
    aggregations: ClassVar[tuple[str, ...]] = AGGREGATIONS
    unrecorded_aggregation: ClassVar[str] = "mean"  # the default of runs made before runs recorded theirs
    # Both losses (bench/frontier.py, 48-ResNet zoo, CPU-sized SANE): reconstructions keep 41% of accuracy after
    # BatchNorm re-estimation (the weight-space loss alone: 39%; the behavioural loss alone: 11%, chance: SANE's
    # behavioural loss sees one window at a time, and windows decoded without a weight-space target do not add up
    # to a working model), and generated ResNets keep 53% as generated against 47%.
    loss_weights: ClassVar[dict[str, float]] = {"structure_weight": 1.0, "behaviour_weight": 1.0}
    gpu_presets: ClassVar[dict[str, dict]] = PRESETS

    def check_zoos(self, zoos: list[Zoo]) -> None:
        """SANE reads any architecture, and several in one model."""

    def trainer(self, parts: list[PreparedZoo], config: SANEConfig, train: TrainConfig, generator, device: str):
        return SANETrainer(parts, config, train, generator, device)

    def shape(self, parts: list[PreparedZoo], config: SANEConfig) -> dict:
        longest = max(sane_layout(p.zoo.spec, config).n_tokens for p in parts)
        return {"n_tokens": longest, "token_width": config.token_width}

    def build(self, config: SANEConfig, shape: dict) -> SANE:
        return SANE(config)

    def token_latents(self, model: SANE, prepared: PreparedZoo, weights: torch.Tensor, device: str):
        """Token latents [chunk, tokens, latent] of weight vectors [N, params], a chunk of models at a time."""
        layout = sane_layout(prepared.zoo.spec, model.config)
        positions = layout.positions.to(device)
        model.eval().to(device)
        for part in chunks(len(weights)):
            sequence = to_sequence(layout, prepared.standardise(weights[part])).to(device)
            yield encode_sequence(model, sequence, positions).float().cpu()

    @torch.no_grad()
    def encode(self, model: SANE, prepared: PreparedZoo, weights: torch.Tensor, device: str) -> np.ndarray:
        return torch.cat(list(self.token_latents(model, prepared, weights, device))).flatten(1).numpy()

    @torch.no_grad()
    def decode(self, model: SANE, prepared: PreparedZoo, codes: torch.Tensor, device: str) -> torch.Tensor:
        model.eval().to(device)
        layout = sane_layout(prepared.zoo.spec, model.config)
        positions = layout.positions.to(device)
        latents = codes.view(len(codes), layout.n_tokens, -1)
        parts = [
            from_sequence(layout, decode_sequence(model, latents[part].to(device), positions).float().cpu())
            for part in chunks(len(codes))
        ]
        return prepared.destandardise(torch.cat(parts))

    def code_embedding(self, model: SANE, prepared: PreparedZoo, codes: np.ndarray, aggregation: str) -> np.ndarray:
        """The token latents a code holds, aggregated as the map's embedding is."""
        latents = torch.as_tensor(np.asarray(codes, dtype=np.float32)).view(len(codes), -1, model.config.latent_dim)
        return aggregate(latents, aggregation, sane_layout(prepared.zoo.spec, model.config).token_layer).numpy()

    @torch.no_grad()
    def embed(self, model, prepared, weights, device: str, aggregations: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Each chunk of models aggregated as it is encoded, so all token latents of a large zoo are never held
        at once."""
        parts = {how: [] for how in aggregations}
        layers = sane_layout(prepared.zoo.spec, model.config).token_layer
        for latents in self.token_latents(model, prepared, weights, device):
            for how in aggregations:
                parts[how].append(aggregate(latents, how, layers))
        return {how: torch.cat(pieces).numpy() for how, pieces in parts.items()}
