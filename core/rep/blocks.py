"""Building blocks the autoencoder kinds share."""

from __future__ import annotations

from torch import nn

from core.errors import UserError


def transformer(config, layers: int) -> nn.TransformerEncoder:
    """A pre-norm transformer encoder stack from any config with d_model, heads, feedforward and dropout."""
    block = nn.TransformerEncoderLayer(
        config.d_model, config.heads, config.feedforward, config.dropout, batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(block, layers, enable_nested_tensor=False)


def check_sizes(config) -> None:
    """The size checks every autoencoder kind's config needs (positive sizes, heads dividing the width)."""
    sizes = {k: getattr(config, k) for k in ("d_model", "heads", "feedforward", "latent_dim", "projection_dim")}
    small = [f"{k} {v}" for k, v in sizes.items() if v < 1] + [
        f"{k} {getattr(config, k)}" for k in ("encoder_layers", "decoder_layers") if getattr(config, k) < 0
    ]
    if small:
        raise UserError(f"autoencoder sizes must be positive: {', '.join(small)}")
    if config.d_model % config.heads:
        raise UserError(f"the transformer width {config.d_model} must be a multiple of the {config.heads} heads")
    if not 0 <= config.dropout < 1:
        raise UserError(f"dropout must lie in [0, 1), got {config.dropout}")
