"""Simulated crashes for fault-injection tests.

Every write of ours ends in one rename (`os.replace` for files, `os.rename` for folders swapped into place), so
a crash "at the nth commit" is the process dying just before that rename: everything before it is on disk,
nothing after. Counting commits in an uninterrupted run gives every point between two writes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from unittest import mock


class Crash(BaseException):
    """A simulated kill: not an Exception, so no handler of ours catches it (cleanup `finally` blocks still run,
    which a real kill would skip; the next writer's recovery removes what they would have)."""


@contextlib.contextmanager
def crash_at_commit(n: int | None) -> Iterator[dict]:
    """Raise Crash instead of the nth rename (None: never); yields {"commits": renames done so far}."""
    count = {"commits": 0}

    def counted(real):
        def rename(*args, **kwargs):
            if count["commits"] + 1 == n:
                raise Crash(f"crash at commit {n}")
            count["commits"] += 1
            return real(*args, **kwargs)

        return rename

    with mock.patch("os.replace", counted(os.replace)), mock.patch("os.rename", counted(os.rename)):
        yield count
