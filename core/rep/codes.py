"""Latent codes of models, for either kind of autoencoder run: the vectors the samplers fit and draw from, and
the way back from a code to weights.

- per-neuron hyper-representation: a model's code is its one latent vector, which is also its map embedding;
- SANE: a model's code is the whole sequence of its token latents (encoded window by window with halo
  context), flattened, so a sampler models the joint density of all tokens; its map embedding aggregates them
  (core/sane.py `aggregate`).
  Decoding goes window by window with halos too, so a code of any length decodes with the memory of one window.

All functions take and return weights in the run's (aligned) weight space, not standardised.
"""

from __future__ import annotations

import numpy as np
import torch

from core.rep.prepare import PreparedZoo


def _sane_layout(run, prepared: PreparedZoo):
    from core.rep.train import sane_layout

    return sane_layout(prepared.zoo.spec, run.ae_config)


def _chunks(n: int, size: int = 256):
    return [slice(start, min(start + size, n)) for start in range(0, max(n, 1), size)]


def _latent_chunks(run, prepared: PreparedZoo, weights: torch.Tensor, device: str):
    """SANE: token latents [chunk, tokens, latent] of weight vectors [N, params], a chunk of models at a time."""
    from core.rep.sane import encode_sequence
    from core.rep.sequence import to_sequence

    layout = _sane_layout(run, prepared)
    positions = layout.positions.to(device)
    run.model.eval().to(device)
    for part in _chunks(len(weights)):
        sequence = to_sequence(layout, prepared.standardise(weights[part])).to(device)
        yield encode_sequence(run.model, sequence, positions).float().cpu()


@torch.no_grad()
def token_latents(run, prepared: PreparedZoo, weights: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """SANE: [N, tokens, latent] token latents of weight vectors [N, params]."""
    return torch.cat(list(_latent_chunks(run, prepared, weights, device)))


@torch.no_grad()
def aggregated_embeddings(
    run, prepared: PreparedZoo, weights: torch.Tensor, aggregations: tuple[str, ...], device: str = "cpu"
) -> dict[str, np.ndarray]:
    """SANE: {aggregation: [N, embedding]}, aggregating each chunk of models as it is encoded, so that all
    token latents of a large zoo are never held at once."""
    from core.rep.sane import aggregate

    parts = {how: [] for how in aggregations}
    for latents in _latent_chunks(run, prepared, weights, device):
        for how in aggregations:
            parts[how].append(aggregate(latents, how))
    return {how: torch.cat(chunks).numpy() for how, chunks in parts.items()}


@torch.no_grad()
def encode_codes(run, prepared: PreparedZoo, weights: torch.Tensor, device: str = "cpu") -> np.ndarray:
    """[N, code] float32: what a sampler fits (per-neuron: the latent; SANE: all token latents, flattened)."""
    if run.kind == "sane":
        return token_latents(run, prepared, weights, device).flatten(1).numpy()
    from core.rep.tokens import tokenize

    run.model.eval().to(device)
    tokens = tokenize(prepared.layout, prepared.standardise(weights))
    parts = [run.model.encode(tokens[part].to(device)).float().cpu() for part in _chunks(len(tokens))]
    return torch.cat(parts).numpy()


@torch.no_grad()
def decode_codes(run, prepared: PreparedZoo, codes: np.ndarray | torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """Weights [N, params] decoded from codes [N, code]."""
    codes = torch.as_tensor(codes, dtype=torch.float32)
    run.model.eval().to(device)
    if run.kind == "sane":
        from core.rep.sane import decode_sequence
        from core.rep.sequence import from_sequence

        layout = _sane_layout(run, prepared)
        positions = layout.positions.to(device)
        latents = codes.view(len(codes), layout.n_tokens, -1)
        parts = [
            from_sequence(layout, decode_sequence(run.model, latents[part].to(device), positions).float().cpu())
            for part in _chunks(len(codes))
        ]
    else:
        from core.rep.tokens import detokenize

        parts = [
            detokenize(prepared.layout, run.model.decode(codes[part].to(device)).float().cpu())
            for part in _chunks(len(codes))
        ]
    return prepared.destandardise(torch.cat(parts))


@torch.no_grad()
def map_embeddings(run, prepared: PreparedZoo, weights: torch.Tensor, device: str = "cpu") -> np.ndarray:
    """[N, embedding]: the embedding that the map and the probes use (SANE: the token latents aggregated as
    the run says, by default their mean)."""
    if run.kind == "sane":
        return aggregated_embeddings(run, prepared, weights, (run.aggregation,), device)[run.aggregation]
    return encode_codes(run, prepared, weights, device)
