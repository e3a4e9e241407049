"""The samplers, by name. Add one here (see base.py)."""

from __future__ import annotations

from core.errors import UserError
from core.gen.samplers.base import Sampler
from core.gen.samplers.gauss import Gauss
from core.gen.samplers.kde import KDE
from core.gen.samplers.kde_per_dim import KDEPerDim
from core.gen.samplers.neighbour import Neighbour
from core.gen.samplers.token import TokenKDE

SAMPLERS: dict[str, type[Sampler]] = {cls.name: cls for cls in (KDE, Gauss, Neighbour, KDEPerDim, TokenKDE)}
METHODS = tuple(SAMPLERS)


def make_sampler(name: str, spread: float = 1.0, token_width: int | None = None) -> Sampler:
    """A fresh sampler by name; `token_width`: the width of the token latents codes are made of (None: one token)."""
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; choose one of {', '.join(METHODS)}")
    return SAMPLERS[name](spread, token_width)
