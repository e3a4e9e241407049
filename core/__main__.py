import sys

from core.errors import INTERRUPTED
from core.runtime import sleep_while_waiting

sleep_while_waiting()  # before core.cli imports torch

try:
    from core.cli import main
except KeyboardInterrupt:  # Ctrl-C while torch loads (seconds): main's own handler is not in place yet
    print(INTERRUPTED, file=sys.stderr)
    sys.exit(130)

sys.exit(main())
