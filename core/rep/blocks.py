"""Building blocks the autoencoder kinds share."""

from __future__ import annotations

from dataclasses import fields

from torch import nn

from core.errors import UserError
from core.limits import MAX_AE_PARAMETERS, MAX_LAYERS, MAX_SIZE_SETTING


def transformer(config, layers: int) -> nn.TransformerEncoder:
    """A pre-norm transformer encoder stack from any config with d_model, heads, feedforward and dropout."""
    block = nn.TransformerEncoderLayer(
        config.d_model, config.heads, config.feedforward, config.dropout, batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(block, layers, enable_nested_tensor=False)


def check_sizes(config) -> None:
    """The size checks every autoencoder kind's config needs (positive sizes, heads dividing the width, dropout
    a probability, and an upper bound on the model's size: core/limits.py)."""
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
    _check_not_too_large(config)


def _check_not_too_large(config) -> None:
    """Refuse sizes that could not be built. The estimate bounds the transformer stacks (attention and
    feed-forward per layer) plus every map or table with the width on one side and, at most, the largest size
    setting on the other."""
    settings = {f.name: getattr(config, f.name) for f in fields(config) if type(getattr(config, f.name)) is int}
    huge = [f"{k} {v}" for k, v in settings.items() if v > MAX_SIZE_SETTING]
    huge += [f"{k} {settings[k]}" for k in ("encoder_layers", "decoder_layers") if settings[k] > MAX_LAYERS]
    if huge:
        raise UserError(
            f"autoencoder sizes too large: {', '.join(huge)} (at most {MAX_SIZE_SETTING}, layers {MAX_LAYERS})"
        )
    d, layers = config.d_model, config.encoder_layers + config.decoder_layers
    estimate = layers * (4 * d * d + 2 * d * config.feedforward) + 4 * d * max(settings.values())
    if estimate > MAX_AE_PARAMETERS:
        raise UserError(
            f"an autoencoder of these sizes would hold about {estimate:,} parameters, more than the "
            f"{MAX_AE_PARAMETERS:,} allowed; use a smaller width or feed-forward, or fewer layers"
        )
