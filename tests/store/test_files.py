"""Files: bounded reads (regular files only, size caps, torch files checked before loading), the umask's modes
on what we write, and table columns checked by kind."""

import errno
import io
import os
import zipfile

import polars as pl
import pytest
import torch

from core.errors import ZooError
from core.store.files import (
    atomic_path,
    check_columns,
    read_bytes,
    read_json,
    read_parquet,
    read_torch,
    write_error,
    write_json,
    write_parquet,
)
from core.store.workspace import Workspace


@pytest.fixture
def special_files(tmp_path):
    """Paths that must never be read as data: a link to /dev/zero, a FIFO, a folder."""
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "folder.json").mkdir()
    return [tmp_path / name for name in ("zero.json", "fifo.json", "folder.json")]


def test_special_files_are_refused_without_reading_them(special_files):
    for path in special_files:
        for read in (read_json, lambda p: read_parquet(p), lambda p: read_torch(p, 1 << 20)):
            with pytest.raises(ZooError, match="not a regular file"):
                read(path)


def test_reads_stop_at_their_cap(tmp_path):
    path = tmp_path / "big.json"
    path.write_text('{"a": "' + "x" * 2000 + '"}')
    assert read_json(path)["a"] == "x" * 2000
    with pytest.raises(ZooError, match="big.json: .*more than"):
        read_json(path, cap=1000)
    with pytest.raises(ZooError, match="more than"):
        read_bytes(path, 100)


def test_a_deflated_checkpoint_is_refused_by_its_unpacked_size(tmp_path):
    """A small file that unpacks to far more than the cap never reaches torch.load."""
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buffer)
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("bomb/data/padding", bytes(8 << 20))  # 8 MiB of zeros, a few KiB deflated
    assert path.stat().st_size < 100_000
    with pytest.raises(ZooError, match="unpacks to 8.0 MiB"):
        read_torch(path, 1 << 20)


def test_a_torch_file_within_its_cap_loads_weights_only(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "ok.pt")
    assert torch.equal(read_torch(tmp_path / "ok.pt", 1 << 20)["w"], torch.ones(3))


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_and_zoo_folders_get_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        write_parquet(tmp_path / "t.parquet", pl.DataFrame({"a": [1]}))
        build = Workspace(tmp_path / "ws").new_build_dir("zoo")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "t.parquet").stat().st_mode & 0o777 == mode
    assert build.stat().st_mode & 0o777 == 0o777 & ~mask  # a zoo folder is swapped in from such a folder


@pytest.mark.parametrize(
    "table, message",
    [
        (pl.DataFrame({"id": ["1"], "acc": [0.5], "v": [[1.0]]}), "'id' should hold int"),
        (pl.DataFrame({"id": [1, None], "acc": [0.5, 0.5], "v": [[1.0], [1.0]]}), "'id' has 1 empty"),
        (pl.DataFrame({"id": [1], "acc": ["0.5"], "v": [[1.0]]}), "'acc' should hold number"),
        (pl.DataFrame({"id": [1, 2], "acc": [0.5, 0.5], "v": [[1.0], [1.0, 2.0]]}), "vectors of different lengths"),
        (pl.DataFrame({"id": [1], "acc": [0.5]}), "missing column 'v'"),
    ],
)
def test_columns_are_checked_by_kind(table, message):
    with pytest.raises(ZooError, match=message):
        check_columns(table, {"id": "int", "acc": "number", "v": "vector"}, "t.parquet")


# ---------------------------------------------------------------- tables bounded by what they decode to


def test_a_table_reads_back_as_written(tmp_path):
    table = pl.DataFrame(
        {
            "id": pl.Series([1, 2, 3], dtype=pl.Int64),
            "name": ["a", None, "c"],
            "vector": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
            "acc": [0.5, None, float("nan")],
        }
    )
    write_parquet(tmp_path / "t.parquet", table)
    assert read_parquet(tmp_path / "t.parquet").equals(table)
    write_parquet(tmp_path / "empty.parquet", table.clear())
    assert read_parquet(tmp_path / "empty.parquet").schema == table.schema


def test_a_small_file_that_decodes_beyond_the_bound_is_refused_from_its_footer(tmp_path, monkeypatch):
    """A million equal values compress to a few kB on disk but decode to 8 MB: the footer's value count says so
    before any page is decoded (the issue's 136 MB file decoded to 16 GB)."""
    path = tmp_path / "bomb.parquet"
    pl.DataFrame({"x": pl.zeros(1_000_000, dtype=pl.Int64, eager=True)}).write_parquet(path)
    assert path.stat().st_size < 100_000
    monkeypatch.setattr("core.store.files.MAX_TABLE_BYTES", 1 << 20)
    with pytest.raises(ZooError, match=r"bomb.parquet: decodes to 7.6 MiB \(its footer says\), more than the 1.0 MiB"):
        read_parquet(path)


def test_a_footer_that_understates_is_caught_as_the_row_groups_are_read(tmp_path, monkeypatch):
    path = tmp_path / "liar.parquet"
    pl.DataFrame({"x": list(range(200_000))}).write_parquet(path, row_group_size=50_000)
    monkeypatch.setattr("core.store.files.MAX_TABLE_BYTES", 1 << 20)
    monkeypatch.setattr("core.store.files.decoded_bytes", lambda metadata: 0)  # the footer claims nothing
    with pytest.raises(ZooError, match="liar.parquet: decodes to more than the 1.0 MiB read from a table"):
        read_parquet(path)


# ---------------------------------------------------------------- failed writes name their file


class _RustError(Exception):
    """What safetensors and polars raise for an I/O error: their own type, the errno only in the text."""


def test_a_failed_write_becomes_an_os_error_naming_the_file(tmp_path, monkeypatch):
    target = tmp_path / "weights.safetensors"
    rust = write_error(_RustError("Error while serializing: I/O error: No space left on device (os error 28)"), target)
    assert (rust.errno, rust.filename) == (errno.ENOSPC, str(target))
    nameless = write_error(OSError(errno.EROFS, "Read-only file system"), target)
    assert (nameless.errno, nameless.filename) == (errno.EROFS, str(target))
    hidden = f"{tmp_path}/.weights.safetensors.x1.tmp"
    temporary = write_error(OSError(errno.EACCES, "Permission denied", hidden), target)
    assert temporary.filename == str(target)  # the file the user named, not our hidden temporary one
    named = OSError(errno.EACCES, "Permission denied", "/elsewhere")
    assert write_error(named, target) is named
    assert write_error(ZooError("refused"), target) is None and write_error(RuntimeError("a bug"), target) is None
    monkeypatch.setattr(os, "statvfs", lambda path: os.statvfs_result((4096,) * 2 + (100, 0, 0) + (0,) * 5))
    full = write_error(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), target)
    assert (full.errno, full.filename) == (errno.ENOSPC, str(target))  # torch says no errno: the disk is asked


def test_a_full_disk_inside_a_write_is_an_os_error_and_leaves_no_temporary_file(tmp_path):
    with pytest.raises(OSError, match="No space left on device") as caught, atomic_path(tmp_path / "t.parquet"):
        raise _RustError("Error while writing: No space left on device (os error 28)")
    assert caught.value.filename == str(tmp_path / "t.parquet") and list(tmp_path.iterdir()) == []
