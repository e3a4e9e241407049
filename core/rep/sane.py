"""SANE: a sequence autoencoder over weight tokens, trained on windows (Schürholt, Mahoney and Borth, 2024).

The per-neuron autoencoder reads a whole model at once, so its memory grows with the model. SANE reads a
window of `window` consecutive tokens of the sequence (core/rep/sequence.py), placed by their layer and their place
within it (`Positions`), and keeps one latent vector per token, so a training step costs the same whatever the
model's size (core/rep/windows.py cuts an epoch into windows). A model's
embedding aggregates its token latents over the whole sequence (by default their mean), computed window by
window; decoding the whole sequence also goes window by window, each with `halo` tokens of context on both
sides that are encoded or decoded but not kept ("haloing"), so that no token sits at the edge of what the
transformer saw.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from core.errors import UserError
from core.rep.blocks import check_sizes, transformer
from core.rep.losses import nt_xent
from core.settings import setting


@dataclass(frozen=True)
class SANEConfig:
    """Sized for a 2-core CPU. The paper used tokens of 288 entries, windows of 256 (64 for small CNNs),
    d_model 1024-2048, 8 layers and 128 latent entries per token on GPUs."""

    token_width: int = setting(64, "token width (entries per token)")
    window: int = setting(32, "window (tokens per training step)")
    halo: int = setting(8, "halo (context tokens each side)")
    d_model: int = setting(128, "transformer width")
    heads: int = setting(4, "attention heads (must divide the width)")
    encoder_layers: int = setting(2, "transformer layers of the encoder")
    decoder_layers: int = setting(2, "transformer layers of the decoder")
    feedforward: int = setting(256, "feed-forward width of each transformer layer")
    latent_dim: int = setting(32, "embedding size per token")
    projection_dim: int = setting(32, "size of the contrastive projection")
    dropout: float = setting(0.0, "dropout inside the transformer")
    max_layers: int = setting(1024, "layer-position table: the most layers a model can have")

    def __post_init__(self) -> None:
        if self.token_width < 1 or self.window < 2 or self.halo < 0 or self.max_layers < 1:
            raise UserError("sane: token width >= 1, window >= 2, halo >= 0 and max layers >= 1 are needed")
        if self.window - 2 * self.halo < 1:
            raise UserError(f"sane: a window of {self.window} tokens keeps none with a halo of {self.halo} each side")
        check_sizes(self)
        if self.d_model % 2:
            raise UserError(f"sane: the width must be even (sine and cosine pairs), got {self.d_model}")

    def to_json(self) -> dict:
        return asdict(self)


# The official sizes (the SANE code's defaults): tokens of 288 entries, 8 transformer blocks in the encoder and 8 in
# the decoder, 16 heads, 128 latent entries per token; width 2048 with windows of 256 for ResNets, width 1024 with
# windows of 64 for small CNNs; AdamW at learning rate 1e-4 (a training setting: `ae train` applies it unless --lr is
# given). Trained on GPUs with mixed precision; the loop runs CUDA steps in bf16. The halo (a quarter of the window
# each side) and the 4x feed-forward width are our choices.
# Their schedule: the SANE code's OneCycleLR warms up, then anneals to almost zero over thousands of steps. A small zoo
# gives one or two steps per epoch, so a decay to zero leaves the run's second half at almost no rate (the 48-model
# zoo did not learn in 120 steps at 1e-4 on an H200): the presets warm up for 5 epochs as every run does and decay to
# a tenth of the rate, and the learning check (core/rep/learning_check.py) says when a higher --lr is needed.
PRESET_SCHEDULE = dict(lr=1e-4, warmup_epochs=5, lr_floor=0.1)
PRESETS: dict[str, dict] = {
    "paper": dict(token_width=288, window=256, halo=32, d_model=2048, heads=16, encoder_layers=8, decoder_layers=8,
                  feedforward=8192, latent_dim=128, projection_dim=128, **PRESET_SCHEDULE),
    "paper-cnn": dict(token_width=288, window=64, halo=8, d_model=1024, heads=16, encoder_layers=8,
                      decoder_layers=8, feedforward=4096, latent_dim=128, projection_dim=128, **PRESET_SCHEDULE),
}  # fmt: skip


class Positions(nn.Module):
    """Where a token sits: a learned embedding of its layer plus a sinusoidal code of its place within the layer.

    No table grows with the sequence: the learned tables of sequence and within-layer position (max_tokens x
    d_model each, with their optimiser state) made SANE's memory grow 1.59x over 106x the parameters. The place in
    the whole sequence is not read at all: (layer, place in layer) already names every token, and without it a
    window's outputs do not depend on where a model's sequence puts it (what the layers before it hold)."""

    def __init__(self, config: SANEConfig):
        super().__init__()
        self.layers = nn.Embedding(config.max_layers, config.d_model)
        nn.init.normal_(self.layers.weight, std=0.02)
        half = config.d_model // 2
        frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half) / half)
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        angle = positions[..., 2:3].to(self.frequencies.dtype) * self.frequencies
        return self.layers(positions[..., 1]) + torch.cat([angle.sin(), angle.cos()], dim=-1)


class SANE(nn.Module):
    def __init__(self, config: SANEConfig):
        super().__init__()
        d = config.d_model
        self.config = config
        self.embed = nn.Linear(config.token_width, d)
        self.encoder_positions = Positions(config)
        self.encoder = transformer(config, config.encoder_layers)
        self.to_latent = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, config.latent_dim))
        self.from_latent = nn.Linear(config.latent_dim, d)
        self.decoder_positions = Positions(config)
        self.decoder = transformer(config, config.decoder_layers)
        self.unembed = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, config.token_width))
        self.projection = nn.Sequential(
            nn.Linear(config.latent_dim, config.projection_dim),
            nn.GELU(),
            nn.Linear(config.projection_dim, config.projection_dim),
        )

    def encode(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[B, L, width] tokens and [B or 1, L, 3] positions -> [B, L, latent]."""
        return self.to_latent(self.encoder(self.embed(tokens) + self.encoder_positions(positions)))

    def decode(self, latents: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[B, L, latent] -> [B, L, width]."""
        return self.unembed(self.decoder(self.from_latent(latents) + self.decoder_positions(positions)))


def windows(n_tokens: int, window: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Cover 0..n_tokens with windows of at most `window` tokens whose outer `halo` tokens are context:
    [(context_start, context_end, keep_start, keep_end)], the kept ranges tiling the sequence exactly."""
    if n_tokens <= window:
        return [(0, n_tokens, 0, n_tokens)]
    step = window - 2 * halo
    if step < 1:
        raise ValueError(f"window {window} leaves no tokens to keep with a halo of {halo} on each side")
    spans = []
    for keep_start in range(0, n_tokens, step):
        keep_end = min(keep_start + step, n_tokens)
        start = min(max(0, keep_start - halo), n_tokens - window)
        spans.append((start, start + window, keep_start, keep_end))
    return spans


def _windowed(apply, inputs: torch.Tensor, positions: torch.Tensor, window: int, halo: int, width: int):
    out = torch.empty(*inputs.shape[:2], width, dtype=inputs.dtype, device=inputs.device)
    for start, end, keep_start, keep_end in windows(inputs.shape[1], window, halo):
        result = apply(inputs[:, start:end], positions[start:end].unsqueeze(0))
        out[:, keep_start:keep_end] = result[:, keep_start - start : keep_end - start]
    return out


@torch.no_grad()
def encode_sequence(model: SANE, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, N, width] whole sequences -> [B, N, latent], window by window with halo context."""
    c = model.config
    return _windowed(model.encode, tokens, positions, c.window, c.halo, c.latent_dim)


@torch.no_grad()
def decode_sequence(model: SANE, latents: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, N, latent] -> [B, N, width], window by window with halo context."""
    c = model.config
    return _windowed(model.decode, latents, positions, c.window, c.halo, c.token_width)


AGGREGATIONS = ("depthstd", "depth", "mean", "max", "meanstd")
# Parts of the network's depth the "depth" aggregations pool over. Probe R^2 of test accuracy (SANE at the CPU-sized
# defaults; per-neuron AE on the same zoo in brackets): a 48-CNN zoo at 36 epochs: depthstd 0.967, depth 0.972, mean
# 0.876, meanstd 0.953 (0.988); another 48-CNN zoo at 12 / 36 epochs: depthstd 0.964 / 0.965, depth 0.949 / 0.944,
# mean 0.763 / 0.834 (0.971); a 48-ResNet zoo: depthstd 0.993, depth 0.984, mean 0.932, meanstd 0.975. With 2, 3,
# 6 or 8 parts the CNN figures were no better.
DEPTH_PARTS = 4


def depth_parts(layers: torch.Tensor, parts: int = DEPTH_PARTS) -> list[torch.Tensor]:
    """Masks over tokens, one per consecutive part of the network's depth: a token of layer l of L layers falls in
    part floor(l * parts / L); a part no layer falls in (a network of fewer layers than parts) takes the layer at
    its depth, floor(part * L / parts)."""
    count = int(layers.max()) + 1
    masks = []
    for part in range(parts):
        members = layers * parts // count == part
        masks.append(members if members.any() else layers == part * count // parts)
    return masks


def aggregate(token_latents: torch.Tensor, how: str, layers: torch.Tensor) -> torch.Tensor:
    """A model's embedding from its token latents [B, N, latent] and each token's layer `layers` [N]: the mean and
    standard deviation of the latents in each quarter of the network's depth, all side by side ([B, 2 *
    DEPTH_PARTS * latent]); the means alone ("depth"); the mean of all tokens (the paper's choice); their
    entry-wise max; or mean and standard deviation of all tokens. All are defined for any sequence length and
    depth, so models of different architectures share one embedding space."""
    if how in ("depth", "depthstd"):
        parts = [token_latents[:, members] for members in depth_parts(layers)]
        spreads = [part.std(1, correction=0) for part in parts] if how == "depthstd" else []
        return torch.cat([part.mean(1) for part in parts] + spreads, dim=1)
    if how == "mean":
        return token_latents.mean(1)
    if how == "max":
        return token_latents.amax(1)
    if how == "meanstd":
        return torch.cat([token_latents.mean(1), token_latents.std(1, correction=0)], dim=1)
    raise UserError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")


def sane_losses(
    model: SANE,
    view_a: torch.Tensor,
    view_b: torch.Tensor,
    target_a: torch.Tensor,
    target_b: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    gamma: float,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reconstruction, contrastive, the first view's reconstructed windows) on windows of two augmented views
    [B, L, width], with positions [B or 1, L, 3] and the entries that count, `mask` [B or 1, L, width].

    Tokens are standardised per layer over the training zoo, so the masked mean squared error is the
    layer-wise normalised reconstruction loss. The contrastive loss pulls together the two views' window
    embeddings (mean token latents) through the projection head."""
    both = positions if positions.shape[0] == 1 else torch.cat([positions, positions])
    latent = model.encode(torch.cat([view_a, view_b]), both)  # both views in one pass: half the kernel launches
    (latent_a, latent_b), (recon_a, recon_b) = latent.chunk(2), model.decode(latent, both).chunk(2)
    entries = mask.expand_as(target_a).sum().clamp_min(1)
    rec = 0.5 * sum(((r - t) * mask).pow(2).sum() / entries for r, t in ((recon_a, target_a), (recon_b, target_b)))
    if gamma > 0:
        con = nt_xent(model.projection(latent_a.mean(1)), model.projection(latent_b.mean(1)), temperature)
    else:
        con = torch.zeros((), device=view_a.device)
    return rec, con, recon_a
