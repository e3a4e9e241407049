"""What a failed command leaves that nothing will use: a workspace folder it created and never wrote a zoo or a
run into. The command line and the app's job runner call this after a failure (a full disk, a read-only folder,
bad input found late), so that a typo in --workspace does not leave an empty folder holding only `.lock`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

_LOCK = ".lock"


def may_exist(root: str | Path) -> bool:
    """Whether `root` is there before a command runs; True where that cannot be told (an unreadable or over-long
    path): such a folder is then never removed."""
    try:
        os.lstat(Path(root).expanduser())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return True


def holds_only_leftovers(root: Path) -> bool:
    """Whether the folder `root` holds nothing but the lock file and hidden entries (build folders, temporary
    files of writes cut short, core/store/files.py); a manifest, a zoo, a resumable `zoo.partial` or any run is
    worth keeping."""
    try:
        names = os.listdir(root)
    except OSError:
        return False
    return all(name == _LOCK or name.startswith(".") for name in names)


def remove_unused_workspace(root: str | Path) -> bool:
    """Remove the workspace folder `root` that a failed command created, if it holds only leftovers and no other
    process holds its lock (a second `zoo generate` told "busy" must not delete the folder the first one is
    training into); returns whether it did. Never called on a folder that existed before the command: its
    caller checked."""
    path = Path(root).expanduser()
    try:
        if path.is_symlink() or not path.is_dir() or not holds_only_leftovers(path):
            return False
        with _unlocked(path / _LOCK):
            shutil.rmtree(path)
    except OSError:  # it is tidying only: what cannot be removed stays (BlockingIOError: another writer's)
        return False
    return True


@contextlib.contextmanager
def _unlocked(lock: Path) -> Iterator[None]:
    """Hold the workspace's writer lock while the block runs, if there is a lock file; OSError (BlockingIOError)
    when another process holds it. Opened without following a link and without blocking on a FIFO."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)
