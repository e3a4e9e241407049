"""Command-line options derived from the config dataclasses (core/settings.py): each setting field becomes an
option with the field's default, help text, parser and choices, so the CLI cannot drift from the engine."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, fields

from core.errors import UserError
from core.settings import is_setting


def _parser_of(config_field: Field):
    """The option's type: the setting's own parser (wrapped so its UserError becomes argparse's one-line
    error), else the default's type."""
    parse = config_field.metadata.get("parse")
    if parse is None:
        default = config_field.default
        return type(default) if default is not None and default is not MISSING else str

    def typed(text: str):
        try:
            return parse(text)
        except (UserError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = getattr(parse, "__name__", "value")
    return typed


def _shown(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def add_option(parser: argparse.ArgumentParser, config_field: Field, default, help_text: str) -> None:
    meta = config_field.metadata
    flag = meta.get("flag") or "--" + config_field.name.replace("_", "-")
    if isinstance(config_field.default, bool):
        parser.add_argument(
            flag, dest=config_field.name, action=argparse.BooleanOptionalAction, default=default, help=help_text
        )
        return
    metavar = None if meta.get("choices") else flag.lstrip("-").upper().replace("-", "_")
    parser.add_argument(
        flag, dest=config_field.name, type=_parser_of(config_field), choices=meta.get("choices"), default=default,
        help=help_text, metavar=metavar,
    )  # fmt: skip


def add_settings(
    parser: argparse.ArgumentParser, config_type: type, skip: tuple[str, ...] = (), unset: bool = False
) -> None:
    """One option per setting of `config_type`, defaulting to the dataclass's default; with `unset`, to None, so
    that a caller can tell an option given at its default value from one left out (a preset fills the latter)."""
    for config_field in fields(config_type):
        if is_setting(config_field) and config_field.name not in skip:
            default = config_field.default
            shown = f" (default {_shown(default)})" if default is not None else ""
            add_option(parser, config_field, None if unset else default, config_field.metadata["help"] + shown)


def settings_from(config_type: type, args: argparse.Namespace, **fixed):
    """The config built from the parsed options of its settings (and `fixed` values); an option that is None was
    left out (or defaults to None) and takes the dataclass's default."""
    values = {f.name: getattr(args, f.name) for f in fields(config_type) if is_setting(f) and hasattr(args, f.name)}
    return config_type(**{**{k: v for k, v in values.items() if v is not None}, **fixed})


def add_variant_settings(parser: argparse.ArgumentParser, variants: dict[str, type]) -> None:
    """Options for the settings of several config types (e.g. one per autoencoder kind): each option once,
    defaulting to None (the chosen variant's own default), its help naming every variant's default."""
    seen: dict[str, tuple[Field, list[str]]] = {}
    for name, config_type in variants.items():
        for config_field in fields(config_type):
            if is_setting(config_field):
                entry = seen.setdefault(config_field.name, (config_field, []))
                entry[1].append(f"{name} {_shown(config_field.default)}")
    for config_field, defaults in seen.values():
        add_option(parser, config_field, None, f"{config_field.metadata['help']} (default: {'; '.join(defaults)})")


def variant_from(
    config_type: type, variant: str, args: argparse.Namespace, variants: dict[str, type], base: dict | None = None
):
    """The chosen variant's config from the options given over `base` (a preset's values, else the dataclass's
    defaults); an option of another variant only is refused."""
    own = {f.name for f in fields(config_type) if is_setting(f)}
    others = {f.name for t in variants.values() for f in fields(t) if is_setting(f)} - own
    given_elsewhere = sorted(name for name in others if getattr(args, name, None) is not None)
    if given_elsewhere:
        flags = ", ".join("--" + name.replace("_", "-") for name in given_elsewhere)
        raise UserError(f"{flags}: not a setting of {variant}")
    given = {name: getattr(args, name) for name in own if getattr(args, name, None) is not None}
    return config_type(**{**(base or {}), **given})
