"""Names and paths typed by a user (CLI options, app fields), checked once here for both front ends.

A name (a workspace in the app, an autoencoder or samples run) becomes one folder: letters, digits, '-' and '_'
only, so it can hold no separator, no space or newline, nothing hidden and nothing a shell or a URL would mangle.
A path is bounded by what the operating system accepts (PATH_MAX and NAME_MAX on Linux), so that a 100,000
character field is one clear line instead of an ENAMETOOLONG from deep inside a read.
"""

from __future__ import annotations

import re

from core.errors import UserError
from core.limits import MAX_NAME_CHARS, MAX_PATH_BYTES, MAX_PATH_PART_BYTES

_NAME = re.compile(r"[A-Za-z0-9_-]+")


def shortened(text: str) -> str:
    """The start of a long text, enough to recognise it in a message."""
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}... ({len(text):,} characters)"


def is_usable_name(name: str) -> bool:
    """Whether `name` may name a folder of ours (listings skip others: a folder made by hand, or by a version
    that allowed more, would be refused by name when opened)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_CHARS and _NAME.fullmatch(name) is not None


def checked_name(name: str, what: str = "name") -> str:
    """`name` itself when it is usable as a folder name of ours, else UserError saying what it names (`what`, e.g.
    "run name")."""
    if not is_usable_name(name):
        raise UserError(
            f"{shortened(str(name))} is not a usable {what}: use letters, digits, '-' or '_' "
            f"(at most {MAX_NAME_CHARS} characters)"
        )
    return name


def checked_path_text(text: str, what: str = "path") -> str:
    """`text` when the operating system could accept it as a path: no NUL byte, at most MAX_PATH_BYTES in all and
    MAX_PATH_PART_BYTES per folder or file name (UTF-8 bytes, as the kernel counts them); else UserError."""
    if "\x00" in text:
        raise UserError(f"{what} {shortened(text)}: holds a NUL character, which no path can")
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > MAX_PATH_BYTES:
        raise UserError(f"{what} {shortened(text)}: a path of {size:,} bytes; at most {MAX_PATH_BYTES:,}")
    longest = max(text.split("/"), key=lambda part: len(part.encode("utf-8", "surrogateescape")))
    if len(longest.encode("utf-8", "surrogateescape")) > MAX_PATH_PART_BYTES:
        raise UserError(
            f"{what} {shortened(text)}: the name {shortened(longest)} is longer than the {MAX_PATH_PART_BYTES} bytes a "
            "file system allows for one folder or file name"
        )
    return text
