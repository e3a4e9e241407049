"""`python -m core ...`: the command-line front end over the same functions the app calls.

Exit codes: 0 success, 2 bad input (one line on stderr saying what and where), 130 interrupted (resumable).
With --json the last line of stdout is one JSON object. Help above a command and a missing or mistyped command
are answered from the command tree alone (core/cli/outline.py), without importing the engine (torch); a whole
command is parsed and run by core/cli/parser.py.
"""

from __future__ import annotations

import sys

from core.cli.outline import names_a_command, outline_parser
from core.errors import INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Run one command; Ctrl-C at any moment (parsing, imports, work, output) is one line and exit 130."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if not names_a_command(argv):
            outline_parser().parse_args(argv)  # help, or one line on what is missing or unknown; exits either way
        from core.cli.parser import run  # lazy: the whole parser imports the engine, which the outline needs not

        return run(argv)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130


def __getattr__(name: str):
    """`core.cli.build_parser`, imported on first use: the whole parser imports the engine (torch)."""
    if name == "build_parser":
        from core.cli.parser import build_parser  # lazy: see above

        return build_parser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
