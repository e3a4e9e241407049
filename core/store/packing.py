"""A workspace as one zip file: what the app's prebuilt default ships as, and how users move workspaces around.

A pack holds what is needed to use a workspace (manifest, zoo, finished autoencoder runs with their maps and
evaluations, sample runs) and leaves out what only resuming needs (optimiser state, partial runs, the lock).
It holds data only: JSON, parquet and safetensors files (core/limits.py PACK_SUFFIXES). A pickled file could
run code when loaded, so none is packed and a pack that holds one is refused.

Unpacking checks every member before extracting any (name, kind, type, compression, encryption, declared
size and compression ratio, no name twice; their total against core/limits.py and the free disk space),
extracts into a hidden build folder of its own beside the target, loads the zoo there to validate it, and
renames the folder into place by a rename that refuses an existing target; so a failed unpack never leaves half
a workspace, and of two unpacks into one folder one finishes and the other is told. After the rename it checks
that the folder holds exactly the files the pack lists.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import shutil
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from core.errors import UserError, ZooError
from core.limits import (
    MAX_PACK_BYTES,
    MAX_PACK_MEMBERS,
    MAX_PACK_RATIO,
    MAX_WORKSPACE_FILE_BYTES,
    PACK_RATIO_FROM_BYTES,
    PACK_SUFFIXES,
)
from core.store.commit import locked_folder_beside, remove_abandoned, rename_exclusive
from core.store.files import checked_file, give_umask_mode, read_bytes
from core.store.output import checked_output, written_output
from core.store.workspace import MANIFEST, Workspace

# Checks that a workspace is whole (e.g. its zoo loads), raising a UserError that names what is wrong. Packing
# knows files, not zoos: the caller passes the check (core/pipeline.py passes the zoo loader).
Validate = Callable[[Workspace], object]

# Build folders are named `.<target>.unpack-XXXXXXXX`.
_BUILD_TAG = "unpack"

# Left out of packs: resumable training state and anything hidden (locks, build and partial folders).
_SKIPPED_FILES = {"train_state.pt"}


def _packed_files(root: Path) -> list[Path]:
    """The workspace's data files: no hidden, partial or resume-only file, and no file of another type. A link
    is refused: a copied workspace is untrusted, and a link in it could pack any file of this machine."""
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(p.startswith(".") for p in relative.parts) or relative.parts[0] == "zoo.partial":
            continue
        if path.is_symlink():
            raise ZooError(f"{path}: a symbolic link in the workspace; packs hold plain files only: replace it")
        if path.is_file() and path.name not in _SKIPPED_FILES and path.suffix in PACK_SUFFIXES:
            files.append(relative)
    return files


def pack_workspace(workspace: Workspace, out: str | Path, validate: Validate, force: bool = False) -> dict:
    """Write `workspace` to the zip file `out` (atomically; an existing file only with `force`,
    core/store/output.py), after `validate` accepts it; returns what went in."""
    if not workspace.exists():
        raise ZooError(f"{workspace.root}: no workspace to pack (no {MANIFEST})")
    validate(workspace)  # refuse to pack a broken workspace
    out = checked_output(out, force)
    files = _packed_files(workspace.root)
    with written_output(out, force) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for relative in files:
            # Fixed timestamps, so packing the same workspace twice gives the same bytes.
            info = zipfile.ZipInfo(relative.as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            # a regular file within the cap, not a link to a device
            archive.writestr(info, read_bytes(workspace.root / relative, MAX_WORKSPACE_FILE_BYTES))
    return {"pack": str(out), "files": len(files), "bytes": out.stat().st_size}


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """What makes one member unfit to extract, if anything."""
    name = PurePosixPath(info.filename)
    if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
        return "points outside the workspace"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if info.is_dir():
        return None
    if name.suffix not in PACK_SUFFIXES:
        return f"is not a data file ({', '.join(PACK_SUFFIXES)}); a pickled file could run code"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"uses compression method {info.compress_type}; only stored or deflated members are read"
    if info.file_size > MAX_WORKSPACE_FILE_BYTES:
        return f"unpacks to {info.file_size:,} bytes, more than the {MAX_WORKSPACE_FILE_BYTES:,} allowed"
    ratio = info.file_size / max(1, info.compress_size)
    if info.file_size > PACK_RATIO_FROM_BYTES and ratio > MAX_PACK_RATIO:
        return f"unpacks to {ratio:,.0f} times its packed size (a workspace's files do not compress like that)"
    return None


def _safe_members(archive: zipfile.ZipFile, source: Path, target_folder: Path) -> list[zipfile.ZipInfo]:
    """The pack's file members, once every member and their total is known to be fit to extract into
    `target_folder` (which must have room for them)."""
    infos = archive.infolist()
    if len(infos) > MAX_PACK_MEMBERS:
        raise ZooError(f"{source}: {len(infos):,} members, more than the {MAX_PACK_MEMBERS:,} allowed")
    for info in infos:
        problem = _member_problem(info)
        if problem:
            raise ZooError(f"{source}: member {info.filename!r} {problem}; refused")
    members = [info for info in infos if not info.is_dir()]
    counts = collections.Counter(_member_name(info) for info in members)
    twice = next((name for name, count in counts.items() if count > 1), None)
    if twice is not None:
        raise ZooError(f"{source}: member {twice!r} appears more than once; refused")
    total = sum(info.file_size for info in members)
    if total > MAX_PACK_BYTES:
        raise ZooError(f"{source}: unpacks to {total:,} bytes, more than the {MAX_PACK_BYTES:,} allowed")
    free = shutil.disk_usage(target_folder).free
    if total > free:
        raise ZooError(f"{source}: unpacks to {total:,} bytes, but {target_folder} has {free:,} bytes free")
    if MANIFEST not in {m.filename for m in members}:
        raise ZooError(f"{source}: not a workspace pack (no {MANIFEST} at its top level)")
    return members


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's path as extracted ("zoo//a.json" and "zoo/a.json" are one file)."""
    return PurePosixPath(info.filename).as_posix()


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> None:
    """One member into a new file (never through a link, never over another member), never more bytes than its
    declared size (zipfile stops there too; this does not rely on it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    left = info.file_size
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    with archive.open(info) as src, open(fd, "wb") as dst:
        while chunk := src.read(min(1 << 20, left + 1)):
            left -= len(chunk)
            if left < 0:
                raise ZooError(f"member {info.filename!r} holds more than its declared size")
            dst.write(chunk)


def unpack_workspace(source: str | Path, target: str | Path, validate: Validate) -> Workspace:
    """Extract the pack `source` into the new folder `target`, check it with `validate` before it appears there,
    and return it. The pack is extracted into a build folder of this call's own beside the target and renamed
    into place by a rename that fails if the target appeared meanwhile (another unpack): of two unpacks into one
    folder, one finishes and the other is told. Folders this call made are removed again if it fails."""
    source, target = Path(source).expanduser(), Workspace(target).root
    remove_abandoned(target, _BUILD_TAG)  # what a killed unpack into this folder left, even if this one is refused
    if os.path.lexists(target):
        raise ZooError(f"{target}: already exists; unpack into a new folder")
    checked_file(source, MAX_PACK_BYTES)  # a regular file (a FIFO would hang the zip reader)
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ZooError(f"{source}: not a readable zip file ({exc})") from None
    made = _missing_folders(target.parent)
    done = False
    try:
        with archive:
            fd, build = _build_folder(target)
            try:
                members = _extract_all(archive, source, target, build)
                _validate_build(build, source, validate)
                _swap_in(build, target)
            finally:
                shutil.rmtree(build, ignore_errors=True)  # gone after a swap
                os.close(fd)
        _check_extracted(target, members, source)
        done = True
    finally:
        if not done:
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return Workspace(target)


def _missing_folders(folder: Path) -> list[Path]:
    """The folders `folder` and its ancestors that do not exist yet, outermost first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _build_folder(target: Path) -> tuple[int, Path]:
    """A new hidden folder beside `target`, this call's alone (two unpacks never share one), locked while this
    call lives (`remove_abandoned` leaves it alone)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return locked_folder_beside(target, _BUILD_TAG)
    except FileExistsError:  # from mkdir: a file, or a link to nowhere usable, where a folder must be
        raise ZooError(f"{target}: cannot be made ({target.parent} is there but is not a folder)") from None
    except OSError as exc:
        raise ZooError(f"{target}: cannot be made ({_remedy(exc)})") from None


def _remedy(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full; free some space or unpack elsewhere"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{exc.strerror}; unpack elsewhere"
    return exc.strerror or type(exc).__name__


# Writing a member fails with these when the target's disk or folder is at fault, not the pack.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENAMETOOLONG}


def _extract_all(archive: zipfile.ZipFile, source: Path, target: Path, build: Path) -> list[zipfile.ZipInfo]:
    """Every member into `build`; errors name the pack or the target, never the build folder (it is removed)."""
    try:
        members = _safe_members(archive, source, target.parent)
        for info in members:
            _extract(archive, info, build / info.filename)
        return members
    except OSError as exc:
        if exc.errno in _WRITE_ERRORS:
            raise ZooError(f"{target}: cannot be written ({_remedy(exc)}); nothing was left there") from None
        raise ZooError(f"{source}: damaged pack ({exc.strerror or exc})") from None
    # A damaged member fails in many ways: bad CRC or header, a truncated or corrupt deflate stream.
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise ZooError(f"{source}: damaged pack ({exc})") from None


def _validate_build(build: Path, source: Path, validate: Validate) -> None:
    """`validate` on the extracted folder; its message names the member at fault, not the build folder."""
    try:
        validate(Workspace(build))
    except UserError as exc:
        message = str(exc).replace(f"{build}{os.sep}", "").replace(str(build), "the pack")
        raise ZooError(f"{source}: {message}") from None


def _swap_in(build: Path, target: Path) -> None:
    give_umask_mode(build)  # mkdtemp made it private; the workspace gets the mode a mkdir would give
    try:
        rename_exclusive(build, target)
    except FileExistsError:
        raise ZooError(f"{target}: appeared while the pack was unpacked (another unpack?); left alone") from None
    except OSError as exc:
        raise ZooError(f"{target}: cannot be made ({_remedy(exc)})") from None


def _check_extracted(target: Path, members: list[zipfile.ZipInfo], source: Path) -> None:
    """After the swap: `target` holds exactly the pack's files at their declared sizes, or it is removed (it is
    this call's: the swap refused to replace anything) and the unpack fails."""
    expected = {_member_name(info): info.file_size for info in members}
    found = {}
    for folder, _, names in os.walk(target):
        for name in names:
            path = Path(folder, name)
            info = path.lstat()
            found[path.relative_to(target).as_posix()] = info.st_size if stat.S_ISREG(info.st_mode) else -1
    if found != expected:
        wrong = sorted(set(found.items()) ^ set(expected.items()))[:3]
        shutil.rmtree(target, ignore_errors=True)
        raise ZooError(
            f"{source}: the unpacked folder {target} did not hold what the pack lists "
            f"(e.g. {', '.join(name for name, _ in wrong)}; changed by another program?); removed it, unpack again"
        )
