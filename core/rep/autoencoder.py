"""The hyper-representation autoencoder (Schürholt et al., NeurIPS 2021).

A transformer encoder reads a model's per-neuron tokens and compresses them into one latent vector; a
transformer decoder expands the latent back into tokens; a small projection head feeds the contrastive loss.
The compression concatenates the encoder's token outputs and maps them linearly to the latent (the decoder
mirrors it), rather than pooling or reading a CLS token: sequences are short and of fixed length, and this
keeps which-neuron-is-where information in the bottleneck, which reconstruction needs.

Both halves also have a linear path (all tokens <-> latent) beside the transformer. Without it the
transformer AE reconstructed held-out models of an aligned digits zoo worse than 64 principal components
(R^2 0.978 vs 0.988; accuracy kept 0.91 vs 0.96): a linear autoencoder spans the principal subspace, so
with the bypass the transformer only has to learn what is not linear.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from core.rep.blocks import check_sizes, transformer
from core.settings import setting


@dataclass(frozen=True)
class AEConfig:
    """Defaults sized for a 2-core CPU and the 1,288-parameter digits CNN (bench/ae_quality.py). The papers
    used d_model 800 and latent 700 for 2,464 parameters on GPUs. A latent of about a tenth of the parameter
    count kept 98% of held-out accuracy where 64 kept 92%; dropout is off because the augmentations
    (noise, erasing) regularise and dropout's random masks cost a third of a CPU step."""

    d_model: int = setting(64, "transformer width")
    heads: int = setting(4, "attention heads (must divide the width)")
    encoder_layers: int = setting(2, "transformer layers of the encoder")
    decoder_layers: int = setting(2, "transformer layers of the decoder")
    feedforward: int = setting(128, "feed-forward width of each transformer layer")
    latent_dim: int = setting(128, "embedding size (one latent per model)")
    projection_dim: int = setting(32, "size of the contrastive projection")
    dropout: float = setting(0.0, "dropout inside the transformer")

    def __post_init__(self) -> None:
        check_sizes(self)

    def to_json(self) -> dict:
        return asdict(self)


class HyperRepresentationAE(nn.Module):
    def __init__(self, n_tokens: int, token_width: int, config: AEConfig):
        super().__init__()
        d = config.d_model
        self.config = config
        self.embed = nn.Linear(token_width, d)
        self.encoder_position = nn.Parameter(torch.randn(n_tokens, d) * 0.02)
        self.encoder = transformer(config, config.encoder_layers)
        self.encoder_norm = nn.LayerNorm(d)
        self.to_latent = nn.Linear(n_tokens * d, config.latent_dim)
        self.linear_encoder = nn.Linear(n_tokens * token_width, config.latent_dim, bias=False)
        self.from_latent = nn.Linear(config.latent_dim, n_tokens * d)
        self.linear_decoder = nn.Linear(config.latent_dim, n_tokens * token_width)
        self.decoder_position = nn.Parameter(torch.randn(n_tokens, d) * 0.02)
        self.decoder = transformer(config, config.decoder_layers)
        self.decoder_norm = nn.LayerNorm(d)
        self.unembed = nn.Linear(d, token_width)
        self.projection = nn.Sequential(
            nn.Linear(config.latent_dim, config.projection_dim),
            nn.GELU(),
            nn.Linear(config.projection_dim, config.projection_dim),
        )

    @torch.no_grad()
    def init_linear_path(self, mean: torch.Tensor, directions: torch.Tensor) -> None:
        """Start as PCA of the training tokens, given their mean [tokens x width] and top principal directions
        [<= latent, tokens x width] (core/rep/pca.py): the linear path encodes onto the directions and decodes back
        around the mean, and the transformer paths start silent (zero output maps)."""
        basis = torch.zeros(self.linear_encoder.weight.shape, dtype=torch.float64)
        basis[: len(directions)] = directions[: len(basis)]
        mean = mean.double()
        self.linear_encoder.weight.copy_(basis.float())
        self.linear_decoder.weight.copy_(basis.T.float())
        self.linear_decoder.bias.copy_((mean - basis.T @ (basis @ mean)).float())
        for layer in (self.to_latent, self.unembed):
            layer.weight.zero_()
            layer.bias.zero_()

    def token_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, tokens, width] (standardised) -> [B, tokens, d_model]: the encoder's normalised output per neuron,
        before it is compressed into the latent."""
        return self.encoder_norm(self.encoder(self.embed(tokens) + self.encoder_position))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, tokens, width] (standardised) -> [B, latent]."""
        return self.latent_of(tokens, self.token_states(tokens))

    def latent_of(self, tokens: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """The latent of tokens whose encoder states (`token_states`) are already at hand: an embedding that needs
        both runs the transformer once."""
        return self.to_latent(states.flatten(1)) + self.linear_encoder(tokens.flatten(1))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """[B, latent] -> [B, tokens, width] (standardised)."""
        h = self.from_latent(latent).view(latent.shape[0], *self.decoder_position.shape)
        nonlinear = self.unembed(self.decoder_norm(self.decoder(h + self.decoder_position)))
        return nonlinear + self.linear_decoder(latent).view(nonlinear.shape)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent, reconstruction and contrastive projection of a batch of token sequences."""
        latent = self.encode(tokens)
        return latent, self.decode(latent), self.projection(latent)
