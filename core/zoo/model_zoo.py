"""Model zoos: generate one with the population trainer, store it, load and validate it.

On disk (see ../shared/DESIGN.md): `zoo/weights.safetensors` holds float32 [checkpoints, n_params], one row per
model per saved epoch; `zoo/models.parquet` one row per checkpoint with its model's settings and metrics.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from core.zoo.arch import ACTIVATIONS, Spec
from core.zoo.data import load_dataset
from core.errors import Interrupted, UserError, ZooError
from core.zoo.families import ARCH_NAMES, arch_by_name, family_of, spec_from_json
from core.zoo.population import INITS, Population, init_vectors
from core.store.workspace import (
    Workspace,
    read_parquet,
    read_tensors,
    recover_dir,
    replace_dir,
    write_json,
    write_parquet,
    write_tensors,
)

Progress = Callable[[int, int, dict], None]

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
SETTINGS = ("seed", "init_seed", "init", "lr", "weight_decay", "dropout", "activation", "batch_size")
COLUMNS = ("checkpoint", "model_id", "epoch", *SETTINGS, *METRICS, "ggap")


def finish_table(rows: list[dict]) -> pl.DataFrame:
    """Checkpoint rows (sorted by model and epoch) -> the stored table: numbered, with ggap, columns in order."""
    table = pl.DataFrame(rows, infer_schema_length=None).with_row_index("checkpoint")
    table = table.with_columns(
        pl.col("checkpoint").cast(pl.Int64), (pl.col("train_acc") - pl.col("test_acc")).alias("ggap")
    )
    return table.select(COLUMNS)


@dataclass(frozen=True)
class ZooConfig:
    dataset: str = "digits"
    models: int = 256
    epochs: int = 15
    save_epochs: tuple[int, ...] = (0, 1, 2, 5, 10, 15)
    batch_size: int = 32
    seed: int = 0
    data_seed: int = 0
    # Each model draws one value from each list (a one-element list fixes the setting).
    inits: tuple[str, ...] = ("kaiming_uniform",)
    lrs: tuple[float, ...] = (3e-3,)
    weight_decays: tuple[float, ...] = (0.0,)
    dropouts: tuple[float, ...] = (0.0,)
    activations: tuple[str, ...] = ("relu",)
    # How many distinct initial weight draws the models share (0: every model its own). Models that share
    # an init still differ in data order, dropout masks and the drawn settings. Why 8 by default: with one
    # init per model, the held-out models of a 256-model digits zoo share almost no structure (64 principal
    # components of the training zoo explain 6% of their variance, and reconstructions from them, or from
    # the autoencoder, fall to chance accuracy, aligned or not); with 8 shared inits the same 64 components
    # keep 96% of their accuracy. See bench/ae_quality.py.
    init_seeds: int = 8
    # "auto": the CNN family member sized for the dataset's images; "resnet": the ResNet preset at their size;
    # or a CNN preset's name (see core.families.ARCH_NAMES); several, comma-separated, make a zoo of
    # several architectures with `models` models each.
    arch: str = "auto"

    def __post_init__(self) -> None:
        for name in self.arch_names:
            if name not in ARCH_NAMES:
                raise UserError(f"unknown architecture {name!r}; choose one of {', '.join(ARCH_NAMES)}")
            if family_of(name) != "cnn" and any(d > 0 for d in self.dropouts):
                raise UserError(f"dropout is available for the CNN family only; {name} zoos need --dropout 0")
        if len(set(self.arch_names)) != len(self.arch_names):
            raise UserError(f"architecture {self.arch!r} names one architecture twice")
        if self.models < 1:
            raise UserError("a zoo needs at least one model")
        if self.epochs < 0 or self.batch_size < 1:
            raise UserError("epochs must be >= 0 and batch size >= 1")
        bad = [e for e in self.save_epochs if not 0 <= e <= self.epochs]
        if bad or not self.save_epochs:
            raise UserError(f"save epochs must lie in 0..{self.epochs}; got {list(self.save_epochs)}")
        for value, allowed, what in ((self.inits, INITS, "init"), (self.activations, ACTIVATIONS, "activation")):
            unknown = set(value) - set(allowed)
            if unknown or not value:
                raise UserError(f"unknown {what} {sorted(unknown)}; choose from {', '.join(allowed)}")
        if self.init_seeds < 0:
            raise UserError("init seeds must be >= 0 (0: every model its own init)")
        if any(not 0 <= d < 1 for d in self.dropouts) or any(lr <= 0 for lr in self.lrs):
            raise UserError("dropout must lie in [0, 1) and learning rates must be positive")

    @property
    def arch_names(self) -> list[str]:
        return [name.strip() for name in self.arch.split(",") if name.strip()] or ["auto"]

    def key(self) -> str:
        """A digest of everything that determines the zoo, to tell a resumable partial run from a stale one.
        `arch` enters only when it is not "auto", so configs from before it existed keep their digest."""
        settings = asdict(self)
        if settings["arch"] == "auto":
            del settings["arch"]
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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


def model_seed(zoo_seed: int, model_id: int) -> int:
    return int(np.random.SeedSequence([zoo_seed, model_id]).generate_state(1)[0])


def plan_models(config: ZooConfig, architectures: list[str] | None = None) -> pl.DataFrame:
    """One row per model: its architecture, seed and the settings it draws from the config's lists.
    With several architectures, each gets `config.models` models, numbered one architecture after another."""
    architectures = architectures or ["?"]
    count = config.models * len(architectures)
    rng = np.random.default_rng([config.seed, 1])

    def draw(options):
        return [options[i] for i in rng.integers(0, len(options), count)]

    return pl.DataFrame(
        {
            "model_id": list(range(count)),
            "architecture": [architectures[i // config.models] for i in range(count)],
            "seed": [model_seed(config.seed, i) for i in range(count)],
            "init_seed": [
                model_seed(config.seed + 1, i % config.init_seeds) if config.init_seeds else model_seed(config.seed, i)
                for i in range(count)
            ],
            "init": draw(config.inits),
            "lr": [float(v) for v in draw(config.lrs)],
            "weight_decay": [float(v) for v in draw(config.weight_decays)],
            "dropout": [float(v) for v in draw(config.dropouts)],
            "activation": draw(config.activations),
            "batch_size": [config.batch_size] * count,
        },
        schema_overrides={"seed": pl.Int64, "init_seed": pl.Int64},
    )


# ---------------------------------------------------------------- generation


def generate_zoo(
    workspace: Workspace,
    config: ZooConfig,
    device: str = "cpu",
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Zoo:
    """Train the zoo, saving a resumable state after every epoch; an identical earlier call that was
    interrupted is resumed, a different one restarted. The finished zoo replaces the old one in one swap.
    Returns the Zoo, or a list of one Zoo per architecture when the config names several."""
    data = load_dataset(config.dataset, seed=config.data_seed)
    specs = {spec.name: spec for spec in zoo_specs(config, data)}
    plan = plan_models(config, list(specs))
    groups = [g for _, g in sorted(plan.group_by("architecture", "activation", maintain_order=True))]
    populations = []
    for group in groups:
        group_spec = specs[group["architecture"][0]].with_activation(group["activation"][0])
        seeds = group["seed"].to_list()
        params = init_vectors(group_spec, group["init_seed"].to_list(), group["init"].to_list())
        populations.append(
            Population(
                group_spec,
                params,
                seeds,
                group["lr"].to_list(),
                group["weight_decay"].to_list(),
                group["dropout"].to_list(),
                device,
            )
        )

    with workspace.lock():
        partial = _Partial(workspace.root / "zoo.partial", config)
        first_epoch, saved_weights, saved_rows = partial.resume(populations)
        total = config.epochs + 1
        started = time.monotonic()
        for epoch in range(first_epoch, config.epochs + 1):
            losses = []
            for population in populations:
                if epoch > 0:
                    losses.append(population.train_epoch(data.x_train, data.y_train, epoch, config.batch_size))
                if epoch in config.save_epochs:
                    weights, rows = _snapshot(population, data, epoch)
                    saved_weights.setdefault(population.spec.name, []).append(weights)
                    saved_rows += rows
            partial.save(populations, epoch, saved_weights, saved_rows)
            if on_progress:
                info = {"epoch": epoch, "elapsed_s": time.monotonic() - started}
                if losses:
                    info["train_loss"] = float(torch.cat(losses).mean())
                on_progress(epoch + 1, total, info)
            if should_stop and should_stop() and epoch < config.epochs:
                raise Interrupted(f"stopped after epoch {epoch}; run the same command again to resume")

        zoos = _assemble(specs, plan, saved_weights, saved_rows, config, data)
        save_zoo(workspace, zoos)
        partial.clear()
    return zoos[0] if len(zoos) == 1 else zoos


def zoo_specs(config: ZooConfig, data) -> list[Spec]:
    """The zoo's architectures, sized for the dataset's images."""
    return [arch_by_name(name, data.image_shape, data.n_classes, config.activations[0]) for name in config.arch_names]


def _snapshot(population: Population, data, epoch: int) -> tuple[torch.Tensor, list[dict]]:
    metrics = {}
    for split, x, y in (
        ("train", data.x_train, data.y_train),
        ("val", data.x_val, data.y_val),
        ("test", data.x_test, data.y_test),
    ):
        loss, acc = population.evaluate(x, y)
        metrics[f"{split}_loss"], metrics[f"{split}_acc"] = loss.tolist(), acc.tolist()
    seeds = population.seeds.tolist()
    rows = [{"seed": seeds[i], "epoch": epoch, **{k: v[i] for k, v in metrics.items()}} for i in range(len(seeds))]
    return population.weights(), rows


def _assemble(specs: dict, plan, saved_weights: dict, saved_rows, config: ZooConfig, data) -> list[Zoo]:
    """One Zoo per architecture, rows ordered by model and epoch, checkpoints numbered across all of them.
    Each architecture's saved rows appear in `saved_rows` in the order of its stacked weights."""
    joined = pl.DataFrame(saved_rows, schema_overrides={"seed": pl.Int64}).join(plan, on="seed", how="left")
    joined = joined.with_columns(pl.int_range(pl.len()).over("architecture").alias("row"))
    order = joined.sort(["model_id", "epoch"])
    table = finish_table(order.drop("row", "architecture").to_dicts())
    table = table.with_columns(order["architecture"], order["row"])
    manifest = {
        "dataset": {"name": config.dataset, "seed": config.data_seed, "n_classes": data.n_classes},
        "zoo": {"source": "generated", "config": asdict(config), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
    zoos = []
    for name, spec in specs.items():
        part = table.filter(pl.col("architecture") == name)
        weights = torch.cat(saved_weights[name])[torch.from_numpy(part["row"].to_numpy().copy())]
        zoos.append(Zoo(spec, weights, part.drop("row"), manifest))
    return zoos


class _Partial:
    """The resumable state of an unfinished generation, kept apart from the finished zoo."""

    def __init__(self, folder: Path, config: ZooConfig):
        self.folder, self.config = folder, config

    def resume(self, populations: list[Population]) -> tuple[int, dict[str, list[torch.Tensor]], list[dict]]:
        progress = self.folder / "progress.json"
        if not progress.exists():
            return 0, {}, []
        try:
            info = json.loads(progress.read_text())
            if info.get("config_key") != self.config.key():
                raise ValueError("different settings")
            state = read_tensors(self.folder / "state.safetensors")
            for i, population in enumerate(populations):
                population.load_state({k.split("/", 1)[1]: v for k, v in state.items() if k.startswith(f"{i}/")})
            saved = {k.split("/", 1)[1]: [v] for k, v in state.items() if k.startswith("saved/")}
            return int(info["epoch"]) + 1, saved, info["rows"]
        except (ValueError, KeyError, ZooError, RuntimeError):
            self.clear()  # stale or unreadable: start over rather than mix runs
            return 0, {}, []

    def save(self, populations: list[Population], epoch: int, saved_weights: dict, rows: list[dict]):
        tensors = {f"{i}/{k}": v for i, p in enumerate(populations) for k, v in p.state().items()}
        tensors.update({f"saved/{name}": torch.cat(parts) for name, parts in saved_weights.items()})
        write_tensors(self.folder / "state.safetensors", tensors)
        write_json(self.folder / "progress.json", {"config_key": self.config.key(), "epoch": epoch, "rows": rows})

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------- storing and loading


def combined_table(zoos: list[Zoo]) -> pl.DataFrame:
    """The checkpoint table of a whole workspace: every architecture's rows, in checkpoint order."""
    return pl.concat([z.table for z in zoos], how="diagonal_relaxed").sort("checkpoint")


def save_zoo(workspace: Workspace, zoos: Zoo | list[Zoo]) -> None:
    """Write one weights tensor per architecture and one table, swap them in together, then update the
    manifest (format 2: `architectures` maps each name to its spec)."""
    zoos = [zoos] if isinstance(zoos, Zoo) else zoos
    names = [z.spec.name for z in zoos]
    if len(set(names)) != len(names):
        raise ZooError(f"{workspace.root}: architecture names must be unique in a zoo, got {names}")
    for zoo in zoos:  # the zoos in memory get the column their stored table has
        zoo.table = _with_architecture(zoo.table, zoo.spec.name)
    table = combined_table(zoos)
    build = workspace.new_build_dir("zoo")
    try:
        write_tensors(build / "weights.safetensors", {z.spec.name: z.weights.to(torch.float32) for z in zoos})
        write_parquet(build / "models.parquet", table)
        replace_dir(workspace.zoo_dir, build)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    previous = workspace.manifest() if workspace.exists() else {}
    manifest = {**previous, **zoos[0].manifest, "architectures": {z.spec.name: z.spec.to_json() for z in zoos}}
    manifest.pop("architecture", None)  # format 1's single spec
    workspace.write_manifest(manifest)


def _with_architecture(table: pl.DataFrame, name: str) -> pl.DataFrame:
    """The table with its `architecture` column (format 1 tables have none) right after `model_id`."""
    table = table.with_columns(pl.lit(name).alias("architecture"))
    columns = [c for c in table.columns if c != "architecture"]
    at = columns.index("model_id") + 1 if "model_id" in columns else len(columns)
    return table.select([*columns[:at], "architecture", *columns[at:]])


REQUIRED_COLUMNS = ("checkpoint", "model_id", "epoch", *METRICS)


def _stored_specs(workspace: Workspace, manifest: dict) -> dict[str, tuple[Spec, str]]:
    """{architecture name: (spec, its tensor's name in weights.safetensors)}; format 1 held one spec under
    `architecture` and one tensor called `weights`."""
    if "architectures" in manifest:
        entries = manifest["architectures"]
        if not isinstance(entries, dict) or not entries:
            raise ZooError(f"{workspace.manifest_path}: 'architectures' must map names to specs")
        return {name: (spec_from_json(data), name) for name, data in entries.items()}
    if "architecture" in manifest:
        spec = spec_from_json(manifest["architecture"])
        return {spec.name: (spec, "weights")}
    raise ZooError(f"{workspace.manifest_path}: holds no zoo yet (no architecture); generate or import one")


def load_zoos(workspace: Workspace) -> list[Zoo]:
    """Every architecture's zoo, loaded and validated; checkpoints with non-finite weights are reported in
    `skipped` and left out. Checkpoint ids are shared: they number the rows of the one table."""
    manifest = workspace.manifest()
    specs = _stored_specs(workspace, manifest)
    recover_dir(workspace.zoo_dir)
    weights_path, table_path = workspace.zoo_dir / "weights.safetensors", workspace.zoo_dir / "models.parquet"
    tensors = read_tensors(weights_path)
    table = read_parquet(table_path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ZooError(f"{table_path}: missing columns {missing}")
    if table["checkpoint"].to_list() != list(range(table.height)):
        raise ZooError(f"{table_path}: column 'checkpoint' must number the rows 0..{table.height - 1}")
    if "architecture" not in table.columns:
        if len(specs) > 1:
            raise ZooError(f"{table_path}: no 'architecture' column, but the manifest names {len(specs)}")
        table = _with_architecture(table, next(iter(specs)))
    unknown = sorted(set(table["architecture"].unique().to_list()) - set(specs))
    if unknown:
        raise ZooError(f"{table_path}: architectures {unknown} are not in {workspace.manifest_path.name}")
    zoos = []
    for name, (spec, key) in specs.items():
        if key not in tensors:
            raise ZooError(f"{weights_path}: has no tensor named {key!r} (architecture {name})")
        part = table.filter(pl.col("architecture") == name)
        zoos.append(_validated_part(spec, tensors[key], part, manifest, weights_path, table_path))
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
    finite = torch.isfinite(weights).all(dim=1)
    skipped = [
        f"checkpoint {c} (model {m}, epoch {e}): non-finite weights"
        for c, m, e in zip(*(table[k].to_numpy()[~finite.numpy()] for k in ("checkpoint", "model_id", "epoch")))
    ]
    if skipped:
        weights, table = weights[finite], table.filter(pl.Series(finite.numpy()))
    return Zoo(spec, weights, table, manifest, skipped)


def load_zoo(workspace: Workspace) -> Zoo:
    """The zoo of a workspace that holds one architecture (steps that read one architecture at a time)."""
    zoos = load_zoos(workspace)
    if len(zoos) > 1:
        names = ", ".join(z.spec.name for z in zoos)
        raise ZooError(f"{workspace.root}: holds {len(zoos)} architectures ({names}); this step reads one at a time")
    return zoos[0]


def zoo_info(zoos: Zoo | list[Zoo]) -> dict:
    """The workspace's summary; `architecture` and `n_params` describe the largest architecture when there are
    several, and `architectures` has each one's figures."""
    zoos = [zoos] if isinstance(zoos, Zoo) else zoos
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
