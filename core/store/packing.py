"""A workspace as one zip file: what the app's prebuilt default ships as, and how users move workspaces around.

A pack holds what is needed to use a workspace (manifest, zoo, finished autoencoder runs with their maps and
evaluations, sample runs) and leaves out what only resuming needs (optimiser state, partial runs, the lock).
It holds data only: JSON, parquet and safetensors files (core/limits.py PACK_SUFFIXES). A pickled file could
run code when loaded, so none is packed and a pack that holds one is refused.

Unpacking checks every member before extracting any (name, kind, type, compression, encryption, declared
size and compression ratio; their total against core/limits.py and the free disk space), extracts into a hidden
build folder beside the target and renames it into place, so a failed unpack never leaves half a workspace, and
then loads the zoo to validate it.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from core.errors import ZooError
from core.limits import (
    MAX_PACK_BYTES,
    MAX_PACK_MEMBERS,
    MAX_PACK_RATIO,
    MAX_WORKSPACE_FILE_BYTES,
    PACK_RATIO_FROM_BYTES,
    PACK_SUFFIXES,
)
from core.store.files import atomic_path, checked_file
from core.store.workspace import MANIFEST, Workspace, checked_output

# Checks that a workspace is whole (e.g. its zoo loads), raising a UserError that names what is wrong. Packing
# knows files, not zoos: the caller passes the check (core/pipeline.py passes the zoo loader).
Validate = Callable[[Workspace], object]

# Left out of packs: resumable training state and anything hidden (locks, build and partial folders).
_SKIPPED_FILES = {"train_state.pt"}


def _packed_files(root: Path) -> list[Path]:
    """The workspace's data files: no hidden, partial or resume-only file, and no file of another type."""
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(p.startswith(".") for p in relative.parts) or relative.parts[0] == "zoo.partial":
            continue
        if path.is_file() and path.name not in _SKIPPED_FILES and path.suffix in PACK_SUFFIXES:
            files.append(relative)
    return files


def pack_workspace(workspace: Workspace, out: str | Path, validate: Validate) -> dict:
    """Write `workspace` to the zip file `out` (atomically), after `validate` accepts it; returns what went in."""
    if not workspace.exists():
        raise ZooError(f"{workspace.root}: no workspace to pack (no {MANIFEST})")
    validate(workspace)  # refuse to pack a broken workspace
    out = checked_output(out)
    files = _packed_files(workspace.root)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for relative in files:
            # Fixed timestamps, so packing the same workspace twice gives the same bytes.
            info = zipfile.ZipInfo(relative.as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            checked_file(workspace.root / relative)  # a regular file within the cap, not a link to a device
            archive.writestr(info, (workspace.root / relative).read_bytes())
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
    total = sum(info.file_size for info in members)
    if total > MAX_PACK_BYTES:
        raise ZooError(f"{source}: unpacks to {total:,} bytes, more than the {MAX_PACK_BYTES:,} allowed")
    free = shutil.disk_usage(target_folder).free
    if total > free:
        raise ZooError(f"{source}: unpacks to {total:,} bytes, but {target_folder} has {free:,} bytes free")
    if MANIFEST not in {m.filename for m in members}:
        raise ZooError(f"{source}: not a workspace pack (no {MANIFEST} at its top level)")
    return members


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> None:
    """One member, never more bytes than its declared size (zipfile stops there too; this does not rely on it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    left = info.file_size
    with archive.open(info) as src, open(path, "wb") as dst:
        while chunk := src.read(min(1 << 20, left + 1)):
            left -= len(chunk)
            if left < 0:
                raise ZooError(f"member {info.filename!r} holds more than its declared size")
            dst.write(chunk)


def unpack_workspace(source: str | Path, target: str | Path, validate: Validate) -> Workspace:
    """Extract the pack `source` into the new folder `target`, check it with `validate` before it appears there,
    and return it."""
    source, target = Path(source).expanduser(), Workspace(target).root
    if target.exists():
        raise ZooError(f"{target}: already exists; unpack into a new folder")
    checked_file(source, MAX_PACK_BYTES)  # a regular file (a FIFO would hang the zip reader)
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ZooError(f"{source}: not a readable zip file ({exc})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    build = target.parent / f".{target.name}.unpack"
    shutil.rmtree(build, ignore_errors=True)
    try:
        with archive:
            for info in _safe_members(archive, source, target.parent):
                _extract(archive, info, build / info.filename)
        validate(Workspace(build))
        build.rename(target)
    # A damaged member fails in many ways: bad CRC or header, a truncated or corrupt deflate stream.
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise ZooError(f"{source}: damaged pack ({exc})") from None
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return Workspace(target)
