"""A table on disk shown a page at a time: the page's rows are read with a lazy scan and a slice, so a zoo of a
million checkpoints costs the page's rows, not the whole table, on every rerun of the page."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import polars as pl

from core.errors import ZooError
from core.store.files import checked_file

PAGE_ROWS = 500


def row_count(path: Path) -> int:
    """Rows of a parquet file, from its metadata."""
    return int(_read(path, lambda table: table.select(pl.len())).item())


def page_count(rows: int, page_rows: int = PAGE_ROWS) -> int:
    """Pages of `page_rows` rows (at least one, empty, for an empty table)."""
    return max(1, math.ceil(rows / page_rows))


def read_page(path: Path, page: int, page_rows: int = PAGE_ROWS) -> pl.DataFrame:
    """Rows page * page_rows up to page_rows of them (fewer on the last page; none past it); pages count from 0."""
    if page < 0:
        raise ValueError(f"page {page}: pages count from 0")
    return _read(path, lambda table: table.slice(page * page_rows, page_rows))


def _read(path: Path, query: Callable[[pl.LazyFrame], pl.LazyFrame]) -> pl.DataFrame:
    """`query` over a lazy scan of the file, collected; a damaged file is a ZooError naming it."""
    checked_file(path)  # a regular file within the workspace cap (else a ZooError naming it)
    try:
        return query(pl.scan_parquet(path)).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ZooError(f"{path}: not a readable table ({exc})") from None
