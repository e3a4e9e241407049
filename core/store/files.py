"""Files that are never half-written, and reads that are bounded and name the file when it is missing or broken.

Every write goes to a temporary file in the same folder (locked by its writer, so that a later write removes
only abandoned ones: core/store/commit.py) and is renamed into place, with the permissions the user's umask
gives new files. Folders that must change together (a zoo's weights and its table) are written to a
temporary folder and swapped in with `replace_dir`.

Every read first checks that the path is a regular file no larger than a cap (core/limits.py): a link to
/dev/zero, a FIFO or a huge file is refused before a byte is read. Torch files are read with
`weights_only=True` only, after checking how large their zip members unpack.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from core.errors import UserError, ZooError, clipped
from core.limits import MAX_JSON_BYTES, MAX_TABLE_BYTES, MAX_WORKSPACE_FILE_BYTES
from core.store.commit import locked_temp_beside, remove_abandoned

if TYPE_CHECKING:
    import torch


# ---------------------------------------------------------------- permissions


def umask() -> int:
    """The process's umask. Read from /proc where there is one: setting it to read it back, even for an
    instant, would race with other threads creating files."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_umask_mode(path: Path) -> None:
    """The mode a plain `open` or `mkdir` would have given: temporary files and folders start private (0600,
    0700), and a rename keeps that."""
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~umask())


# ---------------------------------------------------------------- writes


# core/store/workspace.py MANIFEST, the file that marks a workspace's root (importing it from there: a cycle)
_WORKSPACE_MARK = "workspace.json"
# How far below its root a workspace's files lie: ae/<run>/config.json, zoo/.<build>/weights.safetensors
_WORKSPACE_DEPTH = 3


def refuse_links_in_workspace(path: Path) -> None:
    """A copied workspace is untrusted: a folder in it could be a link elsewhere (`samples` -> /etc), and a file
    written below it would land there. If `path` lies in a workspace (an ancestor a few levels up holds its
    manifest; the outermost such), every folder between that root and `path` must be a real folder."""
    folders = list(path.parents)[:_WORKSPACE_DEPTH]
    roots = [i for i, folder in enumerate(folders) if os.path.lexists(folder / _WORKSPACE_MARK)]
    for folder in folders[: roots[-1]] if roots else []:
        if folder.is_symlink():
            raise ZooError(
                f"{folder}: a symbolic link inside the workspace {folders[roots[-1]]}; files written through it "
                "would land outside the workspace: replace it with the folder it points to"
            )


@contextlib.contextmanager
def atomic_path(path: Path, commit: Callable[[Path, Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; `commit` it to `path` (a rename; default os.replace, looked up when
    called) only if the block succeeds. The temporary file is removed on any failure, and one that a killed
    writer of `path` left is removed first. Never written through a linked folder of a workspace."""
    refuse_links_in_workspace(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(path)
    try:
        fd, tmp = locked_temp_beside(path)
    except OSError as exc:
        raise write_error(exc, path) from exc
    try:
        yield tmp
        give_umask_mode(tmp)
        (commit or os.replace)(tmp, path)
    except Exception as exc:
        failed = write_error(exc, path)
        if failed is None:
            raise
        raise failed from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(fd)  # last: the lock tells cleaners that the file is in use until it is gone


def write_error(exc: Exception, path: Path) -> OSError | None:
    """The OSError, naming `path`, behind a failed write; None when `exc` is not one. Libraries report a full disk
    their own way: Python's file writes without a file name, safetensors and polars as Rust's "(os error 28)" in
    their own exception types, torch.save as a RuntimeError with no errno at all (then the disk is asked)."""
    if isinstance(exc, UserError):
        return None
    if isinstance(exc, OSError):  # named by the file the user knows, not by our hidden temporary one beside it
        hidden = exc.filename is None or Path(exc.filename).name.startswith(f".{path.name}.")
        return OSError(exc.errno, exc.strerror, str(path)) if hidden else exc
    reported = re.search(r"os error (\d+)", str(exc))
    if reported:
        number = int(reported.group(1))
    elif _disk_full(path.parent):
        number = errno.ENOSPC
    else:
        return None
    return OSError(number, os.strerror(number), str(path))


def _disk_full(folder: Path) -> bool:
    try:
        disk = os.statvfs(folder)
    except OSError:
        return False
    return disk.f_blocks > 0 and disk.f_bavail == 0


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- bounded reads


def _size_text(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def _open_regular(path: Path, cap: int) -> tuple[int, int]:
    """(descriptor, size) of `path` once it is known to be a regular file of at most `cap` bytes. Opened
    non-blocking, so that a FIFO cannot hang the open, and checked on the descriptor, so that the file cannot
    be swapped between the check and the read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ZooError(f"{path}: missing") from None
    except OSError as exc:
        raise ZooError(f"{clipped(str(path))}: cannot be read ({exc.strerror})") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file (a folder, device or FIFO); refused"
    elif info.st_size > cap:
        problem = f"{_size_text(info.st_size)}, more than the {_size_text(cap)} read from such a file; refused"
    if problem:
        os.close(fd)
        raise ZooError(f"{path}: {problem}")
    return fd, info.st_size


def checked_file(path: Path, cap: int = MAX_WORKSPACE_FILE_BYTES) -> int:
    """The size of `path`, a regular file of at most `cap` bytes (else ZooError), for readers that open it
    themselves (safetensors, parquet, torch)."""
    fd, size = _open_regular(Path(path), cap)
    os.close(fd)
    return size


def read_bytes(path: Path, cap: int) -> bytes:
    """The contents of the regular file `path`, refused beyond `cap` bytes (also if it grows while read)."""
    fd, _ = _open_regular(Path(path), cap)
    chunks, total = [], 0
    try:
        os.set_blocking(fd, True)
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise ZooError(f"{path}: more than the {_size_text(cap)} read from such a file; refused")
    except OSError as exc:
        raise ZooError(f"{path}: cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_json_value(path: Path, cap: int = MAX_JSON_BYTES) -> Any:
    """Any JSON value (bounded read; numbers too large for a float become inf, which callers check)."""
    try:
        return json.loads(read_bytes(path, cap).decode())
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and ints of too many digits
        raise ZooError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ZooError(f"{path}: not valid JSON (nested too deeply)") from None


def read_json(path: Path, cap: int = MAX_JSON_BYTES) -> dict:
    data = read_json_value(path, cap)
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected a JSON object")
    return data


def read_torch(path: Path, cap: int) -> Any:
    """A torch file read with `weights_only=True` (tensors and plain containers, never arbitrary objects), after
    checking that it and, for the zip format, the sum of its members unpacked stay within `cap` bytes."""
    checked_file(path, cap)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ZooError(f"{path}: not a readable torch file ({exc})") from None
        if unpacked > cap:
            raise ZooError(f"{path}: unpacks to {_size_text(unpacked)}, more than {_size_text(cap)}; refused")
    # lazy: torch is heavy, and the app's first page reads tables only
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    # Never pass torch's own message on: it advises loading with weights_only=False, which would run the code.
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):
            raise ZooError(f"{path}: refused: it holds Python code or objects beyond tensors") from None
        raise ZooError(f"{path}: not a readable torch file (damaged, or not a torch checkpoint)") from None
    except Exception as exc:  # the loader fails on foreign bytes in many ways (EOFError, IndexError, ...)
        raise ZooError(f"{path}: not a readable torch file ({type(exc).__name__})") from None


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

    checked_file(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ZooError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_tensor_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file (its header), without reading the tensors."""
    from safetensors import SafetensorError, safe_open  # lazy: see write_tensors

    checked_file(path)
    try:
        with safe_open(str(path), "pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ZooError(f"{path}: not a readable safetensors file ({exc})") from exc


def write_parquet(path: Path, table: pl.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.write_parquet(tmp)


def read_parquet(path: Path, columns: dict[str, str] | None = None) -> pl.DataFrame:
    """A table, checked to have `columns` ({name: kind}, see `check_columns`) when given. Bounded by what it
    decodes to, not only by its size on disk: a 136 MB file can decode to 16 GB, and polars' reader then aborts
    the process on the failed allocation (exit 134, no message). So the footer is read first, and the row groups
    are read one by one with pyarrow (whose failed allocations are a MemoryError) within MAX_TABLE_BYTES."""
    checked_file(path)
    try:
        table = _bounded_table(path, MAX_TABLE_BYTES)
    except ZooError:
        raise
    except MemoryError:
        raise ZooError(f"{path}: not enough memory to read this table; refused") from None
    except Exception as exc:  # pyarrow raises several exception types for corrupt files
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZooError(f"{path}: not a readable parquet file ({message})") from None
    if columns:
        check_columns(table, columns, path)
    return table


# Bytes per value as decoded, by parquet physical type; byte arrays (text) at least their 8-byte offset.
_DECODED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}


def decoded_bytes(metadata) -> int:
    """A lower bound of what a parquet file decodes to, from its footer (pyarrow FileMetaData): per column chunk,
    its uncompressed pages or its values times their width, whichever is larger (a run-length or dictionary
    encoding can decode to far more than its uncompressed pages)."""
    total = 0
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        for j in range(group.num_columns):
            column = group.column(j)
            width = _DECODED_WIDTH.get(column.physical_type, 8)
            total += max(column.total_uncompressed_size, column.num_values * width, 0)
    return total


def _bounded_table(path: Path, cap: int) -> pl.DataFrame:
    """The parquet file as a DataFrame, refused (ZooError) when its footer says it decodes to more than `cap`
    bytes, or when the row groups read so far hold more (a footer may lie)."""
    import pyarrow as pa  # lazy: pyarrow takes most of a second to import, and the app's first page reads no table
    import pyarrow.parquet as pq  # lazy: see above

    with pq.ParquetFile(path) as parquet:
        declared = decoded_bytes(parquet.metadata)
        if declared > cap:
            raise ZooError(f"{path}: decodes to {_size_text(declared)} (its footer says), more than the "
                           f"{_size_text(cap)} read from a table; refused")  # fmt: skip
        groups, held = [], 0
        for i in range(parquet.num_row_groups):
            groups.append(parquet.read_row_group(i))
            held += groups[-1].nbytes
            if held > cap:
                raise ZooError(f"{path}: decodes to more than the {_size_text(cap)} read from a table; refused")
        table = pa.concat_tables(groups) if groups else parquet.schema_arrow.empty_table()
    return pl.from_arrow(table)


def _kind_of(column: pl.Series) -> str | None:
    dtype = column.dtype
    if dtype.is_integer():
        return "int"
    if dtype.is_numeric():
        return "number"
    if dtype == pl.String:
        return "str"
    if isinstance(dtype, pl.List | pl.Array) and dtype.inner.is_numeric():
        return "vector"
    return None


def check_columns(table: pl.DataFrame, columns: dict[str, str], path: Path) -> None:
    """Each named column is there and of its kind: "int" and "str" without nulls (ids, names), "number" (an
    integer column counts; nulls allowed: a metric may be unmeasured), "vector" (numeric lists of one length,
    without nulls)."""
    for name, kind in columns.items():
        if name not in table.columns:
            raise ZooError(f"{path}: missing column {name!r}")
        column = table[name]
        found = _kind_of(column)
        if found != kind and not (kind == "number" and found == "int"):
            raise ZooError(f"{path}: column {name!r} should hold {kind} values, found {column.dtype}")
        if kind != "number" and column.null_count():
            raise ZooError(f"{path}: column {name!r} has {column.null_count()} empty values")
        if kind == "vector" and isinstance(column.dtype, pl.List) and column.list.len().n_unique() > 1:
            raise ZooError(f"{path}: column {name!r} holds vectors of different lengths")


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
