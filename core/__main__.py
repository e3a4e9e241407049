import os
import sys

from core.errors import INTERRUPTED
from core.runtime import sleep_while_waiting


def leave(code: int) -> None:
    """Exit with `code`. After a Ctrl-C that landed in code a C extension ran while importing (numpy and torch
    do), CPython ends the process by SIGINT on the way out even though the interrupt was handled: a shell still
    shows 130, but a parent process sees -2 (measured: 2 of 6 interrupts between 0.6 and 1.8 s). An interrupted
    command has saved what it keeps, so it exits at once, after flushing its output."""
    if code != 130:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


sleep_while_waiting()  # before core.cli imports torch

try:
    from core.cli import main
except KeyboardInterrupt:  # Ctrl-C while torch loads (seconds): main's own handler is not in place yet
    print(INTERRUPTED, file=sys.stderr)
    leave(130)

leave(main())
