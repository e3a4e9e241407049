import sys

from core.runtime import sleep_while_waiting

sleep_while_waiting()  # before core.cli imports torch

from core.cli import main  # noqa: E402

sys.exit(main())
