"""Config fields that carry their own help text: the frozen config dataclasses hold every default once, and the
command line derives its options from them (core/cli.py `add_settings`), so a default cannot differ between the
CLI, the app and the engine.

    epochs: int = setting(60, "training epochs")
    lrs: tuple[float, ...] = setting((3e-3,), "one or more learning rates", flag="--lr", parse=float_list)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, field
from typing import Any


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    choices: tuple | None = None,
) -> Any:
    """A dataclass field with a default and what the command line needs to offer it: help text, the option's
    name (default: `--field-name`), how to parse the typed text, and the allowed values."""
    metadata = {"help": help, "flag": flag, "parse": parse, "choices": choices}
    return field(default=default, metadata=metadata)


def is_setting(config_field: Field) -> bool:
    return "help" in config_field.metadata
