"""Peak RSS of a child Python process, measured so that the parent's own memory does not leak into the figure.

Linux carries a process's resident high-water mark over `exec` (and a `vfork`ed child shares its parent's memory
until it execs), so a command spawned straight from a bench that has built a zoo, or imported torch, reports at
least the bench's own peak. Here a small trampoline process forks and execs the command, reaps it with `wait4`
(whose rusage is that child's own) and prints its peak and its CPU seconds as the last line of stderr. The CPU
seconds (user and system) tell work from waiting on a machine that other jobs share: there a command's wall time
varies by half from one run to the next.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

# Forks and execs its arguments, then prints the child's peak RSS (KiB) and CPU seconds as the last line of stderr.
_TRAMPOLINE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\\npeak_rss_kib {usage.ru_maxrss} cpu_s {usage.ru_utime + usage.ru_stime}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Usage:
    """What one command used: its peak RSS (MB), wall and CPU seconds, and the JSON of its last stdout line."""

    peak_rss_mb: float
    seconds: float
    cpu_seconds: float
    result: dict


def usage(argv: list[str]) -> Usage:
    """The Usage of `python ARGV`, run under the trampoline; a failed command stops the bench with its stderr's
    tail."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _TRAMPOLINE, *argv], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    _, peak_kib, _, cpu = done.stderr.strip().splitlines()[-1].split()
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    return Usage(int(peak_kib) / 1024, seconds, float(cpu), result)


def measured(argv: list[str]) -> tuple[float, float, dict]:
    """(peak RSS in MB, seconds, JSON of the last stdout line) of `python ARGV` (`usage`)."""
    used = usage(argv)
    return used.peak_rss_mb, used.seconds, used.result
