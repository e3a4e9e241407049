"""A prompt, clean end of the server process when it is stopped (SIGTERM, Ctrl+C) while background threads work.

Why: jobs, the zoo's error sets and the engine's warm-up run in daemon threads, in torch. When Streamlit has
stopped and Python finalises with such a thread inside a torch operation, the C++ runtime aborts ("terminate called
without an active exception": SIGABRT, exit status 134, and a core dump where they are enabled) instead of exiting.
Seen here on every SIGTERM of a server whose page had opened a workspace. Everything a job writes is written
atomically and resumes from its last saved step, so nothing is lost by ending the process at once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading


def exit_now_if_threads_work() -> None:
    """At interpreter exit: with a daemon thread still alive, flush what was written and end the process now,
    before C++ destructors meet a thread inside torch (status 0, or 1 after an unhandled exception, which Python
    has printed and kept in sys.last_value); with none, let Python finish as usual."""
    if not any(t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing left to flush
            stream.flush()
    os._exit(1 if getattr(sys, "last_value", None) is not None else 0)  # an unhandled exception still fails


def exit_promptly_on_stop() -> None:
    """Register the exit above once per process (the app's script runs on every page view)."""
    atexit.unregister(exit_now_if_threads_work)
    atexit.register(exit_now_if_threads_work)
