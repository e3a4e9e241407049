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

from core.arch import ACTIVATIONS, Spec
from core.data import load_dataset
from core.errors import Interrupted, UserError, ZooError
from core.families import ARCH_NAMES, arch_by_name, family_of, spec_from_json
from core.population import INITS, Population, init_vectors
from core.workspace import (
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
    # or a CNN preset's name (see core.families.ARCH_NAMES).
    arch: str = "auto"

    def __post_init__(self) -> None:
        if self.arch not in ARCH_NAMES:
            raise UserError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCH_NAMES)}")
        if family_of(self.arch) != "cnn" and any(d > 0 for d in self.dropouts):
            raise UserError(f"dropout is available for the CNN family only; {self.arch} zoos need --dropout 0")
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


def plan_models(config: ZooConfig) -> pl.DataFrame:
    """One row per model: its seed and the settings it draws from the config's lists."""
    rng = np.random.default_rng([config.seed, 1])

    def draw(options):
        return [options[i] for i in rng.integers(0, len(options), config.models)]

    return pl.DataFrame(
        {
            "model_id": list(range(config.models)),
            "seed": [model_seed(config.seed, i) for i in range(config.models)],
            "init_seed": [
                model_seed(config.seed + 1, i % config.init_seeds) if config.init_seeds else model_seed(config.seed, i)
                for i in range(config.models)
            ],
            "init": draw(config.inits),
            "lr": [float(v) for v in draw(config.lrs)],
            "weight_decay": [float(v) for v in draw(config.weight_decays)],
            "dropout": [float(v) for v in draw(config.dropouts)],
            "activation": draw(config.activations),
            "batch_size": [config.batch_size] * config.models,
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
    interrupted is resumed, a different one restarted. The finished zoo replaces the old one in one swap."""
    data = load_dataset(config.dataset, seed=config.data_seed)
    spec = arch_by_name(config.arch, data.image_shape, data.n_classes, config.activations[0])
    plan = plan_models(config)
    groups = [g for _, g in sorted(plan.group_by("activation", maintain_order=True), key=lambda kv: kv[0])]
    populations = []
    for group in groups:
        group_spec = spec.with_activation(group["activation"][0])
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
                    saved_weights.append(weights)
                    saved_rows += rows
            partial.save(populations, epoch, saved_weights, saved_rows)
            if on_progress:
                info = {"epoch": epoch, "elapsed_s": time.monotonic() - started}
                if losses:
                    info["train_loss"] = float(torch.cat(losses).mean())
                on_progress(epoch + 1, total, info)
            if should_stop and should_stop() and epoch < config.epochs:
                raise Interrupted(f"stopped after epoch {epoch}; run the same command again to resume")

        zoo = _assemble(spec, plan, saved_weights, saved_rows, config, data)
        save_zoo(workspace, zoo)
        partial.clear()
    return zoo


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


def _assemble(spec, plan, saved_weights, saved_rows, config: ZooConfig, data) -> Zoo:
    weights = torch.cat(saved_weights)
    joined = pl.DataFrame(saved_rows, schema_overrides={"seed": pl.Int64}).join(plan, on="seed", how="left")
    order = joined.with_row_index("row").sort(["model_id", "epoch"])
    weights = weights[torch.from_numpy(order["row"].cast(pl.Int64).to_numpy().copy())]
    table = finish_table(order.drop("row").to_dicts())
    manifest = {
        "architecture": spec.to_json(),
        "dataset": {"name": config.dataset, "seed": config.data_seed, "n_classes": data.n_classes},
        "zoo": {"source": "generated", "config": asdict(config), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
    return Zoo(spec, weights, table, manifest)


class _Partial:
    """The resumable state of an unfinished generation, kept apart from the finished zoo."""

    def __init__(self, folder: Path, config: ZooConfig):
        self.folder, self.config = folder, config

    def resume(self, populations: list[Population]) -> tuple[int, list[torch.Tensor], list[dict]]:
        progress = self.folder / "progress.json"
        if not progress.exists():
            return 0, [], []
        try:
            info = json.loads(progress.read_text())
            if info.get("config_key") != self.config.key():
                raise ValueError("different settings")
            state = read_tensors(self.folder / "state.safetensors")
            for i, population in enumerate(populations):
                population.load_state({k.split("/", 1)[1]: v for k, v in state.items() if k.startswith(f"{i}/")})
            saved = [state["saved_weights"]] if "saved_weights" in state else []
            return int(info["epoch"]) + 1, saved, info["rows"]
        except (ValueError, KeyError, ZooError, RuntimeError):
            self.clear()  # stale or unreadable: start over rather than mix runs
            return 0, [], []

    def save(self, populations: list[Population], epoch: int, saved_weights: list[torch.Tensor], rows: list[dict]):
        tensors = {f"{i}/{k}": v for i, p in enumerate(populations) for k, v in p.state().items()}
        if saved_weights:
            tensors["saved_weights"] = torch.cat(saved_weights)
        write_tensors(self.folder / "state.safetensors", tensors)
        write_json(self.folder / "progress.json", {"config_key": self.config.key(), "epoch": epoch, "rows": rows})

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------- storing and loading


def save_zoo(workspace: Workspace, zoo: Zoo) -> None:
    """Write weights and table to a fresh folder, swap it in, then update the manifest."""
    build = workspace.new_build_dir("zoo")
    try:
        write_tensors(build / "weights.safetensors", {"weights": zoo.weights.to(torch.float32)})
        write_parquet(build / "models.parquet", zoo.table)
        replace_dir(workspace.zoo_dir, build)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    previous = workspace.manifest() if workspace.exists() else {}
    workspace.write_manifest({**previous, **zoo.manifest})


REQUIRED_COLUMNS = ("checkpoint", "model_id", "epoch", *METRICS)


def load_zoo(workspace: Workspace) -> Zoo:
    """Load and validate; checkpoints with non-finite weights are reported in `skipped` and left out."""
    manifest = workspace.manifest()
    if "architecture" not in manifest:
        raise ZooError(f"{workspace.manifest_path}: holds no zoo yet (no architecture); generate or import one")
    spec = spec_from_json(manifest["architecture"])
    recover_dir(workspace.zoo_dir)
    weights_path, table_path = workspace.zoo_dir / "weights.safetensors", workspace.zoo_dir / "models.parquet"
    tensors = read_tensors(weights_path)
    if "weights" not in tensors:
        raise ZooError(f"{weights_path}: has no tensor named 'weights'")
    weights = tensors["weights"]
    if weights.dtype != torch.float32 or weights.dim() != 2:
        raise ZooError(
            f"{weights_path}: expected float32 [checkpoints, params], found {weights.dtype} {list(weights.shape)}"
        )
    if weights.shape[1] != spec.n_params:
        raise ZooError(
            f"{weights_path}: rows have {weights.shape[1]} values, architecture {spec.name} has {spec.n_params}"
        )
    table = read_parquet(table_path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ZooError(f"{table_path}: missing columns {missing}")
    if table.height != weights.shape[0]:
        raise ZooError(
            f"{table_path}: {table.height} rows, but {weights_path.name} holds {weights.shape[0]} checkpoints"
        )
    if table["checkpoint"].to_list() != list(range(table.height)):
        raise ZooError(f"{table_path}: column 'checkpoint' must number the rows 0..{table.height - 1}")
    finite = torch.isfinite(weights).all(dim=1)
    skipped = [
        f"checkpoint {i} (model {table['model_id'][i]}, epoch {table['epoch'][i]}): non-finite weights"
        for i in torch.nonzero(~finite).flatten().tolist()
    ]
    if skipped:
        keep = finite.numpy()
        weights, table = weights[finite], table.filter(pl.Series(keep))
    return Zoo(spec, weights, table, manifest, skipped)


def zoo_info(zoo: Zoo) -> dict:
    test_acc = zoo.table["test_acc"]
    return {
        "models": zoo.table["model_id"].n_unique(),
        "checkpoints": zoo.table.height,
        "n_params": zoo.spec.n_params,
        "architecture": zoo.spec.name,
        "param_counts": zoo.spec.param_counts(),
        "dataset": zoo.dataset,
        "epochs": sorted(zoo.table["epoch"].unique().to_list()),
        "test_acc": {"min": float(test_acc.min()), "mean": float(test_acc.mean()), "max": float(test_acc.max())},
        "skipped": zoo.skipped,
    }
