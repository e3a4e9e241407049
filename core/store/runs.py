"""Runs on disk: autoencoder runs in `ae/<name>/` and samples runs in `samples/<name>/`, the names of their files,
and listing, reading and writing them. Nothing here imports torch at import time: the app's first page lists runs
and reads maps without it.

An autoencoder run's meaning (its configs, its model) is the representation's business (core/rep/run.py); here
it is a folder with a config record. A samples run is fully described here (`SamplesRun`): what one generation
made, its provenance, curves and novelty.
"""

from __future__ import annotations

import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import polars as pl

from core.errors import UserError, ZooError
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


def checked_run_name(name: str) -> str:
    """A run name that stays inside its folder: no separators, not hidden, not empty."""
    if not name or name != Path(name).name or name.startswith(".") or "\\" in name:
        raise UserError(f"{name!r} is not a usable run name: use letters, digits, '-' or '_'")
    return name


# ---------------------------------------------------------------- autoencoder runs


@dataclass(frozen=True)
class AERunFiles:
    """An autoencoder run's folder and the names of its files.

    `config.json` holds settings, split and status; `stats.safetensors` the per-layer statistics;
    `train_state.pt` everything needed to resume (written after every epoch); `model.safetensors` the weights
    with the best validation reconstruction; `history.parquet` the losses per epoch; `embeddings.parquet` each
    checkpoint's embedding and map position; `eval.json` the held-out evaluation."""

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
    runs = [AERunFiles(p) for p in folder.iterdir() if (p / "config.json").exists() and not p.name.startswith(".")]
    return sorted(runs, key=lambda r: r.config.stat().st_mtime)


def ae_run_statuses(workspace: Workspace) -> dict[str, str]:
    """{run: status}, oldest first."""
    return {run.name: run.status() for run in ae_runs(workspace)}


def finished_ae_runs(workspace: Workspace) -> list[str]:
    """Finished autoencoder runs, oldest first."""
    return [name for name, status in ae_run_statuses(workspace).items() if status == "done"]


# ---------------------------------------------------------------- samples runs


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
    extra: dict = field(default_factory=dict)  # any further figures a generation reports

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

    def to_json(self) -> dict:
        """The record as `result.json` holds it and `sample --json` prints it (name as `samples_run`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("folder", "extra")}
        return {"samples_run": self.name, **data, **self.extra}

    @classmethod
    def from_json(cls, folder: Path, data: dict) -> SamplesRun:
        known = {f.name for f in fields(cls)} - {"folder", "extra"}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k != "folder" and k not in data]
        if missing:
            raise ZooError(f"{folder / 'result.json'}: missing {missing}")
        values = {k: data[k] for k in known if k in data}
        extra = {k: v for k, v in data.items() if k not in known and k != "samples_run"}
        return cls(folder=folder, extra=extra, **values)

    @classmethod
    def folder_of(cls, workspace: Workspace, name: str) -> Path:
        return workspace.root / SAMPLES_RUNS / checked_run_name(name)

    @classmethod
    def load(cls, workspace: Workspace, name: str) -> SamplesRun:
        folder = cls.folder_of(workspace, name)
        if not (folder / "result.json").exists():
            have = ", ".join(r.name for r in cls.list(workspace)) or "none"
            raise UserError(f"{folder}: no such samples run (have: {have})")
        return cls.from_json(folder, read_json(folder / "result.json"))

    @classmethod
    def list(cls, workspace: Workspace, ae_run: str | None = None) -> list[SamplesRun]:
        """Finished samples runs, newest first; only those made from `ae_run` if given. A run whose record does
        not read is left out of the list (loading it by name says what is wrong)."""
        runs = []
        for path in sorted((workspace.root / SAMPLES_RUNS).glob("*/result.json")):
            try:
                runs.append(cls.from_json(path.parent, read_json(path)))
            except ZooError:
                continue
        runs = [r for r in runs if ae_run is None or r.ae_run == ae_run]
        return sorted(runs, key=lambda r: r.created, reverse=True)

    def write(self, tensors: dict, metadata: dict, samples: pl.DataFrame, curves: pl.DataFrame, novelty: pl.DataFrame):
        """Write every file, `result.json` last."""
        write_tensors(self.weights_path, tensors, metadata)
        write_parquet(self.samples_path, samples)
        write_parquet(self.curves_path, curves)
        write_parquet(self.novelty_path, novelty)
        write_json(self.result_path, self.to_json())

    def weights(self) -> dict:
        return read_tensors(self.weights_path)

    def weights_metadata(self) -> dict[str, str]:
        return read_tensor_metadata(self.weights_path)

    def samples_table(self) -> pl.DataFrame:
        return read_parquet(self.samples_path)

    def curves_table(self) -> pl.DataFrame:
        return read_parquet(self.curves_path)

    def novelty_table(self) -> pl.DataFrame:
        return read_parquet(self.novelty_path)
