"""A workspace as one zip file: what the app's prebuilt default ships as, and how users move workspaces around.

A pack holds what is needed to use a workspace (manifest, zoo, finished autoencoder runs with their maps and
evaluations, sample runs) and leaves out what only resuming needs (optimiser state, partial runs, the lock).
Unpacking checks every member's name, extracts into a hidden build folder beside the target and renames it into
place, so a failed unpack never leaves half a workspace, and then loads the zoo to validate it.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from core.errors import ZooError
from core.store.files import atomic_path
from core.store.workspace import MANIFEST, Workspace, checked_output

# Checks that a workspace is whole (e.g. its zoo loads), raising a UserError that names what is wrong. Packing
# knows files, not zoos: the caller passes the check (core/pipeline.py passes the zoo loader).
Validate = Callable[[Workspace], object]

# Left out of packs: resumable training state and anything hidden (locks, build and partial folders).
_SKIPPED_FILES = {"train_state.pt"}


def _packed_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and path.name not in _SKIPPED_FILES and not any(p.startswith(".") for p in relative.parts):
            if relative.parts[0] == "zoo.partial":
                continue
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
            archive.writestr(info, (workspace.root / relative).read_bytes())
    return {"pack": str(out), "files": len(files), "bytes": out.stat().st_size}


def _safe_members(archive: zipfile.ZipFile, source: Path) -> list[zipfile.ZipInfo]:
    members = []
    for info in archive.infolist():
        name = PurePosixPath(info.filename)
        if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
            raise ZooError(f"{source}: member {info.filename!r} points outside the workspace")
        if not info.is_dir():
            members.append(info)
    if MANIFEST not in {m.filename for m in members}:
        raise ZooError(f"{source}: not a workspace pack (no {MANIFEST} at its top level)")
    return members


def unpack_workspace(source: str | Path, target: str | Path, validate: Validate) -> Workspace:
    """Extract the pack `source` into the new folder `target`, check it with `validate` before it appears there,
    and return it."""
    source, target = Path(source).expanduser(), Path(target).expanduser()
    if target.exists():
        raise ZooError(f"{target}: already exists; unpack into a new folder")
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ZooError(f"{source}: not a readable zip file ({exc})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    build = target.parent / f".{target.name}.unpack"
    shutil.rmtree(build, ignore_errors=True)
    try:
        with archive:
            for info in _safe_members(archive, source):
                path = build / info.filename
                path.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        validate(Workspace(build))
        build.rename(target)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ZooError(f"{source}: damaged pack ({exc})") from None
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return Workspace(target)
