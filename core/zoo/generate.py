"""Generating a model zoo: the plan of models (seeds, inits and settings drawn from lists), training them with the
population trainer a block of models at a time (as many as the memory budget holds, core/zoo/blocks.py), and
resuming an interrupted generation.

The finished zoo replaces the workspace's old one in one swap (core/zoo/model_zoo.py `save_zoo`); until then
the resumable state lives in `zoo.partial/` (core/zoo/partial.py): each saved epoch's weights and their table rows
in a file of their own, written once as the epoch is trained, and the block's populations with the progress in
one file committed after every epoch. The zoo's shards are copied from those snapshot files a shard at a time, so
the weights are never in memory whole, and its table is read from them when the last block has finished.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch

from core.cluster import ClusterConfig, connect, lost_message, placement, run_shards, shard_rows
from core.errors import Interrupted, UserError
from core.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_LR, MAX_MODELS, MAX_SEED
from core.parsing import float_list, int_list, str_list
from core.settings import setting
from core.store.shards import ShardedRows
from core.store.workspace import Workspace
from core.zoo.arch import ACTIVATIONS, Spec
from core.zoo.blocks import block_capacity, check_model_fits, model_blocks, training_bytes
from core.zoo.compiling import MODES as COMPILE_MODES
from core.zoo.compiling import CompileWhenItPays
from core.zoo.data import Dataset, load_dataset
from core.zoo.families import ARCH_NAMES, arch_by_name, family_of
from core.zoo.model_zoo import Progress, Zoo, check_replacing, finish_table, save_zoo
from core.zoo.partial import SNAPSHOT_SCHEMA, Partial, snapshot_table
from core.zoo.population import INITS, Population, init_vectors
from core.zoo.tasks import parse_task


def default_save_epochs(epochs: int) -> tuple[int, ...]:
    """The epochs a zoo keeps unless told otherwise: the init, the first epoch, a quarter, half and the end."""
    return tuple(sorted({0, 1, epochs // 4, epochs // 2, epochs} & set(range(epochs + 1))))


@dataclass(frozen=True)
class ZooConfig:
    dataset: str = setting("digits", "digits, shapes, or a folder of MNIST-family IDX / CIFAR-10 files")
    models: int = setting(256, "number of models (of each architecture)")
    epochs: int = setting(15, "training epochs per model")
    # None: `default_save_epochs(epochs)`, filled in on construction.
    save_epochs: tuple[int, ...] | None = setting(
        None, "epochs to keep, e.g. 0,1,5,15 (0 = the init; default 0,1,E/4,E/2,E)", parse=int_list
    )
    batch_size: int = setting(32, "training batch size")
    seed: int = setting(0, "zoo seed; model seeds derive from it")
    data_seed: int = 0
    # Each model draws one value from each list (a one-element list fixes the setting).
    inits: tuple[str, ...] = setting(
        ("kaiming_uniform",), f"one or more of {','.join(INITS)}", flag="--init", parse=str_list
    )
    lrs: tuple[float, ...] = setting((3e-3,), "one or more learning rates (Adam)", flag="--lr", parse=float_list)
    weight_decays: tuple[float, ...] = setting(
        (0.0,), "one or more L2 weight decays", flag="--weight-decay", parse=float_list
    )
    dropouts: tuple[float, ...] = setting((0.0,), "one or more dropout rates", flag="--dropout", parse=float_list)
    activations: tuple[str, ...] = setting(
        ("relu",), f"one or more of {','.join(ACTIVATIONS)}", flag="--activation", parse=str_list
    )
    # How many distinct initial weight draws the models share (0: every model its own). Models that share
    # an init still differ in data order, dropout masks and the drawn settings. Why 8 by default: with one
    # init per model, the held-out models of a 256-model digits zoo share almost no structure (64 principal
    # components of the training zoo explain 6% of their variance, and reconstructions from them, or from
    # the autoencoder, fall to chance accuracy, aligned or not); with 8 shared inits the same 64 components
    # keep 96% of their accuracy. See bench/ae_quality.py.
    init_seeds: int = setting(8, "how many initial weight draws the models share (0 = every model its own)")
    # "auto": the CNN family member sized for the dataset's images; "resnet": the ResNet preset at their size;
    # or a CNN preset's name (core/zoo/families.py ARCH_NAMES); several, comma-separated, make a zoo of
    # several architectures with `models` models each.
    arch: str = setting(
        "auto",
        f"architecture: {', '.join(ARCH_NAMES)}; several, comma-separated (e.g. cnn-small,resnet), make a mixed zoo",
    )
    # How the models train, not which zoo they make: left out of `key()`, so a run resumes under another mode.
    compile_mode: str = setting(
        "auto",
        "compile the stacked forward pass: auto (on a GPU, when the eager epochs still to come outweigh the "
        "compiling, judged after the first epoch), on, off",
        flag="--compile",
        choices=COMPILE_MODES,
    )

    def __post_init__(self) -> None:
        parse_task(self.dataset)  # the name's grammar and length, before anything is read
        if not 1 <= self.models <= MAX_MODELS:
            raise UserError(f"a zoo needs 1 to {MAX_MODELS} models, got {self.models}")
        if not (0 <= self.epochs <= MAX_EPOCHS and 1 <= self.batch_size <= MAX_BATCH_SIZE):
            raise UserError(f"epochs must lie in 0..{MAX_EPOCHS} and batch size in 1..{MAX_BATCH_SIZE}")
        if self.save_epochs is None:
            object.__setattr__(self, "save_epochs", default_save_epochs(self.epochs))
        self._check_architectures()
        if not (0 <= self.seed <= MAX_SEED and 0 <= self.data_seed <= MAX_SEED):
            raise UserError(f"seeds must lie in 0..{MAX_SEED}, got {self.seed}")
        bad = [e for e in self.save_epochs if not 0 <= e <= self.epochs]
        if bad or not self.save_epochs:
            raise UserError(f"save epochs must lie in 0..{self.epochs}; got {list(self.save_epochs)}")
        for value, allowed, what in ((self.inits, INITS, "init"), (self.activations, ACTIVATIONS, "activation")):
            unknown = set(value) - set(allowed)
            if unknown or not value:
                raise UserError(f"unknown {what} {sorted(unknown)}; choose from {', '.join(allowed)}")
        if self.compile_mode not in COMPILE_MODES:
            raise UserError(f"unknown compile mode {self.compile_mode!r}; choose one of {', '.join(COMPILE_MODES)}")
        if not 0 <= self.init_seeds <= MAX_MODELS:
            raise UserError(f"init seeds must lie in 0..{MAX_MODELS} (0: every model its own init)")
        if not self.lrs or any(not (math.isfinite(lr) and 0 < lr <= MAX_LR) for lr in self.lrs):
            raise UserError(f"learning rates must be finite and positive, at most {MAX_LR:g}; got {list(self.lrs)}")
        if not self.dropouts or any(not 0 <= d < 1 for d in self.dropouts):
            raise UserError(f"dropout rates must lie in [0, 1), got {list(self.dropouts)}")
        if not self.weight_decays or any(not (math.isfinite(w) and w >= 0) for w in self.weight_decays):
            raise UserError(f"weight decays must be finite and >= 0, got {list(self.weight_decays)}")

    def _check_architectures(self) -> None:
        for name in self.arch_names:
            if name not in ARCH_NAMES:
                raise UserError(f"unknown architecture {name!r}; choose one of {', '.join(ARCH_NAMES)}")
            if family_of(name) != "cnn" and any(d > 0 for d in self.dropouts):
                raise UserError(f"dropout is available for the CNN family only; {name} zoos need --dropout 0")
        if len(set(self.arch_names)) != len(self.arch_names):
            raise UserError(f"architecture {self.arch!r} names one architecture twice")

    @property
    def arch_names(self) -> list[str]:
        return [name.strip() for name in self.arch.split(",") if name.strip()] or ["auto"]

    def key(self) -> str:
        """A digest of everything that determines the zoo, to tell a resumable partial run from a stale one.
        `arch` enters only when it is not "auto", so configs from before it existed keep their digest."""
        settings = asdict(self)
        del settings["compile_mode"]
        if settings["arch"] == "auto":
            del settings["arch"]
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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
    replace: bool = False,
    cluster: ClusterConfig | None = None,
) -> list[Zoo]:
    """Train the zoo, saving a resumable state after every epoch; an identical earlier call that was
    interrupted is resumed, a different one restarted. The finished zoo replaces the old one in one swap,
    which must be asked for (`replace`) when the workspace holds a zoo. Returns one Zoo per architecture.

    The models train in blocks whose training state fits the memory budget (core/zoo/blocks.py), one block
    through every epoch after another; a zoo that fits trains as one block. With `cluster`, the models train in
    disjoint shards as Ray tasks (core/cluster.py), each in blocks of the same budget, each finished shard is kept
    under zoo.partial/ and a rerun trains only the shards still missing. A model trains the same in any block or
    population, so the zoo is the one a single block makes (tests/zoo/test_blocks.py, tests/test_cluster.py)."""
    data = load_dataset(config.dataset, seed=config.data_seed)
    specs = {spec.name: spec for spec in zoo_specs(config, data)}
    capacity = block_capacity()
    check_model_fits(list(specs.values()), capacity)
    plan = plan_models(config, list(specs))
    costs = [training_bytes(specs[name]) for name in plan["architecture"]]
    work = _Work(config, specs, plan, data, costs, capacity)
    with workspace.lock():
        partial = Partial(workspace.root / "zoo.partial", config)
        if cluster is None:
            saved = _train_here(work, partial, workspace, replace, device, on_progress, should_stop)
        else:
            saved = _train_on_cluster(work, partial, workspace, replace, cluster, on_progress, should_stop)
        zoos = _assemble(specs, work.plan, saved, config, data, partial.zoo_id)
        save_zoo(workspace, zoos)
        partial.clear()
    return zoos


@dataclass(frozen=True)
class _Work:
    """What a generation trains: its settings, architectures, plan of models and data, each model's training
    bytes (`costs`, in the plan's order) and the bytes a block of models may hold (`capacity`)."""

    config: ZooConfig
    specs: dict[str, Spec]
    plan: pl.DataFrame
    data: Dataset
    costs: list[int]
    capacity: int


def _check_may_write(partial: Partial, workspace: Workspace, replace: bool) -> None:
    """A resumed generation may finish over the zoo it was started over (or its own); else --replace decides."""
    if not partial.may_replace(workspace.zoo_stamp()):
        check_replacing(workspace, replace)


def _train_here(work: _Work, partial: Partial, workspace, replace: bool, device: str, on_progress, should_stop):
    """Every model in this process, a block of models through every epoch at a time, the resumable state
    committed after each epoch. Progress counts (block, epoch) steps over all blocks."""
    widths = {name: spec.n_params for name, spec in work.specs.items()}
    partial.resume(workspace.zoo_stamp(), widths, work.plan.height)
    _check_may_write(partial, workspace, replace)
    todo = partial.blocks_to_train(work.costs, work.capacity)
    blocks, epochs = partial.finished["blocks"] + len(todo), work.config.epochs + 1
    started = time.monotonic()

    def report(number: int, epoch: int, info: dict) -> None:
        if blocks > 1:
            info |= {"block": number + 1, "blocks": blocks}
        if on_progress:
            on_progress(number * epochs + epoch + 1, blocks * epochs, info)
        if should_stop and should_stop() and number * epochs + epoch + 1 < blocks * epochs:
            where = f"epoch {epoch}" + (f" of block {number + 1} of {blocks}" if blocks > 1 else "")
            raise Interrupted(f"stopped after {where}; run the same command again to resume")

    for number, (models, first_epoch) in enumerate(todo, start=partial.finished["blocks"]):
        _train_block(work, partial, models, first_epoch, number, device, started, report)
    return partial.weights


def _train_block(work: _Work, partial: Partial, models: range, first_epoch: int, number: int, device, started, report):
    """One block of models (the `number`-th) from `first_epoch` through the last epoch, its snapshots written and
    its state committed after each epoch; the compile mode is judged per block, since each block's nets are new."""
    config = work.config
    populations = _populations(work.specs, work.plan[models.start : models.stop], device)
    if first_epoch and not partial.restore(populations):
        first_epoch = 0  # the state file did not hold this block: it trains again from its start
    compiler = CompileWhenItPays(config.compile_mode, device, [p.net for p in populations])

    def keep(index: int, name: str, epoch: int, weights: torch.Tensor, table: pl.DataFrame) -> None:
        partial.weights.setdefault(name, []).append(partial.save_snapshot(index, epoch, weights, table, block=number))

    for epoch in range(first_epoch, config.epochs + 1):
        info = _timed_epoch(populations, work.data, epoch, config, keep, compiler, started)
        partial.save(populations, models, epoch)
        if epoch == config.epochs:
            partial.finish_block()
        report(number, epoch, info)


def _timed_epoch(populations, data, epoch: int, config: ZooConfig, keep, compiler, started):
    """`_train_and_snapshot` and the epoch's progress info, which says what was decided about compiling at the
    epoch that decided it (the losses' transfer to the host ends the epoch's queued CUDA work, so the time is
    the training's)."""
    losses, training_s = _train_and_snapshot(populations, data, epoch, config, keep)
    info = {"epoch": epoch, "elapsed_s": time.monotonic() - started}
    if losses:
        info["train_loss"] = float(torch.cat(losses).mean())
    if epoch > 0 and (reason := compiler.after_epoch(training_s, config.epochs - epoch)):
        info["compile"] = reason
    return info


def train_shard(
    config: ZooConfig, specs: dict[str, Spec], data: Dataset, capacity: int, plan: pl.DataFrame, device: str
):
    """One shard's models (rows of the plan) through every epoch, in a Ray worker, in blocks of `capacity` bytes
    of training state: yields each snapshot as it is taken ({"snapshot": (block, population index, architecture,
    epoch), "weights": [models, params], "table": their table rows}) and each epoch's progress ({"epoch",
    "elapsed_s", "train_loss", and "block", "blocks" where there are several}), then {"finished": True}. It keeps
    no snapshot and writes nothing: the driver, which holds the workspace's lock and may be on another machine,
    writes each snapshot as it arrives."""
    blocks = model_blocks([training_bytes(specs[name]) for name in plan["architecture"]], capacity)
    taken = []
    started = time.monotonic()
    for number, models in enumerate(blocks):
        populations = _populations(specs, plan[models.start : models.stop], device)
        compiler = CompileWhenItPays(config.compile_mode, device, [p.net for p in populations])

        def keep(index: int, name: str, epoch: int, weights: torch.Tensor, table: pl.DataFrame) -> None:
            snapshot = (number, index, name, epoch)  # noqa: B023 (used at once)
            taken.append({"snapshot": snapshot, "weights": weights, "table": table})

        for epoch in range(config.epochs + 1):
            info = _timed_epoch(populations, data, epoch, config, keep, compiler, started)
            while taken:  # one at a time, each let go once yielded (`yield from` a list fails in Ray's wrapper)
                yield taken.pop(0)
            yield info | ({"block": number + 1, "blocks": len(blocks)} if len(blocks) > 1 else {})
        del populations, compiler  # before the next block's are built
    yield {"finished": True}


def _train_on_cluster(work: _Work, partial, workspace, replace: bool, cluster: ClusterConfig, on_progress, stop):
    """The models in shards on a Ray cluster; the shards that a previous run finished are not trained again.
    Progress counts (block, epoch) steps over all shards; a lost shard raises Interrupted once the others are
    kept."""
    where = placement(cluster, connect(cluster.cluster), work.plan.height)
    widths = {name: spec.n_params for name, spec in work.specs.items()}
    finished = partial.resume_shards(workspace.zoo_stamp(), where.shards, widths)
    _check_may_write(partial, workspace, replace)
    epochs = work.config.epochs + 1
    rows = {k: shard_rows(work.plan.height, where.shards, k) for k in range(where.shards)}
    steps = {k: len(model_blocks([work.costs[i] for i in rows[k]], work.capacity)) * epochs for k in rows}
    done = {k: steps[k] for k in finished}

    # {shard: {(block, epoch, population): (architecture, Shard)}}: a retried task's repeats land on themselves
    taken = {}

    def arrived(shard: int, item: dict) -> None:
        if "snapshot" in item:  # on disk at once: the driver holds one snapshot at a time
            block, index, name, epoch = item["snapshot"]
            stored = partial.save_snapshot(index, epoch, item["weights"], item["table"], shard=shard, block=block)
            taken.setdefault(shard, {})[(block, epoch, index)] = (name, stored)
            return
        if "finished" in item:
            snapshots = {}
            for _, (name, stored) in sorted(taken.pop(shard, {}).items()):
                snapshots.setdefault(name, []).append(stored)
            partial.save_shard(shard, where.shards, snapshots)
            finished[shard] = snapshots
        else:
            done[shard] = (item.get("block", 1) - 1) * epochs + item["epoch"] + 1
        if on_progress:
            info = {"shard": shard, "shards_done": len(finished), "shards": where.shards}
            info |= {k: item[k] for k in ("epoch", "train_loss", "block", "blocks") if k in item}
            on_progress(sum(done.values()), sum(steps.values()), info)

    todo = {k: (work.plan[rows[k]], where.device) for k in range(where.shards) if k not in finished}
    shared = (work.config, work.specs, work.data, work.capacity)
    lost = run_shards(train_shard, shared, todo, where, arrived, cluster.retries, stop)
    if lost:
        kept = f"the {len(finished)} finished are kept in zoo.partial/; run the same command again to train the rest"
        raise Interrupted(lost_message(lost, where.shards, kept))
    saved = {}
    for shard in sorted(finished):
        for name, stored in finished[shard].items():
            saved.setdefault(name, []).extend(stored)
    return saved


def _populations(specs: dict[str, Spec], plan: pl.DataFrame, device: str) -> list[Population]:
    """One population per (architecture, activation) group of the plan, at its models' initial weights."""
    populations = []
    for _, group in sorted(plan.group_by("architecture", "activation", maintain_order=True)):
        spec = specs[group["architecture"][0]].with_activation(group["activation"][0])
        params = init_vectors(spec, group["init_seed"].to_list(), group["init"].to_list())
        settings = (group[k].to_list() for k in ("seed", "lr", "weight_decay", "dropout"))
        populations.append(Population(spec, params, *settings, device))
    return populations


def _train_and_snapshot(populations, data, epoch: int, config: ZooConfig, keep):
    """One epoch of every population (none at epoch 0), handing a snapshot to `keep(population index, architecture,
    epoch, weights, table rows)` where the config saves the epoch; returns the per-model training losses and the
    seconds spent training (the snapshots' evaluation left out: compiling speeds up training only)."""
    losses, training_s = [], 0.0
    for index, population in enumerate(populations):
        if epoch > 0:
            started = time.monotonic()
            losses.append(population.train_epoch(data.x_train, data.y_train, epoch, config.batch_size).cpu())
            training_s += time.monotonic() - started
        if epoch in config.save_epochs:
            table = _snapshot_table(population, data, epoch)
            keep(index, population.spec.name, epoch, population.weights(), table)
    return losses, training_s


def zoo_specs(config: ZooConfig, data) -> list[Spec]:
    """The zoo's architectures, sized for the dataset's images."""
    return [arch_by_name(name, data.image_shape, data.n_classes, config.activations[0]) for name in config.arch_names]


def _snapshot_table(population: Population, data, epoch: int) -> pl.DataFrame:
    """The population's rows of the zoo's table at `epoch` (SNAPSHOT_SCHEMA): each model's seed and its loss and
    accuracy on the three splits (validation: the images every validation accuracy is scored on, core/zoo/data.py
    SCORED_VAL_IMAGES), as columns (a generation of many models holds no dict per checkpoint)."""
    columns = {"seed": population.seeds.tolist(), "epoch": [epoch] * len(population.seeds)}
    for split, x, y in (
        ("train", data.x_train, data.y_train),
        ("val", *data.scored_val),
        ("test", data.x_test, data.y_test),
    ):
        loss, acc = population.evaluate(x, y)
        columns[f"{split}_loss"], columns[f"{split}_acc"] = loss.tolist(), acc.tolist()
    return pl.DataFrame(columns, schema=SNAPSHOT_SCHEMA)


def _assemble(specs: dict, plan, saved: dict, config: ZooConfig, data, zoo_id: str) -> list[Zoo]:
    """One Zoo per architecture, rows ordered by model and epoch, checkpoints numbered across all of them; each
    reads its weights and table rows from the snapshot files `saved` ({architecture: [Shard]}, epoch by epoch),
    and a zoo's `kept` maps its rows onto their rows."""
    tables = [
        pl.concat([snapshot_table(shard) for shard in saved[name]]).with_columns(pl.int_range(pl.len()).alias("row"))
        for name in specs
    ]
    order = pl.concat(tables).join(plan, on="seed", how="left").sort(["model_id", "epoch"])
    table = finish_table(order.drop("row", "architecture"))
    table = table.with_columns(order["architecture"], order["row"])
    manifest = {
        "dataset": {"name": config.dataset, "seed": config.data_seed, "n_classes": data.n_classes},
        "zoo": {
            "source": "generated",
            "config": asdict(config),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "id": zoo_id,
        },
    }
    zoos = []
    for name, spec in specs.items():
        part = table.filter(pl.col("architecture") == name)
        snapshots = ShardedRows(saved[name], spec.n_params, f"zoo.partial/ ({name})")
        zoos.append(Zoo(spec, snapshots, part.drop("row"), manifest, kept=part["row"].to_numpy().copy()))
    return zoos
