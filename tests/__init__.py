"""The test suite. Imported before any test module (and before torch loads): OpenMP threads then sleep while they
wait, so the suite stays quick on a busy machine (core/runtime.py)."""

from core.runtime import sleep_while_waiting

sleep_while_waiting()
