"""What the command line writes to the terminal: text made safe to print, and argparse's errors in our format.
Free of the engine (no torch), so help and a mistyped command answer at once (core/cli/outline.py)."""

from __future__ import annotations

import argparse
import sys


def printable(text: str) -> str:
    """`text` on one line with every control or invisible character escaped: messages quote file names and
    contents from elsewhere, and an escape sequence in them must not reach the terminal."""
    return "".join(
        c if c.isprintable() else " " if c in "\n\r\t" else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
        for c in text
    )


class Parser(argparse.ArgumentParser):
    """argparse with our error format: one line, `error: ...`, exit 2 (argparse prints its usage first)."""

    def error(self, message: str):
        print(f"error: {printable(self.prog)}: {printable(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)
