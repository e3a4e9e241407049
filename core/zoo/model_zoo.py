"""A model zoo in memory and on disk: one `Zoo` per architecture, stored, loaded and validated.

On disk (the README's "A workspace on disk"): `zoo/weights.safetensors` holds one float32 [checkpoints, n_params]
tensor per architecture, one row per model per saved epoch; `zoo/models.parquet` one row per checkpoint with its
model's architecture, settings and metrics. Generating a zoo is core/zoo/generate.py; importing one,
core/zoo/public.py.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from core.errors import UserError, ZooError
from core.limits import MAX_ABS_WEIGHT
from core.store.files import (
    read_tensors,
    replace_dir,
    write_json,
    write_parquet,
    write_tensors,
)
from core.store.workspace import MANIFEST, PENDING_MANIFEST, ZOO, Workspace, versioned
from core.zoo.arch import ACTIVATIONS, Spec
from core.zoo.families import spec_from_json
from core.zoo.table import COLUMNS, read_checkpoint_table

Progress = Callable[[int, int, dict], None]


def finish_table(rows: list[dict]) -> pl.DataFrame:
    """Checkpoint rows (sorted by model and epoch) -> the stored table: numbered, with ggap, columns in order."""
    table = pl.DataFrame(rows, infer_schema_length=None).with_row_index("checkpoint")
    table = table.with_columns(
        pl.col("checkpoint").cast(pl.Int64), (pl.col("train_acc") - pl.col("test_acc")).alias("ggap")
    )
    return table.select(COLUMNS)


@dataclass
class Zoo:
    spec: Spec
    weights: torch.Tensor  # float32 [checkpoints, n_params]
    table: pl.DataFrame  # one row per checkpoint, `checkpoint` = row id in the stored file
    manifest: dict
    skipped: list[str] = field(default_factory=list)

    @property
    def dataset(self) -> str:
        return self.manifest.get("dataset", {}).get("name", "unknown")

    def spec_for(self, row: int) -> Spec:
        """The architecture of one checkpoint (activation may vary inside a zoo)."""
        return self.spec.with_activation(self.table["activation"][row])


# ---------------------------------------------------------------- planning


def combined_table(zoos: list[Zoo]) -> pl.DataFrame:
    """The checkpoint table of a whole workspace: every architecture's rows, in checkpoint order."""
    return pl.concat([z.table for z in zoos], how="diagonal_relaxed").sort("checkpoint")


def check_replacing(workspace: Workspace, replace: bool) -> None:
    """Refuse to write a zoo over the workspace's zoo unless asked to: its runs would no longer match it."""
    if replace or not workspace.has_zoo():
        return
    raise UserError(
        f"{workspace.root}: already holds a zoo; replacing it leaves its autoencoder and samples runs stale. "
        "Pass --replace to replace it, or choose a new workspace"
    )


def save_zoo(workspace: Workspace, zoos: list[Zoo]) -> None:
    """Write one weights tensor per architecture, one table and the new manifest (format 2: `architectures`
    maps each name to its spec; the zoo gets a fresh id unless its manifest brings one) into a new folder,
    swap it in for the old zoo, then move the manifest into place (core/store/workspace.py says why readers
    never see them disagree). The caller holds the workspace's lock."""
    names = [z.spec.name for z in zoos]
    if len(set(names)) != len(names):
        raise ZooError(f"{workspace.root}: architecture names must be unique in a zoo, got {names}")
    zoo_record = zoos[0].manifest.get("zoo", {})
    stamped = {**zoos[0].manifest, "zoo": {**zoo_record, "id": zoo_record.get("id") or uuid.uuid4().hex}}
    for zoo in zoos:  # the zoos in memory get the column their stored table has, and the manifest
        zoo.table = _with_architecture(zoo.table, zoo.spec.name)
        zoo.manifest = stamped
    previous = workspace.manifest() if workspace.exists() else {}
    manifest = {**previous, **stamped, "architectures": {z.spec.name: z.spec.to_json() for z in zoos}}
    manifest.pop("architecture", None)  # format 1's single spec
    build = workspace.new_build_dir("zoo")
    try:
        write_tensors(build / "weights.safetensors", {z.spec.name: z.weights.to(torch.float32) for z in zoos})
        write_parquet(build / "models.parquet", combined_table(zoos))
        write_json(build / PENDING_MANIFEST, versioned(manifest))
        replace_dir(workspace.root / ZOO, build)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    os.replace(workspace.root / ZOO / PENDING_MANIFEST, workspace.root / MANIFEST)


def _with_architecture(table: pl.DataFrame, name: str) -> pl.DataFrame:
    """The table with its `architecture` column (format 1 tables have none) right after `model_id`."""
    table = table.with_columns(pl.lit(name).alias("architecture"))
    columns = [c for c in table.columns if c != "architecture"]
    at = columns.index("model_id") + 1 if "model_id" in columns else len(columns)
    return table.select([*columns[:at], "architecture", *columns[at:]])


def _stored_specs(workspace: Workspace, manifest: dict) -> dict[str, tuple[Spec, str]]:
    """{architecture name: (spec, its tensor's name in weights.safetensors)}; format 1 held one spec under
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
    tensors = read_tensors(weights_path)
    table = _checked_table(table_path, specs)
    zoos = []
    for name, (spec, key) in specs.items():
        if key not in tensors:
            raise ZooError(f"{weights_path}: has no tensor named {key!r} (architecture {name})")
        part = table.filter(pl.col("architecture") == name)
        if "activation" not in part.columns:
            part = part.with_columns(pl.lit(spec.activation).alias("activation"))
        zoos.append(_validated_part(spec, tensors[key], part, manifest, weights_path, table_path))
    if not any(z.table.height for z in zoos):
        raise ZooError(f"{table_path}: no usable checkpoint ({'; '.join(zoos[0].skipped[:3])})")
    return zoos


def _validated_part(spec: Spec, weights: torch.Tensor, table: pl.DataFrame, manifest: dict, weights_path, table_path):
    where = f"{weights_path} ({spec.name})"
    if weights.dtype != torch.float32 or weights.dim() != 2:
        raise ZooError(f"{where}: expected float32 [checkpoints, params], found {weights.dtype} {list(weights.shape)}")
    if weights.shape[1] != spec.n_params:
        raise ZooError(f"{where}: rows have {weights.shape[1]} values, architecture {spec.name} has {spec.n_params}")
    if table.height != weights.shape[0]:
        raise ZooError(
            f"{table_path}: {table.height} rows of {spec.name}, but {weights_path.name} holds {weights.shape[0]}"
        )
    finite = _sound_rows(weights)
    measured = table["test_acc"].cast(pl.Float64).fill_null(float("nan")).is_finite().to_numpy()
    keep = finite & measured
    left_out = table.filter(pl.Series(~keep)).select("checkpoint", "model_id", "epoch").rows()
    reasons = np.where(finite[~keep], "no test accuracy", f"non-finite weights or weights beyond ±{MAX_ABS_WEIGHT:g}")
    skipped = [f"checkpoint {c} (model {m}, epoch {e}): {why}" for (c, m, e), why in zip(left_out, reasons)]
    if skipped:
        weights, table = weights[torch.from_numpy(keep)], table.filter(pl.Series(keep))
    return Zoo(spec, weights, table, manifest, skipped)


def _sound_rows(weights: torch.Tensor, chunk: int = 4096) -> np.ndarray:
    """Bool [checkpoints]: the rows whose weights are all finite and within ±MAX_ABS_WEIGHT (NaN fails the
    comparison too). In chunks of rows: the whole zoo's |w| at once would double its memory."""
    return np.concatenate(
        [(weights[i : i + chunk].abs() <= MAX_ABS_WEIGHT).all(dim=1).numpy() for i in range(0, len(weights), chunk)]
        or [np.zeros(0, dtype=bool)]
    )


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
