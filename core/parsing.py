"""Comma-separated lists typed by a user (CLI options, app text fields), with one clear error each."""

from __future__ import annotations

from collections.abc import Callable

from core.errors import UserError


def _typed_list(text: str, cast: Callable[[str], object], what: str, name: str) -> tuple:
    try:
        return tuple(cast(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{name}: expected comma-separated {what}, got {text!r}") from None


def int_list(text: str, name: str = "value") -> tuple[int, ...]:
    return _typed_list(text, int, "integers", name)


def float_list(text: str, name: str = "value") -> tuple[float, ...]:
    return _typed_list(text, float, "numbers", name)


def str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def seed_list(text: str, name: str = "--seeds") -> tuple[int, ...]:
    """The seeds a bench runs over: a count N means seeds 0..N-1; a comma-separated list ("0,4,7", or "3," for
    seed 3 alone) means those seeds."""
    seeds = int_list(text, name)
    if "," not in text:
        seeds = tuple(range(seeds[0])) if seeds else ()
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UserError(f"{name}: expected a count of seeds (>= 1) or distinct seeds >= 0, got {text!r}")
    return seeds
