"""Simulated crashes and full or read-only disks for fault-injection tests.

Every write of ours ends in one rename (`os.replace` for files, `os.rename` for folders swapped into place, the
kernel's no-replace rename in core/store/commit.py for outputs and unpacked workspaces), so a fault "at the nth
commit" is the process dying, or its disk failing, just before that rename: everything before it is on disk,
nothing after. Counting commits in an uninterrupted run gives every point between two writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from unittest import mock

from core.store import commit


class Crash(BaseException):
    """A simulated kill: not an Exception, so no handler of ours catches it (cleanup `finally` blocks still run,
    which a real kill would skip; the next writer's recovery removes what they would have)."""


@contextlib.contextmanager
def fail_at_commit(n: int | None, fault: Callable[[int], BaseException]) -> Iterator[dict]:
    """Raise fault(n) instead of the nth rename (None: never); yields {"commits": renames done so far}."""
    count = {"commits": 0}

    def counted(real):
        def rename(*args, **kwargs):
            if count["commits"] + 1 == n:
                raise fault(n)
            count["commits"] += 1
            return real(*args, **kwargs)

        return rename

    with (
        mock.patch("os.replace", counted(os.replace)),
        mock.patch("os.rename", counted(os.rename)),
        mock.patch.object(commit, "_kernel_rename", counted(commit._kernel_rename)),
    ):
        yield count


def crash_at_commit(n: int | None) -> contextlib.AbstractContextManager[dict]:
    """A kill just before the nth rename."""
    return fail_at_commit(n, lambda k: Crash(f"crash at commit {k}"))


def disk_error_at_commit(n: int | None, code: int = errno.ENOSPC) -> contextlib.AbstractContextManager[dict]:
    """The disk failing (full: ENOSPC, read-only: EROFS) as the nth file is finished, as a write or close of its
    temporary file would: an OSError, which our handlers see (unlike a kill)."""
    return fail_at_commit(n, lambda k: OSError(code, os.strerror(code)))
