"""Files that are never half-written: atomic writes of JSON, tensors and tables, and reads that name the file
when it is missing or broken.

Every write goes to a temporary file in the same folder and is renamed into place. Folders that must change
together (a zoo's weights and its table) are written to a temporary folder and swapped in with `replace_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from core.errors import ZooError

if TYPE_CHECKING:
    import torch


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
    # lazy: safetensors.torch imports torch, and the app's first page reads tables only
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError  # lazy: see write_tensors
    from safetensors.torch import load_file  # lazy: see write_tensors

    if not path.exists():
        raise ZooError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ZooError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_tensor_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file (its header), without reading the tensors."""
    from safetensors import SafetensorError, safe_open  # lazy: see write_tensors

    try:
        with safe_open(str(path), "pt") as handle:
            return dict(handle.metadata() or {})
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
