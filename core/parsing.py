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
