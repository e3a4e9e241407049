"""Files the user names with `--out` (a workspace pack, an export bundle): which paths may be written, and the
write itself.

An output never replaces what is not a plain file (a device, FIFO, folder or link), a workspace pack, or anything
inside a workspace; an existing plain file only when asked (`force`). It is written beside its target and renamed
into place, by a rename that refuses to replace a file another command put there meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from core.errors import UserError, os_error_remedy
from core.names import checked_path_text
from core.store.commit import remove_abandoned, rename_exclusive
from core.store.files import atomic_path
from core.store.workspace import MANIFEST, PENDING_MANIFEST, ZOO


def checked_output(out: str | Path, force: bool = False) -> Path:
    """A path the zip `out` may be written to (else UserError naming it). Links in its folders are resolved
    before the workspace check; the path itself may not be a link."""
    text = str(out)
    if not text.strip():
        raise UserError("--out is empty: name the zip file to write")
    path = Path(checked_path_text(text, "--out")).expanduser()
    if text.endswith(("/", os.sep)):
        raise UserError(f"{path}: is a folder; name the zip file to write")
    _check_outside_workspaces(path)
    remove_abandoned(path)  # what a killed writer of this output left, even if this one is refused
    _check_existing(path, force)
    return path


def _check_outside_workspaces(path: Path) -> None:
    """A pack or bundle written over a workspace's file would destroy it; written anywhere inside one, it would be
    packed with it."""
    try:
        folders = (path.parent.resolve() / path.name).parents
        for folder in folders:
            if (folder / MANIFEST).exists() or (folder / ZOO / PENDING_MANIFEST).exists():
                raise UserError(f"{path}: inside the workspace {folder}; write it outside any workspace")
            if folder.exists() and not folder.is_dir():
                raise UserError(f"{path}: {folder} is a file, not a folder")
    except OSError as exc:  # a name too long
        raise UserError(f"{path}: cannot be written there ({exc.strerror})") from None
    except RuntimeError:  # Path.resolve's error for a loop of links, before Python 3.13
        raise UserError(f"{path}: cannot be written there (a loop of symbolic links)") from None


def _check_existing(path: Path, force: bool) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"{path}: cannot be written there ({exc.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        raise UserError(f"{path}: is a symbolic link; name a new file (the link is never written through)")
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path}: is a folder; name the zip file to write")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: not a regular file (a device, FIFO or socket); name a new file")
    if is_workspace_pack(path):
        raise UserError(f"{path}: is a workspace pack; it is never replaced (not even with --force): name a new file")
    if not force:
        raise UserError(f"{path}: already exists; pass --force to replace it, or name a new file")


def is_workspace_pack(path: Path) -> bool:
    """Whether `path` is a zip holding a workspace manifest at its top level. Opened without following a link
    and without blocking (a FIFO put there since the check)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            with zipfile.ZipFile(handle) as archive:
                return MANIFEST in archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return False


@contextlib.contextmanager
def written_output(out: Path, force: bool = False) -> Iterator[Path]:
    """A temporary file beside `out` to write; renamed into place when the block succeeds, removed on any failure.
    Of two commands writing one output at once, one finishes and the other is told (`_committer`). An
    operating-system error becomes a UserError naming the path and what to do."""
    try:
        with _committer(out, force) as commit, atomic_path(out, commit) as tmp:
            yield tmp
    except FileExistsError:
        raise UserError(f"{out}: another command wrote it meanwhile; left alone (pass --force to replace it)") from None
    except OSError as exc:
        raise UserError(f"{out}: cannot be written ({os_error_remedy(exc)}); nothing was written") from None


@contextlib.contextmanager
def _committer(out: Path, force: bool) -> Iterator[Callable[[Path, Path], None]]:
    """How the finished file takes the place of `out`: a rename that refuses any file there; or, with `force` and
    a file there now, a replace of that very file, which stays locked meanwhile (a second writer of it is told at
    once) and must still be the one there at the rename (else FileExistsError)."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC) if force else None
    except FileNotFoundError:
        fd = None
    if fd is None:
        yield rename_exclusive
        return
    try:
        replaced = os.fstat(fd)
        if not stat.S_ISREG(replaced.st_mode):
            raise UserError(f"{out}: not a regular file (a device, FIFO or socket); name a new file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{out}: another command is writing it; try again when it finishes") from None

        def replace_it(tmp: Path, target: Path) -> None:
            now = os.lstat(target)
            if (now.st_dev, now.st_ino) != (replaced.st_dev, replaced.st_ino):
                raise FileExistsError(errno.EEXIST, "replaced meanwhile", str(target))
            os.replace(tmp, target)

        yield replace_it
    finally:
        os.close(fd)
