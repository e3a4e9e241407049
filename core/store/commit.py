"""How a finished file or folder takes its place: renames that refuse to replace anything, and the temporary files
and build folders of atomic writes, including those a killed writer left behind.

A temporary file or build folder is locked (flock) by its writer for as long as the writer lives, so a later run
can tell an abandoned one (unlocked) from one being written now (locked) and remove only the first kind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

# renameat2(2)'s flag: fail with EEXIST if the destination exists, checked by the kernel in the rename itself.
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)  # glibc 2.28 and later; absent elsewhere

# A temporary file is removed as abandoned only when unlocked and unchanged this long: its writer takes the lock
# a moment after creating it (mkstemp, then flock), and that moment must not look like an abandoned file.
STALE_AFTER_S = 10.0


def _kernel_rename(src: Path, dst: Path) -> bool:
    """rename(src, dst) that fails if dst exists; False where this kernel or filesystem cannot do it."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def rename_exclusive(src: Path, dst: Path) -> None:
    """Move the file or folder `src` to `dst`, which must not exist: FileExistsError otherwise, even for an empty
    folder (which a plain rename of a folder would replace). Where the kernel cannot check this in the rename,
    `dst` is claimed first by an exclusive mkdir (a folder) or link (a file), so of two movers exactly one wins."""
    if _kernel_rename(src, dst):
        return
    if not stat.S_ISDIR(os.lstat(src).st_mode):
        os.link(src, dst, follow_symlinks=False)
        os.unlink(src)
        return
    os.mkdir(dst)  # ours now: a rename onto an empty folder replaces it
    try:
        os.rename(src, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rmdir(dst)
        raise


def locked_temp_beside(path: Path) -> tuple[int, Path]:
    """(descriptor, name) of a new temporary file beside `path`, locked until the descriptor is closed."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, Path(name)


def locked_folder_beside(path: Path, tag: str) -> tuple[int, Path]:
    """(descriptor, name) of a new hidden folder `.<name>.<tag>-XXXXXXXX` beside `path` (a build folder), locked
    until the descriptor is closed."""
    name = Path(tempfile.mkdtemp(prefix=f".{path.name}.{tag}-", dir=path.parent))
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, name


def remove_abandoned(path: Path, tag: str | None = None) -> list[Path]:
    """Remove what killed writers of `path` left beside it, and return it: its temporary files
    (`locked_temp_beside`), or with `tag` its build folders (`locked_folder_beside`). Whatever is locked,
    recent, of another kind or not ours to remove stays."""
    # mkstemp's and mkdtemp's names: the prefix, 8 characters of this alphabet, the suffix
    stem = rf"\.{re.escape(path.name)}\."
    pattern = re.compile(stem + (rf"{re.escape(tag)}-[a-z0-9_]{{8}}" if tag else r"[a-z0-9_]{8}\.tmp"))
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    before = time.time() - STALE_AFTER_S
    removed = []
    for name in names:
        candidate = path.parent / name
        if pattern.fullmatch(name) and _remove_if_abandoned(candidate, before, folder=tag is not None):
            removed.append(candidate)
    return removed


def _remove_if_abandoned(path: Path, before: float, folder: bool) -> bool:
    kind = os.O_DIRECTORY if folder else os.O_NOCTTY
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | kind)
    except OSError:  # gone meanwhile, a link, or not ours to read
        return False
    try:
        info = os.fstat(fd)
        plain = stat.S_ISDIR(info.st_mode) if folder else stat.S_ISREG(info.st_mode) and info.st_nlink == 1
        if not plain or info.st_mtime > before:
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: its writer is alive
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            return False
        if folder:
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
