"""The resumable state of an unfinished zoo generation (`zoo.partial/`), kept apart from the finished zoo.

Each saved epoch's snapshot of a population is a file of its own (`snapshot-<epoch>-<population>.safetensors`,
written once; `block-<k>-snapshot-...` in the k-th block of models after the first, core/zoo/blocks.py) that also
holds the snapshot's rows of the zoo's table (each model's seed, epoch and metrics) in its metadata, and one file
holds the populations of the block in training with the progress (settings digest, the block and its last epoch,
the finished blocks, the snapshot files so far) in its metadata, so the state and the progress it belongs to are
committed in one rename. A snapshot written after the last such commit is not listed; the epoch is trained again
and the snapshot written over. On a Ray cluster, each shard's snapshots (`shard-<k>-snapshot-...`) are listed by
the shard's progress file `shard-<k>.json`, committed when the shard has finished.

Why the rows live in the snapshot files: the progress is committed after every epoch of every block, and while it
carried every row so far (a dict per checkpoint, JSON-encoded anew each time), its cost grew with the square of
the blocks and its rows, held to the end, with the zoo. Now the progress lists files only, and the table is read
from the listed files once, when the zoo is assembled (`snapshot_table`). The progress of a generation from before
(rows in the progress, none in its snapshot files) is not resumed: that generation starts over.

The progress also says which zoo the generation replaces (the workspace's stamp when it started, checked against
`--replace` then) and the id its own zoo gets: a rerun may write over either without asking again, so that an
interrupted `zoo generate --replace`, or one cut short after its zoo was swapped in, finishes when run again.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import polars as pl
import torch

from core.errors import ZooError
from core.store.files import read_json, read_tensor_metadata, read_tensors, write_json, write_tensors
from core.store.shards import SHARD_KEY, Shard, checked_shard
from core.zoo.blocks import model_blocks
from core.zoo.population import Population
from core.zoo.table import METRICS

_NOTHING_FINISHED = {"blocks": 0, "models": 0, "snapshots": {}}
# A snapshot's rows of the zoo's table, one per model of its population, as its file's metadata holds them (at
# MAX_MODELS rows, 14 MB of JSON, written in 1.0 s and read in 0.4 s here: within safetensors' 100 MB header).
SNAPSHOT_SCHEMA = {"seed": pl.Int64, "epoch": pl.Int64, **dict.fromkeys(METRICS, pl.Float64)}
# The metadata key of those rows (a JSON object of columns).
_TABLE_KEY = "table"


class Partial:
    """What an unfinished generation has kept: `weights` ({architecture: [Shard]}, its snapshot files, each with
    its table rows), the share of them that finished blocks hold (`finished`), and the block in training
    (`block`, a range of the plan's models) with its last committed `epoch`."""

    def __init__(self, folder: Path, config):
        self.folder, self.config = folder, config
        self.path = folder / "state.safetensors"
        self.resumed, self.replaces, self.zoo_id = False, {}, uuid.uuid4().hex
        self._start_over()

    def _start_over(self) -> None:
        self.weights: dict[str, list[Shard]] = {}
        self.finished = dict(_NOTHING_FINISHED)
        self.block: range | None = None
        self.epoch = -1

    def may_replace(self, stamp: dict) -> bool:
        """Whether this (resumed) generation may write over the zoo of `stamp` without --replace."""
        return self.resumed and stamp in (self.replaces, {**stamp, "zoo_id": self.zoo_id})

    def resume(self, stamp: dict, widths: dict[str, int], models: int) -> None:
        """Take up what an interrupted generation of the same settings (into `models` models) committed; anything
        else here (other settings, an unreadable file, a crash before the first commit) is cleared."""
        self.replaces = stamp
        if not self.path.exists():
            self.clear()  # anything else here is from an older layout or a crash before the first commit
            return
        try:
            info = json.loads(read_tensor_metadata(self.path)["progress"])
            if info.get("config_key") != self.config.key():
                raise ValueError("different settings")
            self.weights = self._listed_snapshots(info["snapshots"], widths)
            # Before blocks, one block held every model and none had finished.
            self.finished = {**_NOTHING_FINISHED, **info.get("finished", {})}
            self.block, self.epoch = range(*info.get("block", (0, models))), int(info["epoch"])
            self._check_progress(models)
            self.replaces, self.zoo_id = info["replaces"], str(info["zoo_id"])
        except (ValueError, KeyError, TypeError, AttributeError, ZooError):
            self.clear()  # stale, unreadable or of an older layout (see the module's docstring): start over
            self._start_over()
            return
        self.resumed = True
        if self.epoch >= self.config.epochs:
            self.finish_block()

    def _check_progress(self, models: int) -> None:
        finished, block = self.finished, self.block
        if not (finished["models"] == block.start < block.stop <= models and self.epoch >= 0):
            raise ValueError("the block in training does not follow the finished ones")
        counts = {name: len(shards) for name, shards in self.weights.items()}
        if any(n > counts.get(k, 0) for k, n in finished["snapshots"].items()):
            raise ValueError("the finished blocks list more snapshots than there are")

    def blocks_to_train(self, costs: list[int], capacity: int) -> list[tuple[range, int]]:
        """(models, first epoch) of every block still to train, given each model's training bytes and a block's
        capacity: the interrupted block goes on where it stopped if it still fits (else it trains again, split
        anew), and the models after it are split into blocks of `capacity`."""
        if self.block is not None and sum(costs[self.block.start : self.block.stop]) <= capacity:
            rest = model_blocks(costs, capacity, self.block.stop)
            return [(self.block, self.epoch + 1)] + [(block, 0) for block in rest]
        self.drop_unfinished()
        return [(block, 0) for block in model_blocks(costs, capacity, self.finished["models"])]

    def restore(self, populations: list[Population]) -> bool:
        """Load the interrupted block's populations from the state file; False (and the block's snapshots
        dropped, to train it again) where the file does not hold them, before any population is changed."""
        try:
            state = read_tensors(self.path)
            parts = [{} for _ in populations]
            for key, value in state.items():
                index, name = key.split("/", 1)
                parts[int(index)][name] = value
            for population, part in zip(populations, parts):
                shape = tuple(population.params.shape)
                expected = {"params": shape, "exp_avg": shape, "exp_avg_sq": shape, "step": ()}
                if {k: tuple(v.shape) for k, v in part.items()} != expected:
                    raise ValueError("another block's state")
        except (ValueError, IndexError, ZooError, RuntimeError):
            self.drop_unfinished()
            return False
        for population, part in zip(populations, parts):
            population.load_state(part)
        return True

    def drop_unfinished(self) -> None:
        """Forget the block in training: its snapshots are left out (files of the same names are written over)."""
        self.weights = {k: v[: self.finished["snapshots"].get(k, 0)] for k, v in self.weights.items()}
        self.block, self.epoch = None, -1

    def finish_block(self) -> None:
        """Count the block in training, whose last epoch is committed, as finished."""
        counts = {name: len(shards) for name, shards in self.weights.items()}
        self.finished = {"blocks": self.finished["blocks"] + 1, "models": self.block.stop, "snapshots": counts}
        self.block, self.epoch = None, -1

    def _listed_snapshots(self, listed: dict, widths: dict[str, int]) -> dict[str, list[Shard]]:
        """{architecture: [Shard]} of the snapshot files the progress lists, each checked to hold what it says:
        its weights, and their table rows (a file from before snapshot tables holds none: ValueError)."""
        saved = {}
        for name, entries in listed.items():
            for entry in entries:
                if Path(entry["file"]).name != entry["file"]:
                    raise ValueError(f"{entry['file']}: not a file name")
                shard = checked_shard(Shard(self.folder / entry["file"], SHARD_KEY, int(entry["rows"])), widths[name])
                snapshot_table(shard)
                saved.setdefault(name, []).append(shard)
        return saved

    def save_snapshot(
        self,
        population: int,
        epoch: int,
        weights: torch.Tensor,
        table: pl.DataFrame,
        shard: int | None = None,
        block: int = 0,
    ) -> Shard:
        """One population's weights at a saved epoch and their rows of the zoo's table (SNAPSHOT_SCHEMA, a row
        per model), in a file of their own (of the `block`-th block of models; of a Ray shard, with `shard`); the
        next `save` (`save_shard`) lists it."""
        if table.height != weights.shape[0] or dict(table.schema) != SNAPSHOT_SCHEMA:
            raise ValueError(f"a snapshot of {weights.shape[0]} models needs their rows, got {table.schema}")
        prefix = ("" if shard is None else f"shard-{shard}-") + (f"block-{block}-" if block else "")
        path = self.folder / f"{prefix}snapshot-{epoch}-{population}.safetensors"
        write_tensors(path, {SHARD_KEY: weights}, {_TABLE_KEY: json.dumps(table.to_dict(as_series=False))})
        return Shard(path, SHARD_KEY, weights.shape[0])

    def save(self, populations: list[Population], block: range, epoch: int) -> None:
        """Commit the block's populations after `epoch`, with everything kept so far."""
        self.block, self.epoch = block, epoch
        tensors = {f"{i}/{k}": v for i, p in enumerate(populations) for k, v in p.state().items()}
        progress = {"config_key": self.config.key(), "epoch": epoch, "snapshots": self._listing()}
        progress |= {"block": [block.start, block.stop], "finished": self.finished}
        progress |= {"replaces": self.replaces, "zoo_id": self.zoo_id}
        write_tensors(self.path, tensors, {"progress": json.dumps(progress)})

    def _listing(self, weights: dict[str, list[Shard]] | None = None) -> dict[str, list[dict]]:
        weights = self.weights if weights is None else weights
        return {name: [{"file": s.path.name, "rows": s.rows} for s in shards] for name, shards in weights.items()}

    def resume_shards(self, stamp: dict, shards: int, widths: dict[str, int]):
        """{shard: {architecture: [Shard] of its snapshot files}} of the shards a sharded generation of these
        settings into `shards` shards finished before; anything else here (another split, other settings, the
        state of an unsharded run, an unreadable or missing file, an older layout) is cleared."""
        self.replaces, found, owner = stamp, {}, None
        try:
            for path in sorted(self.folder.glob("shard-*.json")):
                info = read_json(path)
                if (info.get("config_key"), info.get("shards")) != (self.config.key(), shards):
                    raise ValueError("different settings")
                if owner not in (None, (info["replaces"], info["zoo_id"])):
                    raise ValueError("shards of two generations")
                owner = (info["replaces"], info["zoo_id"])
                found[int(info["shard"])] = self._listed_snapshots(info["snapshots"], widths)
        except (ValueError, KeyError, TypeError, ZooError):
            found = {}
        if not found:
            self.clear()
            return {}
        self.replaces, self.zoo_id = owner[0], str(owner[1])
        self.resumed = True
        return found

    def save_shard(self, shard: int, shards: int, snapshots: dict[str, list[Shard]]) -> None:
        """One finished shard, committed in one rename: its progress, listing the snapshot files it wrote."""
        progress = {"config_key": self.config.key(), "shards": shards, "shard": shard}
        progress |= {"replaces": self.replaces, "zoo_id": self.zoo_id, "snapshots": self._listing(snapshots)}
        write_json(self.folder / f"shard-{shard}.json", progress)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def snapshot_table(shard: Shard) -> pl.DataFrame:
    """The table rows a snapshot file holds (SNAPSHOT_SCHEMA, one per row of its weights); ValueError where it
    holds none (a file from before snapshot tables) or they do not match its weights."""
    columns = json.loads(read_tensor_metadata(shard.path).get(_TABLE_KEY, "null"))
    if not isinstance(columns, dict) or set(columns) != set(SNAPSHOT_SCHEMA):
        raise ValueError(f"{shard.path.name}: holds no table rows")
    try:
        table = pl.DataFrame(columns, schema=SNAPSHOT_SCHEMA)
    except pl.exceptions.PolarsError as exc:  # columns of unequal lengths
        raise ValueError(f"{shard.path.name}: its table rows do not form a table ({exc})") from None
    if table.height != shard.rows:
        raise ValueError(f"{shard.path.name}: {table.height} table rows for {shard.rows} models")
    return table
