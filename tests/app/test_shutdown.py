"""The server process ends cleanly when it stops while a background thread works in torch (ui/shutdown.py)."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BUSY_EXIT = textwrap.dedent(
    """
    import sys, threading, time
    import torch
    from ui.shutdown import exit_promptly_on_stop

    def work():  # a job's thread, inside torch when the interpreter exits
        x = torch.randn(200, 200)
        while True:
            x = (x @ x).tanh()

    if sys.argv[1] == "registered":
        exit_promptly_on_stop()
        exit_promptly_on_stop()  # the app's script runs on every page view: registered once all the same
    threading.Thread(target=work, name="job-test", daemon=True).start()
    time.sleep(0.5)
    print("leaving", flush=True)
    if sys.argv[2:] == ["crash"]:
        raise RuntimeError("the server failed")
    """
)


def exit_of(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BUSY_EXIT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_a_stop_while_a_thread_works_in_torch_exits_cleanly():
    ended = exit_of("registered")
    assert ended.returncode == 0 and ended.stdout == "leaving\n" and "terminate called" not in ended.stderr


def test_a_failure_at_that_point_still_exits_with_a_failure_status():
    ended = exit_of("registered", "crash")
    assert ended.returncode == 1 and "RuntimeError: the server failed" in ended.stderr
    assert "terminate called" not in ended.stderr
