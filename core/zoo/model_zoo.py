"""A model zoo on disk and in use: one `Zoo` per architecture, stored, loaded and validated.

On disk (the README's "A workspace on disk"): `zoo/shards/` holds one float32 [checkpoints, n_params] matrix per
architecture in shards of consecutive checkpoints (core/store/shards.py), one row per model per saved epoch;
`zoo/models.parquet` one row per checkpoint with its model's architecture, settings and metrics. Workspaces
written before shards hold the matrices whole in `zoo/weights.safetensors`, read the same way. A loaded zoo
reads its weights lazily: code asks for rows (`rows`, `iter_chunks`) or column ranges (`columns`), never for the
whole matrix, so a zoo larger than memory can be used. A new zoo is written the same way, a shard at a time as
its rows arrive (`ZooWriter`), and swapped in whole. Generating a zoo is core/zoo/generate.py; importing one,
core/zoo/public.py.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from core.errors import UserError, ZooError
from core.limits import MAX_ABS_WEIGHT
from core.store.budget import chunk_rows
from core.store.files import replace_dir, write_json, write_parquet
from core.store.shards import (
    SHARD_MANIFEST,
    MemoryRows,
    ShardedRows,
    ShardSetWriter,
    open_shard_set,
    open_single_file,
)
from core.store.workspace import MANIFEST, PENDING_MANIFEST, SHARDS, ZOO, Workspace, versioned
from core.zoo.arch import ACTIVATIONS, Spec
from core.zoo.families import spec_from_json
from core.zoo.table import COLUMNS, read_checkpoint_table

Progress = Callable[[int, int, dict], None]


def finish_table(rows: list[dict] | pl.DataFrame) -> pl.DataFrame:
    """Checkpoint rows (sorted by model and epoch; dicts, or a frame, as a generation gives them) -> the stored
    table: numbered, with ggap, columns in order."""
    table = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows, infer_schema_length=None)
    table = table.with_row_index("checkpoint")
    table = table.with_columns(
        pl.col("checkpoint").cast(pl.Int64), (pl.col("train_acc") - pl.col("test_acc")).alias("ggap")
    )
    return table.select(COLUMNS)


# Rows per shard file: about 64 MiB of weights (at least one checkpoint).
SHARD_BYTES = 64 << 20


@dataclass
class Zoo:
    spec: Spec
    # float32 [stored rows, n_params]: shards on disk, or a tensor in memory (a zoo just made); given a tensor,
    # the zoo wraps it.
    store: ShardedRows | MemoryRows | torch.Tensor
    table: pl.DataFrame  # one row per checkpoint, `checkpoint` = row id in the stored table
    manifest: dict
    skipped: list[str] = field(default_factory=list)
    # The stored row of each of the zoo's rows where they are not every stored row in order (None): checkpoints
    # skipped on load, or a generation's snapshots, stored epoch by epoch, read in the table's order.
    kept: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.store, torch.Tensor):
            self.store = MemoryRows(self.store)

    @property
    def dataset(self) -> str:
        return self.manifest.get("dataset", {}).get("name", "unknown")

    def __len__(self) -> int:
        return self.table.height

    def rows(self, index) -> torch.Tensor:
        """float32 [len(index), n_params]: the weights of the zoo's rows `index` (a list, array or tensor)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        return self.store.rows(index if self.kept is None else self.kept[index])

    def span(self, row: int, first: int, last: int) -> torch.Tensor:
        """float32 [last - first]: parameters [first, last) of the zoo's row `row` (e.g. a window's entries)."""
        stored = row if self.kept is None else int(self.kept[row])
        return self.store.block(stored, stored + 1, first, last)[0]

    def columns(self, first: int, last: int) -> torch.Tensor:
        """float32 [checkpoints, last - first]: one range of parameters (e.g. a layer) of every checkpoint."""
        part = self.store.block(0, self.store.shape[0], first, last)
        return part if self.kept is None else part[torch.from_numpy(self.kept)]

    def iter_chunks(self, rows: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, weights [rows, n_params]) in order over the zoo, `rows` at a time (default: what the memory
        budget allows, core/store/budget.py)."""
        rows = rows or chunk_rows(self.spec.n_params)
        for start in range(0, len(self), rows):
            stop = min(start + rows, len(self))
            if self.kept is None:
                yield start, self.store.block(start, stop)
            else:
                yield start, self.rows(np.arange(start, stop))

    @property
    def weights(self) -> torch.Tensor:
        """The whole matrix in memory, for tests on small zoos; the engine asks for rows or chunks."""
        return self.rows(np.arange(len(self)))

    def spec_for(self, row: int) -> Spec:
        """The architecture of one checkpoint (activation may vary inside a zoo)."""
        return self.spec.with_activation(self.table["activation"][row])


# ---------------------------------------------------------------- planning


def combined_table(zoos: list[Zoo]) -> pl.DataFrame:
    """The checkpoint table of a whole workspace: every architecture's rows, in checkpoint order."""
    return _in_checkpoint_order([z.table for z in zoos])


def _in_checkpoint_order(tables: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(tables, how="diagonal_relaxed").sort("checkpoint")


def check_replacing(workspace: Workspace, replace: bool) -> None:
    """Refuse to write a zoo over the workspace's zoo unless asked to: its runs would no longer match it."""
    if replace or not workspace.has_zoo():
        return
    raise UserError(
        f"{workspace.root}: already holds a zoo; replacing it leaves its autoencoder and samples runs stale. "
        "Pass --replace to replace it, or choose a new workspace"
    )


def save_zoo(workspace: Workspace, zoos: list[Zoo]) -> None:
    """Write `zoos` (their rows read a shard at a time) as the workspace's zoo, replacing the old one in one swap
    (`ZooWriter.finish`); the zoos in memory then hold the stored table and manifest and read the stored shards.
    The caller holds the workspace's lock."""
    with ZooWriter(workspace) as writer:
        for zoo in zoos:
            for _, block in zoo.iter_chunks(rows_per_shard(zoo.spec.n_params)):
                writer.add(zoo.spec.name, block)
        saved = writer.finish([(zoo.spec, zoo.table) for zoo in zoos], zoos[0].manifest)
    for zoo, stored in zip(zoos, saved):
        zoo.store, zoo.table, zoo.manifest, zoo.kept = stored.store, stored.table, stored.manifest, None


def rows_per_shard(n_params: int) -> int:
    """Rows in one shard file: about SHARD_BYTES, fewer where the memory budget asks (core/store/budget.py): a
    writer holds a shard's rows at most three times (the rows gathered, their concatenation, the bytes written)."""
    return max(1, min(SHARD_BYTES // (4 * n_params), chunk_rows(n_params, copies=2)))


class ZooWriter:
    """A new zoo written as its rows arrive, in the order of its table, and swapped in for the workspace's zoo by
    `finish`. Rows go to shard files of `rows_per_shard` rows as soon as that many are there, so the writer holds
    less than one shard's rows whatever the size of the zoo; everything lives in a hidden build folder until the
    swap, so a reader never sees a zoo half-written, and the next writer to take the lock deletes a build folder
    that a crash left. The caller holds the workspace's lock from the first row to `finish`.

    A writer that learns late that rows are unsound (an import's model whose last checkpoint is broken) takes them
    back with `cut`."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.build = workspace.new_build_dir("zoo")
        self.shards = ShardSetWriter(self.build / SHARDS)
        self.pending: dict[str, list[torch.Tensor]] = {}

    def __enter__(self) -> ZooWriter:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.build, ignore_errors=True)  # gone already when `finish` swapped it in

    def add(self, name: str, rows: torch.Tensor) -> None:
        """Append float32 [k, n_params] rows to architecture `name`'s matrix; full shards are written at once."""
        pending = self.pending.setdefault(name, [])
        pending.append(rows)
        self._write(name, final=False)

    def rows(self, name: str) -> int:
        """How many rows `name` has so far (written and pending)."""
        return self.shards.rows(name) + sum(len(part) for part in self.pending.get(name, []))

    def cut(self, name: str, keep: int) -> None:
        """Take back the rows of `name` from row `keep` on."""
        pending, written = self.pending.get(name, []), self.shards.rows(name)
        if keep >= written:
            self.pending[name] = [torch.cat(pending)[: keep - written]] if pending else []
        else:
            self.pending[name] = [self.shards.cut(name, keep)]

    def _write(self, name: str, final: bool) -> None:
        """Write the pending rows of `name` as shards of `rows_per_shard` rows (at the end, the rest too)."""
        pending = [part for part in self.pending.get(name, []) if len(part)]
        held = sum(len(part) for part in pending)
        if not pending or (held < rows_per_shard(pending[0].shape[1]) and not final):
            self.pending[name] = pending
            return
        per_shard = rows_per_shard(pending[0].shape[1])
        block = torch.cat(pending) if len(pending) > 1 else pending[0]
        start = 0
        while held - start >= per_shard or (final and start < held):
            self.shards.add(name, block[start : start + per_shard])
            start += per_shard
        self.pending[name] = [block[start:]] if start < held else []

    def finish(self, parts: list[tuple[Spec, pl.DataFrame]], manifest: dict) -> list[Zoo]:
        """Commit the rows added as the matrices of `parts` (each architecture's spec and the table of its rows)
        with the table and the new workspace manifest (format 2: `architectures` maps each name to its spec; the
        zoo gets a fresh id unless `manifest` brings one), swap the build folder in for the old zoo, then move the
        manifest into place (core/store/workspace.py says why readers never see them disagree). Returns the
        zoos, reading their weights from the stored shards."""
        names = [spec.name for spec, _ in parts]
        if len(set(names)) != len(names):
            raise ZooError(f"{self.workspace.root}: architecture names must be unique in a zoo, got {names}")
        for spec, table in parts:
            self._write(spec.name, final=True)
            if spec.name not in self.shards.manifest["tensors"]:  # every checkpoint skipped: an empty matrix
                self.shards.add(spec.name, torch.empty(0, spec.n_params))
            if self.shards.rows(spec.name) != table.height:
                raise ZooError(f"{spec.name}: {self.shards.rows(spec.name)} rows written for {table.height}")
        record = manifest.get("zoo", {})
        stamped = {**manifest, "zoo": {**record, "id": record.get("id") or uuid.uuid4().hex}}
        tables = [_with_architecture(table, spec.name) for spec, table in parts]
        previous = self.workspace.manifest() if self.workspace.exists() else {}
        stored = {**previous, **stamped, "architectures": {spec.name: spec.to_json() for spec, _ in parts}}
        stored.pop("architecture", None)  # format 1's single spec
        root = self.workspace.root
        self.shards.commit()
        write_parquet(self.build / "models.parquet", _in_checkpoint_order(tables))
        write_json(self.build / PENDING_MANIFEST, versioned(stored))
        replace_dir(root / ZOO, self.build)
        os.replace(root / ZOO / PENDING_MANIFEST, root / MANIFEST)
        matrices = open_shard_set(root / ZOO / SHARDS)
        return [Zoo(spec, matrices[spec.name], table, stamped) for (spec, _), table in zip(parts, tables)]


def _with_architecture(table: pl.DataFrame, name: str) -> pl.DataFrame:
    """The table with its `architecture` column (format 1 tables have none) right after `model_id`."""
    table = table.with_columns(pl.lit(name).alias("architecture"))
    columns = [c for c in table.columns if c != "architecture"]
    at = columns.index("model_id") + 1 if "model_id" in columns else len(columns)
    return table.select([*columns[:at], "architecture", *columns[at:]])


def _stored_specs(workspace: Workspace, manifest: dict) -> dict[str, tuple[Spec, str]]:
    """{architecture name: (spec, its matrix's name in the shard set)}; format 1 held one spec under
    `architecture` and one tensor called `weights`."""
    try:
        if "architectures" in manifest:
            entries = manifest["architectures"]
            if not isinstance(entries, dict) or not entries:
                raise ZooError("'architectures' must map names to specs")
            return {name: (spec_from_json(data), name) for name, data in entries.items()}
        if "architecture" in manifest:
            spec = spec_from_json(manifest["architecture"])
            return {spec.name: (spec, "weights")}
    except UserError as exc:
        raise ZooError(f"{workspace.manifest_path}: {exc}") from None
    raise ZooError(f"{workspace.manifest_path}: holds no zoo yet (no architecture); generate or import one")


def _checked_table(path, specs: dict) -> pl.DataFrame:
    """models.parquet, with every column of the right kind and every name one the manifest knows."""
    table = read_checkpoint_table(path)
    if table["checkpoint"].to_list() != list(range(table.height)):
        raise ZooError(f"{path}: column 'checkpoint' must number the rows 0..{table.height - 1}")
    if "architecture" not in table.columns:
        if len(specs) > 1:
            raise ZooError(f"{path}: no 'architecture' column, but the manifest names {len(specs)}")
        table = _with_architecture(table, next(iter(specs)))
    unknown = sorted(set(table["architecture"].unique().to_list()) - set(specs))
    if unknown:
        raise ZooError(f"{path}: architectures {unknown} are not in the workspace's manifest")
    if "activation" in table.columns:
        odd = sorted(set(table["activation"].unique().to_list()) - set(ACTIVATIONS))
        if odd:
            raise ZooError(f"{path}: unknown activations {odd}; known: {', '.join(ACTIVATIONS)}")
    return table


def load_zoos(workspace: Workspace) -> list[Zoo]:
    """Every architecture's zoo, loaded and validated; checkpoints with non-finite weights or no test accuracy
    are reported in `skipped` and left out. Checkpoint ids are shared: they number the rows of the one table."""
    manifest = workspace.manifest()
    specs = _stored_specs(workspace, manifest)
    weights_path, table_path = workspace.zoo_weights_path, workspace.models_table_path
    shards = weights_path.parent
    stores = open_shard_set(shards) if weights_path.name == SHARD_MANIFEST else open_single_file(weights_path)
    table = _checked_table(table_path, specs)
    zoos = []
    for name, (spec, key) in specs.items():
        if key not in stores:
            raise ZooError(f"{weights_path}: has no matrix named {key!r} (architecture {name})")
        part = table.filter(pl.col("architecture") == name)
        if "activation" not in part.columns:
            part = part.with_columns(pl.lit(spec.activation).alias("activation"))
        zoos.append(_validated_part(spec, stores[key], part, manifest, weights_path, table_path))
    if not any(z.table.height for z in zoos):
        raise ZooError(f"{table_path}: no usable checkpoint ({'; '.join(zoos[0].skipped[:3])})")
    return zoos


def _validated_part(spec: Spec, store: ShardedRows, table: pl.DataFrame, manifest: dict, weights_path, table_path):
    """The zoo of one architecture over its stored rows, its shape checked and its rows read once, in chunks, to
    leave out the checkpoints with non-finite or huge weights (the shard headers cannot tell)."""
    where = f"{weights_path} ({spec.name})"
    stored, width = store.shape
    if width != spec.n_params:
        raise ZooError(f"{where}: rows have {width} values, architecture {spec.name} has {spec.n_params}")
    if table.height != stored:
        raise ZooError(f"{table_path}: {table.height} rows of {spec.name}, but {weights_path.name} holds {stored}")
    step = chunk_rows(spec.n_params)
    finite = np.ones(stored, dtype=bool)
    for start in range(0, stored, step):
        finite[start : start + step] = _sound_rows(store.block(start, min(stored, start + step)))
    measured = table["test_acc"].cast(pl.Float64).fill_null(float("nan")).is_finite().to_numpy()
    keep = finite & measured
    left_out = table.filter(pl.Series(~keep)).select("checkpoint", "model_id", "epoch").rows()
    reasons = np.where(finite[~keep], "no test accuracy", f"non-finite weights or weights beyond ±{MAX_ABS_WEIGHT:g}")
    skipped = [f"checkpoint {c} (model {m}, epoch {e}): {why}" for (c, m, e), why in zip(left_out, reasons)]
    kept = np.flatnonzero(keep) if skipped else None
    if skipped:
        table = table.filter(pl.Series(keep))
    return Zoo(spec, store, table, manifest, skipped, kept)


def _sound_rows(rows: torch.Tensor) -> np.ndarray:
    """Bool [rows]: the rows whose weights are all finite and within ±MAX_ABS_WEIGHT (NaN fails the comparison
    too); the caller passes a chunk of the zoo, so |w| never doubles the whole zoo's memory."""
    return (rows.abs() <= MAX_ABS_WEIGHT).all(dim=1).numpy()


def zoo_info(zoos: list[Zoo]) -> dict:
    """The workspace's summary; `architecture` and `n_params` describe the largest architecture when there are
    several, and `architectures` has each one's figures."""
    table = combined_table(zoos)
    test_acc = table["test_acc"]
    largest = max(zoos, key=lambda z: z.spec.n_params)
    return {
        "models": table["model_id"].n_unique(),
        "checkpoints": table.height,
        "n_params": largest.spec.n_params,
        "architecture": " + ".join(z.spec.name for z in zoos),
        "architectures": {
            z.spec.name: {
                "models": z.table["model_id"].n_unique(),
                "checkpoints": z.table.height,
                "n_params": z.spec.n_params,
                "param_counts": z.spec.param_counts(),
            }
            for z in zoos
        },
        "param_counts": largest.spec.param_counts(),
        "dataset": zoos[0].dataset,
        "epochs": sorted(table["epoch"].unique().to_list()),
        "test_acc": {"min": float(test_acc.min()), "mean": float(test_acc.mean()), "max": float(test_acc.max())},
        "skipped": [problem for z in zoos for problem in z.skipped],
    }
