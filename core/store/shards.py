"""Row matrices on disk in shards, read lazily: the zoo's weights without holding the zoo in memory.

A shard set is a folder of safetensors files, each one block of consecutive rows of one or more named matrices
(float32 [rows, columns]), and `manifest.json` listing, per matrix, its width and its shards in row order. Reads
open a shard with `safe_open` and take `get_slice` by row and column range, so only the asked-for bytes come into
memory. A new set is committed by one manifest swap: its shards are written under fresh names, the manifest is
replaced atomically, and only then are the files it no longer names deleted; a crash at any point leaves a manifest
whose shards all exist. A single safetensors file of whole matrices (the format before shards) reads as a set of
one shard per matrix.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from core.errors import ZooError
from core.store.files import checked_file, read_json, write_json, write_tensors
from core.store.workspace import SHARD_SET_MANIFEST as SHARD_MANIFEST

SHARD_FORMAT = 1
# The name each shard file gives its block (one matrix per file).
SHARD_KEY = "rows"
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.safetensors$")


@dataclass(frozen=True)
class Shard:
    """One block of rows: the file, the name of its tensor there, and how many rows it holds."""

    path: Path
    key: str
    rows: int


class ShardedRows:
    """A float32 [rows, columns] matrix over shards; every read returns a new tensor of just the rows asked for."""

    def __init__(self, shards: list[Shard], columns: int, where: str):
        self.shards, self.columns, self.where = shards, columns, where
        self.starts = np.cumsum([0] + [s.rows for s in shards])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.starts[-1]), self.columns

    def block(self, start: int, stop: int, first: int = 0, last: int | None = None) -> torch.Tensor:
        """Rows [start, stop) and columns [first, last) as one tensor."""
        last = self.columns if last is None else last
        parts = []
        for k in range(max(0, np.searchsorted(self.starts, start, "right") - 1), len(self.shards)):
            lo, hi = max(start, self.starts[k]), min(stop, self.starts[k + 1])
            if lo >= stop:
                break
            if hi > lo:
                parts.append(self._read(k, int(lo - self.starts[k]), int(hi - self.starts[k]), first, last))
        if len(parts) == 1:  # a block inside one shard: torch.cat would copy it once more
            return parts[0]
        return torch.cat(parts) if parts else torch.empty(0, last - first)

    def rows(self, index) -> torch.Tensor:
        """The rows at `index` (any order, repeats allowed), read as runs of consecutive rows."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= self.shape[0]):
            raise IndexError(f"{self.where}: rows {index.min()}..{index.max()} outside 0..{self.shape[0] - 1}")
        if len(index) and index[-1] - index[0] == len(index) - 1 and (np.diff(index) == 1).all():
            return self.block(int(index[0]), int(index[-1]) + 1)  # one run, in order (a chunk): no reordering copy
        wanted = np.unique(index)
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        runs = np.split(wanted, breaks) if len(wanted) else []
        read = (
            torch.cat([self.block(int(r[0]), int(r[-1]) + 1) for r in runs]) if runs else torch.empty(0, self.columns)
        )
        return read[torch.from_numpy(np.searchsorted(wanted, index))]

    def _read(self, k: int, lo: int, hi: int, first: int, last: int) -> torch.Tensor:
        shard = self.shards[k]
        try:
            with safe_open(str(shard.path), "pt") as handle:
                return handle.get_slice(shard.key)[lo:hi, first:last]
        except (SafetensorError, OSError, ValueError) as exc:
            if not shard.path.exists():
                raise ZooError(f"{shard.path}: gone; the zoo was replaced since it was loaded: load it again") from None
            raise ZooError(f"{shard.path}: not a readable safetensors file ({exc})") from None


class ShardSetWriter:
    """A new shard set written as its rows arrive: every block handed to `add` becomes one shard file at once (the
    writer holds no rows), and `commit` swaps in the manifest that lists them. Until then the folder's manifest
    (if any) names only the previous set: a writer that crashes or is abandoned leaves unlisted files, which no
    reader opens and the next commit deletes (`remove_unlisted`)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.batch = folder, uuid.uuid4().hex[:12]
        self.manifest = {"format": SHARD_FORMAT, "tensors": {}}

    def add(self, name: str, part: torch.Tensor) -> None:
        """Write `part` (float32 [rows, columns]) as the next shard of matrix `name`."""
        tensors = self.manifest["tensors"]
        entry = tensors.setdefault(name, {"columns": None, "shards": []})
        part = part.to(torch.float32)
        if entry["columns"] not in (None, part.shape[1]):
            raise ZooError(f"{self.folder}: blocks of {name!r} differ in width ({entry['columns']}, {part.shape[1]})")
        entry["columns"] = int(part.shape[1])
        # The matrix's position in the file name keeps two names that sanitise alike apart.
        file = f"{_safe_stem(name)}-{self.batch}-{list(tensors).index(name)}-{len(entry['shards']):05d}.safetensors"
        write_tensors(self.folder / file, {SHARD_KEY: part})
        entry["shards"].append({"file": file, "rows": int(part.shape[0])})

    def rows(self, name: str) -> int:
        return sum(shard["rows"] for shard in self.manifest["tensors"].get(name, {"shards": []})["shards"])

    def cut(self, name: str, keep: int) -> torch.Tensor:
        """Forget the rows of `name` from row `keep` on (rows found unsound after they were written): the shards
        past it are deleted, and so is the one it falls in, whose first rows are returned for the caller to add
        again (at most one shard's rows)."""
        entry = self.manifest["tensors"].get(name, {"shards": []})
        head, written = torch.empty(0, entry.get("columns") or 0), self.rows(name)
        while entry["shards"] and written > keep:
            shard = entry["shards"].pop()
            written -= shard["rows"]
            path = self.folder / shard["file"]
            if keep > written:
                head = ShardedRows([Shard(path, SHARD_KEY, shard["rows"])], entry["columns"], str(path)).block(
                    0, keep - written
                )
            path.unlink(missing_ok=True)
        if not entry["shards"]:
            self.manifest["tensors"].pop(name, None)  # a matrix with no rows left is listed only if added again
        return head

    def commit(self) -> dict:
        """Swap in the manifest of every block added, then delete the files it does not name; returns it."""
        write_json(self.folder / SHARD_MANIFEST, self.manifest)
        remove_unlisted(self.folder, self.manifest)
        return self.manifest


def write_shard_set(folder: Path, blocks: dict[str, Iterable[torch.Tensor]]) -> dict:
    """Write each named matrix from its blocks of rows (one shard file per block) and commit them all with one
    manifest swap; files of the previous set are deleted after the swap. Returns the new manifest."""
    writer = ShardSetWriter(folder)
    for name, parts in blocks.items():
        for part in parts:
            writer.add(name, part)
        if name not in writer.manifest["tensors"]:
            raise ZooError(f"{folder}: no rows given for {name!r}")
    return writer.commit()


def remove_unlisted(folder: Path, manifest: dict) -> None:
    """Delete the shard files the manifest does not name (an old set, or one whose commit a crash cut short)."""
    listed = {s["file"] for entry in manifest["tensors"].values() for s in entry["shards"]}
    for path in folder.glob("*.safetensors"):
        if path.name not in listed:
            path.unlink(missing_ok=True)


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40] or "m"


def block_rows(matrix: torch.Tensor, rows: int) -> Iterator[torch.Tensor]:
    """A whole in-memory matrix as blocks of `rows` rows, for `write_shard_set`."""
    for start in range(0, max(1, matrix.shape[0]), max(1, rows)):
        yield matrix[start : start + rows]


# ---------------------------------------------------------------- opening


def open_shard_set(folder: Path) -> dict[str, ShardedRows]:
    """Every matrix of the shard set in `folder`, each shard's header checked against the manifest."""
    path = folder / SHARD_MANIFEST
    manifest = read_json(path)
    tensors = manifest.get("tensors")
    if manifest.get("format") != SHARD_FORMAT or not isinstance(tensors, dict):
        raise ZooError(f"{path}: not a shard manifest of format {SHARD_FORMAT}")
    found = {}
    for name, entry in tensors.items():
        shards = _listed_shards(path, name, entry)
        found[name] = ShardedRows(
            [checked_shard(s, entry["columns"]) for s in shards], entry["columns"], f"{folder} ({name})"
        )
    return found


def _listed_shards(path: Path, name: str, entry) -> list[Shard]:
    """The shards a manifest entry lists, each a plain file name in the set's folder and a row count."""
    problem = None
    if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list):
        problem = "needs 'columns' and a list of 'shards'"
    elif not _count(entry.get("columns"), 1):
        problem = "'columns' must be a positive integer"
    else:
        for shard in entry["shards"]:
            if not isinstance(shard, dict) or not _PLAIN_NAME.match(str(shard.get("file", ""))):
                problem = "each shard needs a plain safetensors file name (no folders)"
            elif not _count(shard.get("rows"), 0):
                problem = f"shard {shard['file']}: 'rows' must be an integer >= 0"
            if problem:
                break
    if problem:
        raise ZooError(f"{path}: matrix {name!r}: {problem}")
    return [Shard(path.parent / s["file"], SHARD_KEY, s["rows"]) for s in entry["shards"]]


def _count(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def open_single_file(path: Path) -> dict[str, ShardedRows]:
    """Every matrix of one safetensors file (the layout before shards), each read as a set of one shard."""
    checked_file(path)
    try:
        with safe_open(str(path), "pt") as handle:
            names = handle.keys()  # the handle itself is not iterable
            shapes = {key: (handle.get_slice(key).get_shape(), handle.get_slice(key).get_dtype()) for key in names}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ZooError(f"{path}: not a readable safetensors file ({exc})") from None
    found = {}
    for key, (shape, dtype) in shapes.items():
        _check_header(f"{path} ({key})", shape, dtype, None, None)
        found[key] = ShardedRows([Shard(path, key, shape[0])], shape[1], f"{path} ({key})")
    return found


def checked_shard(shard: Shard, columns: int) -> Shard:
    """`shard`, once its file holds float32 [shard.rows, columns] under its key (ZooError naming it if not)."""
    checked_file(shard.path)
    try:
        with safe_open(str(shard.path), "pt") as handle:
            view = handle.get_slice(shard.key)
            shape, dtype = view.get_shape(), view.get_dtype()
    except (SafetensorError, OSError, ValueError) as exc:
        raise ZooError(f"{shard.path}: not a readable shard ({exc})") from None
    _check_header(str(shard.path), shape, dtype, shard.rows, columns)
    return shard


def _check_header(where: str, shape: list[int], dtype: str, rows: int | None, columns: int | None) -> None:
    if dtype != "F32" or len(shape) != 2:
        raise ZooError(f"{where}: expected float32 [rows, columns], found {dtype} {list(shape)}")
    if (rows, columns) != (None, None) and tuple(shape) != (rows, columns):
        raise ZooError(f"{where}: holds {list(shape)}, the shard manifest says [{rows}, {columns}]")


class MemoryRows:
    """The `ShardedRows` reads over a tensor already in memory (a zoo just generated or imported)."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix = matrix

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)

    def block(self, start: int, stop: int, first: int = 0, last: int | None = None) -> torch.Tensor:
        return self.matrix[start:stop, first:last].clone()

    def rows(self, index) -> torch.Tensor:
        return self.matrix[torch.as_tensor(np.asarray(index, dtype=np.int64).reshape(-1))]
