"""The workspace on disk: manifest, atomic writes, a writer lock, and safe tensor files.

A crash never leaves half a file: every write goes to a temporary file in the same folder and is renamed
into place. Folders that must change together (the zoo's weights and its table) are written to a temporary
folder and swapped in with `replace_dir`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from core.errors import ZooError

if TYPE_CHECKING:
    import torch

# 2: one weights tensor per architecture, `architectures` in the manifest, an `architecture` column (zoo.py).
FORMAT_VERSION = 2
MANIFEST = "workspace.json"


# ---------------------------------------------------------------- atomic files


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ZooError(f"{path}: missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZooError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected a JSON object")
    return data


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """safetensors with string metadata (numbers and lists JSON-encoded, as the format requires)."""
    from safetensors.torch import save_file  # here, not at the top: reading a workspace's tables needs no torch

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.exists():
        raise ZooError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ZooError(f"{path}: not a readable safetensors file ({exc})") from exc


def write_parquet(path: Path, table: pl.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.write_parquet(tmp)


def read_parquet(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise ZooError(f"{path}: missing")
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several exception types for corrupt files
        raise ZooError(f"{path}: not a readable parquet file ({exc})") from exc


def replace_dir(target: Path, build: Path) -> None:
    """Swap a fully written folder `build` into `target`; the old one is removed only after the swap."""
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(build, target)
    if old.exists():
        shutil.rmtree(old)


def recover_dir(target: Path) -> None:
    """Finish a swap that a crash interrupted between its two renames."""
    old = target.with_name(target.name + ".old")
    if not target.exists() and old.exists():
        os.replace(old, target)


# ---------------------------------------------------------------- the workspace


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def zoo_dir(self) -> Path:
        return self.root / "zoo"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def manifest(self) -> dict:
        if not self.root.exists():
            raise ZooError(f"{self.root}: no such workspace")
        manifest = read_json(self.manifest_path)
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ZooError(f"{self.manifest_path}: format version {version!r} is not one this program reads")
        return manifest

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_path, {**manifest, "format_version": FORMAT_VERSION})

    def new_build_dir(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}.build-", dir=self.root))

    @contextlib.contextmanager
    def lock(self, wait_s: float = 0.0) -> Iterator[None]:
        """An exclusive writer lock; a second writer waits up to `wait_s` and is then told who holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        holder = handle.read().strip() or "another process"
                        raise ZooError(
                            f"{self.root}: busy ({holder} is writing to it); try again when it finishes"
                        ) from None
                    time.sleep(0.2)
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)
