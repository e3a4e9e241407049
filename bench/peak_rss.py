"""Peak RSS of a child Python process, measured so that the parent's own memory does not leak into the figure.

Linux carries a process's resident high-water mark over `exec` (and a `vfork`ed child shares its parent's memory
until it execs), so a command spawned straight from a bench that has built a zoo, or imported torch, reports at
least the bench's own peak. Here a small trampoline process forks and execs the command, reaps it with `wait4`
(whose rusage is that child's own) and prints its peak as the last line of stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

# Forks and execs its arguments, then prints the child's peak RSS (KiB) as the last line of stderr.
_TRAMPOLINE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\\npeak_rss_kib {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measured(argv: list[str]) -> tuple[float, float, dict]:
    """(peak RSS in MB, seconds, JSON of the last stdout line) of `python ARGV`, run under the trampoline; a failed
    command stops the bench with its stderr's tail."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _TRAMPOLINE, *argv], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    peak_kib = int(done.stderr.strip().splitlines()[-1].split()[-1])
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    return peak_kib / 1024, seconds, result
