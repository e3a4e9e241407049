"""The zoo's checkpoint table (`zoo/models.parquet`): its columns, and reading it checked column by column.
Free of torch, so that the app's first page, which reads the table alone, checks it as the engine does."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from core.store.files import check_columns, read_parquet

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
SETTINGS = ("seed", "init_seed", "init", "lr", "weight_decay", "dropout", "activation", "batch_size")
COLUMNS = ("checkpoint", "model_id", "epoch", *SETTINGS, *METRICS, "ggap")

# What every stored table has, by kind (core/store/files.py `check_columns`); `architecture` and `activation`
# are checked where present (format 1 tables and old imports may lack them).
REQUIRED_COLUMNS = {"checkpoint": "int", "model_id": "int", "epoch": "int", **dict.fromkeys(METRICS, "number")}
NAME_COLUMNS = ("architecture", "activation")


def read_checkpoint_table(path: Path) -> pl.DataFrame:
    """models.parquet, each column of its kind (a hand-edited one fails here, naming the file)."""
    table = read_parquet(path)
    check_columns(table, {**REQUIRED_COLUMNS, **{c: "str" for c in NAME_COLUMNS if c in table.columns}}, path)
    return table
