"""Runs on disk: autoencoder runs in `ae/<name>/` and samples runs in `samples/<name>/`, the names of their files,
and listing, reading and writing them. Nothing here imports torch at import time: the app's first page lists runs
and reads maps without it.

An autoencoder run's meaning (its configs, its model) is the representation's business (core/rep/run.py); here
it is a folder with a config record. A samples run is fully described here (`SamplesRun`): what one generation
made, its provenance, curves and novelty.

Every run records the stamp of the zoo it was made from (`zoo_id`, `zoo_created`; core/store/workspace.py).
A run of another zoo (the workspace's zoo was replaced since) is stale: it is left out of the lists, and
loading it by name says so (`check_made_from_zoo`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

import polars as pl

from core.errors import UserError, ZooError
from core.names import checked_name, is_usable_name
from core.store.commit import locked_folder_beside, remove_abandoned, rename_exclusive
from core.store.files import (
    read_json,
    read_parquet,
    read_tensor_metadata,
    read_tensors,
    write_json,
    write_parquet,
    write_tensors,
)
from core.store.workspace import Workspace

AE_RUNS = "ae"
SAMPLES_RUNS = "samples"
_BUILD_TAG = "build"  # a samples run is written in `.<run>.build-XXXXXXXX` beside its folder, then swapped in
_OLD_TAG = "old"  # the run it replaces waits in `.<run>.old-XXXXXXXX` until the new one is in
# What an autoencoder run's embeddings.parquet holds (core/store/files.py `check_columns`).
EMBEDDING_COLUMNS = {"checkpoint": "int", "split": "str", "embedding": "vector"} | dict.fromkeys(
    ("umap_x", "umap_y", "pca_x", "pca_y"), "number"
)


def checked_run_name(name: str) -> str:
    """A run name that stays inside its folder (core/names.py: no separator, space, newline or dot)."""
    return checked_name(name, "run name")


def made_from_zoo(record: dict, stamp: dict) -> bool:
    """Whether a run's record names the zoo of `stamp` (Workspace.zoo_stamp): by id where both have one, else
    by creation time; a record from before stamps existed is taken as matching."""
    for key in ("zoo_id", "zoo_created"):
        if record.get(key) is not None and stamp.get(key) is not None:
            return record[key] == stamp[key]
    return True


def check_made_from_zoo(record: dict, stamp: dict, where: Path, remedy: str) -> None:
    """Refuse a run made from another zoo than the one of `stamp`, saying what to do instead."""
    if not made_from_zoo(record, stamp):
        raise ZooError(
            f"{where}: made from an earlier zoo (created {record.get('zoo_created')}); the workspace's zoo was "
            f"replaced since (created {stamp.get('zoo_created')}): {remedy}"
        )


# ---------------------------------------------------------------- autoencoder runs


@dataclass(frozen=True)
class AERunFiles:
    """An autoencoder run's folder and the names of its files.

    `config.json` holds settings, split and status; `stats.safetensors` the per-layer statistics;
    `train_state.pt` everything needed to resume (written every few seconds and when stopped; removed once
    trained); `model.safetensors` the weights with the best validation reconstruction; `history.parquet` the
    losses per epoch; `embeddings.parquet` each checkpoint's embedding and map position; `eval.json` the held-out
    evaluation."""

    folder: Path

    @classmethod
    def of(cls, workspace: Workspace, name: str) -> AERunFiles:
        return cls(workspace.root / AE_RUNS / checked_run_name(name))

    @property
    def name(self) -> str:
        return self.folder.name

    config = property(lambda self: self.folder / "config.json")
    stats = property(lambda self: self.folder / "stats.safetensors")
    state = property(lambda self: self.folder / "train_state.pt")
    model = property(lambda self: self.folder / "model.safetensors")
    history = property(lambda self: self.folder / "history.parquet")
    embeddings = property(lambda self: self.folder / "embeddings.parquet")
    eval = property(lambda self: self.folder / "eval.json")

    def exists(self) -> bool:
        return self.config.exists()

    def read_config(self) -> dict:
        return read_json(self.config)

    def read_map(self, checkpoints: list[int] | None = None) -> pl.DataFrame:
        """embeddings.parquet, checked column by column, and against the zoo's `checkpoints` when given (one
        row for each, in order)."""
        if not self.embeddings.exists() and self.exists():
            raise ZooError(
                f"{self.embeddings}: missing: the run was stopped before its map was written; run the same "
                "`ae train` command to finish it"
            )
        table = read_parquet(self.embeddings, EMBEDDING_COLUMNS)
        if checkpoints is not None and table["checkpoint"].to_list() != list(checkpoints):
            raise ZooError(
                f"{self.embeddings}: its {table.height} rows do not match the zoo's {len(checkpoints)} checkpoints"
            )
        return table

    def check_zoo(self, stamp: dict) -> None:
        """Refuse the run if it was trained on another zoo than the one of `stamp` (Workspace.zoo_stamp)."""
        remedy = f"train a new run (`ae train` with another --run), or delete {self.folder}"
        check_made_from_zoo(self.read_config(), stamp, self.folder, remedy)

    def write_config(self, config: dict) -> None:
        write_json(self.config, config)

    def status(self) -> str:
        """ "training" while it trains, "done" once model and map are written."""
        return str(self.read_config().get("status", "?"))

    def kind(self) -> str:
        """The autoencoder kind that made the run (runs from before SANE existed say none: the per-neuron one)."""
        return str(self.read_config().get("kind", "hyperrep"))


def ae_runs(workspace: Workspace) -> list[AERunFiles]:
    """Every autoencoder run of the workspace, oldest first."""
    folder = workspace.root / AE_RUNS
    if not folder.exists():
        return []
    runs = [AERunFiles(p) for p in folder.iterdir() if is_usable_name(p.name) and (p / "config.json").exists()]
    return sorted(runs, key=lambda r: r.config.stat().st_mtime)


def _readable_records(workspace: Workspace) -> dict[str, dict]:
    """{run: config record} of every autoencoder run whose record reads (loading one by name says what is
    wrong with the others), oldest first."""
    records = {}
    for run in ae_runs(workspace):
        try:
            records[run.name] = run.read_config()
        except ZooError:
            continue
    return records


def ae_run_statuses(workspace: Workspace) -> dict[str, str]:
    """{run: status} of the runs made from the workspace's zoo, oldest first."""
    stamp = workspace.zoo_stamp()
    records = _readable_records(workspace)
    return {name: str(r.get("status", "?")) for name, r in records.items() if made_from_zoo(r, stamp)}


def finished_ae_runs(workspace: Workspace) -> list[str]:
    """Finished autoencoder runs of the workspace's zoo, oldest first."""
    return [name for name, status in ae_run_statuses(workspace).items() if status == "done"]


def stale_runs(workspace: Workspace) -> list[str]:
    """Runs made from an earlier zoo than the workspace's, as `ae/<name>` and `samples/<name>`."""
    stamp = workspace.zoo_stamp()
    stale = [f"{AE_RUNS}/{name}" for name, r in _readable_records(workspace).items() if not made_from_zoo(r, stamp)]
    samples = SamplesRun.list(workspace, current_zoo_only=False)
    return stale + [f"{SAMPLES_RUNS}/{r.name}" for r in samples if not made_from_zoo(r.to_json(), stamp)]


# ---------------------------------------------------------------- samples runs


def run_identity(folder: Path) -> tuple[int, int] | None:
    """(inode, modification time) of a samples run's record, None when it has none: a generation compares it at
    its end with what it was at its start, to tell its own rerun from another command's write."""
    try:
        info = os.stat(folder / "result.json")
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns


@dataclass(frozen=True)
class SamplesRun:
    """One generation: models sampled from an autoencoder run, evaluated and fine-tuned beside baselines.

    On disk in `samples/<name>/`: `weights.safetensors` (generated and fine-tuned weights, the architecture in its
    metadata), `samples.parquet` (one row per generated model), `curves.parquet` (accuracy per group and epoch),
    `novelty.parquet` (every generated and baseline model on the accuracy-novelty plane) and `result.json` (this
    record; written last, so a run without it is unfinished and not listed)."""

    folder: Path
    ae_run: str
    ae_kind: str
    method: str
    n: int
    dataset: str
    source_dataset: str | None
    architecture: str
    activation: str
    anchors: dict  # rule, count, ids
    curves: dict  # group -> mean test accuracy per fine-tuning epoch (index 0: as generated)
    novelty: dict  # medians of the generated models' novelty figures (core/gen/novelty.py)
    novelty_baselines: dict  # the same medians for each baseline group
    selection: dict
    config: dict  # the SampleConfig it was made with
    fallback: str | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    zoo_id: str | None = None  # the stamp of the zoo it was made from (core/store/workspace.py)
    zoo_created: str | None = None
    # {group: {"N": {figure: {"mean", "lo", "hi"}}}} (core/gen/ensemble.py) and how they were made; None: not asked
    ensembles: dict | None = None
    ensemble_settings: dict | None = None
    # Any further figures a generation reports, among them (checked as read, absent in runs from before them)
    # "intervals" and "novelty_intervals" (core/gen/intervals.py; read them with `interval_rows`).
    extra: dict = field(default_factory=dict)

    weights_path = property(lambda self: self.folder / "weights.safetensors")
    samples_path = property(lambda self: self.folder / "samples.parquet")
    curves_path = property(lambda self: self.folder / "curves.parquet")
    novelty_path = property(lambda self: self.folder / "novelty.parquet")
    result_path = property(lambda self: self.folder / "result.json")

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def transfer(self) -> bool:
        return self.dataset != self.source_dataset

    @property
    def spread(self) -> float | None:
        """The spread the models were drawn at: the one chosen for the zoo where none was given."""
        return self.selection.get("spread_calibration", {}).get("spread", self.config.get("spread"))

    def interval_rows(self) -> dict[str, list[dict]]:
        """{group: one row per fine-tuning epoch: "epoch", "n", "mean", "lo", "hi", "std", "min", "max"}: each
        group's mean accuracy over its models with a bootstrap 95% interval; {} for a run from before them."""
        return self.extra.get("intervals", {})

    def novelty_interval(self, group: str = "generated", figure: str = "max_iou") -> dict | None:
        """{"median", "lo", "hi"} of a group's novelty figure ("max_iou" or "min_l2"); None before them."""
        return self.extra.get("novelty_intervals", {}).get(group, {}).get(figure)

    def to_json(self) -> dict:
        """The record as `result.json` holds it and `sample --json` prints it (name as `samples_run`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("folder", "extra")}
        return {"samples_run": self.name, **data, **self.extra}

    @classmethod
    def from_json(cls, folder: Path, data: dict) -> SamplesRun:
        """The record read back, every field checked (a hand-edited file fails here, naming itself)."""
        known = {f.name for f in fields(cls)} - {"folder", "extra"}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k != "folder" and k not in data]
        if missing:
            raise ZooError(f"{folder / 'result.json'}: missing {missing}")
        _check_record(data, folder / "result.json")
        values = {k: data[k] for k in known if k in data}
        extra = {k: v for k, v in data.items() if k not in known and k != "samples_run"}
        return cls(folder=folder, extra=extra, **values)

    @classmethod
    def folder_of(cls, workspace: Workspace, name: str) -> Path:
        return workspace.root / SAMPLES_RUNS / checked_run_name(name)

    @classmethod
    def load(cls, workspace: Workspace, name: str) -> SamplesRun:
        """A finished samples run by name, refused if it was made from an earlier zoo."""
        folder = cls.folder_of(workspace, name)
        if not (folder / "result.json").exists():
            have = ", ".join(r.name for r in cls.list(workspace)) or "none"
            raise UserError(f"{folder}: no such samples run (have: {have})")
        run = cls.from_json(folder, read_json(folder / "result.json"))
        remedy = f"generate again (`sample`), or delete {folder}"
        check_made_from_zoo(run.to_json(), workspace.zoo_stamp(), folder, remedy)
        return run

    @classmethod
    def list(cls, workspace: Workspace, ae_run: str | None = None, current_zoo_only: bool = True) -> list[SamplesRun]:
        """Finished samples runs of the workspace's zoo (of any zoo unless `current_zoo_only`), newest first;
        only those made from `ae_run` if given. A run whose record does not read is left out of the list
        (loading it by name says what is wrong)."""
        runs = []
        for path in sorted((workspace.root / SAMPLES_RUNS).glob("*/result.json")):
            if not is_usable_name(path.parent.name):
                continue
            try:
                runs.append(cls.from_json(path.parent, read_json(path)))
            except ZooError:
                continue
        if current_zoo_only and runs:
            stamp = workspace.zoo_stamp()
            runs = [r for r in runs if made_from_zoo(r.to_json(), stamp)]
        runs = [r for r in runs if ae_run is None or r.ae_run == ae_run]
        return sorted(runs, key=lambda r: r.created, reverse=True)

    def write(
        self,
        tensors: dict,
        metadata: dict,
        tables: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame],
        seen: tuple[int, int] | None,
    ):
        """Write every file into a build folder beside the run's, then swap it in. `tables` are the samples, curves
        and novelty tables; `seen` is `run_identity` of the folder when the generation started: a run that another
        command wrote meanwhile (the same request twice at once) is kept, and this one is refused. A failure (a full
        disk) leaves nothing: a killed writer's build folder goes at a later write of the run."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        for tag in (_BUILD_TAG, _OLD_TAG):
            remove_abandoned(self.folder, tag)
        fd, build = locked_folder_beside(self.folder, _BUILD_TAG)
        try:
            built = replace(self, folder=build)
            write_tensors(built.weights_path, tensors, metadata)
            for path, table in zip((built.samples_path, built.curves_path, built.novelty_path), tables, strict=True):
                write_parquet(path, table)
            self.write_record(build)
            self._swap_in(build, seen)
        finally:
            shutil.rmtree(build, ignore_errors=True)
            os.close(fd)

    def _swap_in(self, build: Path, seen: tuple[int, int] | None) -> None:
        """Replace the run's folder by `build` if it is still the one seen at the start (or still absent)."""
        if run_identity(self.folder) != seen:
            raise UserError(f"{self.folder}: another command wrote this run while this one ran; it is kept")
        old = None
        if seen is not None:
            old = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.{_OLD_TAG}-", dir=self.folder.parent))
            os.rename(self.folder, old)  # onto the empty folder just made; a kill here leaves it for remove_abandoned
        try:
            rename_exclusive(build, self.folder)
        except FileExistsError:
            raise UserError(f"{self.folder}: another command wrote this run while this one ran; it is kept") from None
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def write_record(self, folder: Path | None = None) -> None:
        """(Re)write `result.json` alone: a finished run that gains its ensembles; into `folder` (a build folder)
        with the run's own name."""
        path = self.result_path if folder is None else folder / self.result_path.name
        _check_record(self.to_json(), path)
        write_json(path, self.to_json())

    def update_record(self, seen: tuple[int, int] | None) -> None:
        """Rewrite `result.json` of a finished run that gains figures computed from its files (its ensembles), if
        the record is still the one `seen` (`run_identity` when those files were read); else another command
        rewrote the run meanwhile (a new generation under the same name, another evaluation of it): UserError,
        and theirs is kept. As `write` does, it checks just before the atomic replace."""
        if run_identity(self.folder) != seen:
            raise UserError(
                f"{self.folder}: another command rewrote this run while its figures were computed; its record is "
                "kept (run the command again)"
            )
        self.write_record()

    def weights(self) -> dict:
        """{"generated": [n, params], "finetuned": [n, params']} float32, and "anchors_finetuned" [n, params'] where
        the run kept its source anchors after fine-tuning (core/pipeline.py `_kept_weights`)."""
        tensors = read_tensors(self.weights_path)
        kept = ("generated", "finetuned", *(key for key in KEPT_OPTIONAL if key in tensors))
        for key in kept:
            if key not in tensors or tensors[key].dim() != 2 or len(tensors[key]) != self.n:
                raise ZooError(f"{self.weights_path}: expected a tensor {key!r} of {self.n} rows")
        return {key: tensors[key] for key in kept}

    def weights_metadata(self) -> dict[str, str]:
        metadata = read_tensor_metadata(self.weights_path)
        if "architecture" not in metadata:
            raise ZooError(f"{self.weights_path}: its metadata names no architecture")
        return metadata

    def samples_table(self) -> pl.DataFrame:
        """One row per generated model; `source_anchor` (the checkpoint it was drawn around, empty for a point of a
        latent path) is checked where present: runs from before it have none."""
        table = read_parquet(self.samples_path, SAMPLES_COLUMNS)
        if "source_anchor" in table.columns and not table["source_anchor"].dtype.is_integer():
            raise ZooError(f"{self.samples_path}: column 'source_anchor' should hold checkpoint ids")
        return table

    def source_anchors(self) -> list[int | None]:
        """Each generated model's source anchor (a checkpoint id), or None where unknown."""
        table = self.samples_table()
        return table["source_anchor"].to_list() if "source_anchor" in table.columns else [None] * table.height

    def curves_table(self) -> pl.DataFrame:
        return read_parquet(self.curves_path, CURVES_COLUMNS)

    def novelty_table(self) -> pl.DataFrame:
        return read_parquet(self.novelty_path, NOVELTY_COLUMNS)


# What a samples run's tables hold (core/store/files.py `check_columns`).
SAMPLES_COLUMNS = {"sample": "int", **dict.fromkeys(("acc_epoch0", "acc_final", "min_l2", "max_iou"), "number")}
SAMPLES_COLUMNS |= {"umap_x": "number", "umap_y": "number"}
CURVES_COLUMNS = {"group": "str", "epoch": "int", "acc_mean": "number"}
NOVELTY_COLUMNS = {"group": "str", "acc_epoch0": "number", "min_l2": "number", "max_iou": "number"}

# The fields of result.json by JSON type; None allowed where the field's default is None.
_RECORD_TYPES = {
    **dict.fromkeys(("ae_run", "ae_kind", "method", "dataset", "architecture", "activation", "created"), str),
    **dict.fromkeys(("anchors", "curves", "novelty", "novelty_baselines", "selection", "config"), dict),
    "n": int,
}
_OPTIONAL_DICT = ("intervals", "novelty_intervals")
INTERVAL_ROW = ("mean", "lo", "hi", "std", "min", "max")
NOVELTY_INTERVAL = ("median", "lo", "hi")
_OPTIONAL_STR = ("source_dataset", "fallback", "zoo_id", "zoo_created")
KEPT_OPTIONAL = ("anchors_finetuned",)  # weights a samples run may keep beside its generated and fine-tuned models
ENSEMBLE_FIGURES = ("acc", "vote_acc", "nll", "ece", "brier", "disagreement", "gain")  # core/gen/ensemble.py
NOVELTY_MEDIANS = ("min_l2_median", "zoo_min_l2_median", "max_iou_median", "zoo_max_iou_median")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_record(data: dict, path: Path) -> None:
    """Types of a samples run's record, down to what the readers (export, the app, the CLI) index."""
    wrong = [k for k, t in _RECORD_TYPES.items() if not isinstance(data[k], t) or isinstance(data[k], bool)]
    wrong += [k for k in _OPTIONAL_STR if data.get(k) is not None and not isinstance(data[k], str)]
    wrong += [k for k in _OPTIONAL_DICT if not isinstance(data.get(k, {}), dict)]
    wrong += _check_intervals(data)
    anchors, curves, novelty = data["anchors"], data["curves"], data["novelty"]
    if isinstance(anchors, dict) and not (isinstance(anchors.get("rule"), str) and _is_number(anchors.get("count"))):
        wrong.append("anchors (rule, count)")
    if isinstance(curves, dict) and not all(
        isinstance(c, list) and c and all(_is_number(a) for a in c) for c in curves.values()
    ):
        wrong.append("curves (lists of accuracies)")
    if isinstance(novelty, dict) and not all(_is_number(novelty.get(k)) for k in NOVELTY_MEDIANS):
        wrong.append(f"novelty ({', '.join(NOVELTY_MEDIANS)})")
    if isinstance(data["config"], dict) and not isinstance(data["config"].get("finetune_epochs"), int):
        wrong.append("config (finetune_epochs)")
    history = data["selection"].get("history", []) if isinstance(data["selection"], dict) else []
    steps = ("round", "drawn_mean", "kept_mean")
    if not isinstance(history, list) or not all(
        isinstance(h, dict) and all(_is_number(h.get(k)) for k in steps) for h in history
    ):
        wrong.append("selection (history of rounds)")
    wrong += _wrong_ensembles(data)
    if wrong:
        raise ZooError(f"{path}: malformed fields: {', '.join(wrong)}")


def _check_intervals(data: dict) -> list[str]:
    """What is wrong with a record's intervals, if it has them: each group's rows are the epochs of its curve in
    order, each with numbers, lo <= hi; each novelty entry a median with numbers lo <= hi."""
    wrong = []
    intervals, curves = data.get("intervals", {}), data["curves"]
    if isinstance(intervals, dict) and isinstance(curves, dict):
        for group, rows in intervals.items():
            length = len(curves[group]) if isinstance(curves.get(group), list) else None
            if not (isinstance(rows, list) and len(rows) == length and all(_row_ok(r, e) for e, r in enumerate(rows))):
                wrong.append(f"intervals ({group}: one row per epoch of its curve, n, {', '.join(INTERVAL_ROW)})")
    novelty = data.get("novelty_intervals", {})
    if isinstance(novelty, dict):
        for group, entry in novelty.items():
            if not (isinstance(entry, dict) and all(_interval_ok(v, NOVELTY_INTERVAL) for v in entry.values())):
                wrong.append(f"novelty_intervals ({group}: {', '.join(NOVELTY_INTERVAL)} per figure)")
    return wrong


def _row_ok(row, epoch: int) -> bool:
    """A row of one epoch: its epoch, a count of models, and the interval's numbers."""
    if not (isinstance(row, dict) and _is_int(row.get("n")) and _is_int(row.get("epoch"))):
        return False
    return row["epoch"] == epoch and _interval_ok(row, INTERVAL_ROW)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _interval_ok(entry, keys: tuple[str, ...]) -> bool:
    return isinstance(entry, dict) and all(_is_number(entry.get(k)) for k in keys) and entry["lo"] <= entry["hi"]


def _wrong_ensembles(data: dict) -> list[str]:
    """The ensemble fields, where present: {group: {"N": {figure: {"mean", "lo", "hi"}}}} with every figure, N a
    positive integer, numbers everywhere; and a settings record."""
    ensembles, settings = data.get("ensembles"), data.get("ensemble_settings")
    wrong = [] if settings is None or isinstance(settings, dict) else ["ensemble_settings"]
    if ensembles is None:
        return wrong

    def summary(value) -> bool:
        return isinstance(value, dict) and all(_is_number(value.get(k)) for k in ("mean", "lo", "hi"))

    def table(sizes) -> bool:
        return isinstance(sizes, dict) and all(
            size.isdigit()
            and int(size) > 0
            and isinstance(row, dict)
            and all(summary(row.get(f)) for f in ENSEMBLE_FIGURES)
            for size, row in sizes.items()
        )

    if not (isinstance(ensembles, dict) and all(isinstance(g, str) and table(t) for g, t in ensembles.items())):
        wrong.append("ensembles ({group: {N: {figure: {mean, lo, hi}}}})")
    return wrong
