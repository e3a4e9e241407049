"""A trained (or training) autoencoder run, loaded: its kind, configs, split, per-layer statistics and model.

The files are core/store/runs.py's `AERunFiles`; this module gives them meaning. A run knows how to make a zoo
ready with its own split and statistics (`prepare`) and how to go from weights to codes, embeddings and back
(through its kind, core/rep/methods/).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import torch
from torch import nn

from core.errors import UserError, ZooError
from core.rep.loop import TrainConfig
from core.rep.methods import Method, method_for, method_named, with_kind_defaults
from core.rep.prepare import PreparedZoo, Split, prepare
from core.store.budget import chunk_rows
from core.store.files import read_parquet, read_tensors
from core.store.runs import AE_RUNS, AERunFiles, ae_runs, finished_ae_runs, stale_runs
from core.store.workspace import Workspace
from core.zoo.model_zoo import Zoo

Stats = dict[str | None, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class AERun:
    files: AERunFiles
    ae_config: object  # the kind's config dataclass
    train_config: TrainConfig
    split: Split
    status: str
    model: nn.Module | None = None
    stats: Stats = field(default_factory=dict)  # {architecture (None: the only one): (layer_mean, layer_std)}
    history: pl.DataFrame = field(default_factory=pl.DataFrame)
    aggregation: str = ""  # how latents make the map embedding (`ae embed` changes it); "" = the kind's default

    def __post_init__(self) -> None:
        self.aggregation = self.aggregation or self.method.aggregations[0]

    @property
    def method(self) -> Method:
        return method_for(self.ae_config)

    @property
    def kind(self) -> str:
        return self.method.kind

    @property
    def code_token_width(self) -> int:
        """Every kind's code is a sequence of latents of this width: one for the per-neuron AE, one per token for
        SANE (the token sampler draws each on its own)."""
        return self.ae_config.latent_dim

    @property
    def folder(self):
        return self.files.folder

    @property
    def name(self) -> str:
        return self.files.name

    def prepare(self, zoo: Zoo) -> PreparedZoo:
        """One architecture's zoo made ready with this run's split and statistics."""
        stats = self.stats.get(zoo.spec.name, self.stats.get(None))
        if stats is None:
            raise UserError(f"{self.folder}: this run was not trained on architecture {zoo.spec.name}")
        unsplit = set(zoo.table["model_id"].to_list()) - {*self.split.train, *self.split.val, *self.split.test}
        if unsplit:
            raise ZooError(f"{self.files.config}: its split leaves out models {sorted(unsplit)[:5]} of the zoo")
        return prepare(zoo, self.split, self.train_config.align, self.train_config.align_iterations, stats)

    def encode(self, prepared: PreparedZoo, weights: torch.Tensor, device: str = "cpu") -> np.ndarray:
        """[N, code] float32: what a sampler fits (per-neuron: the latent; SANE: all token latents, flattened)."""
        return self.method.encode(self.model, prepared, weights, device)

    def decode(self, prepared: PreparedZoo, codes, device: str = "cpu") -> torch.Tensor:
        """Weights [N, params] (aligned) decoded from codes [N, code]."""
        return self.method.decode(self.model, prepared, torch.as_tensor(codes, dtype=torch.float32), device)

    def embed(self, prepared: PreparedZoo, weights: torch.Tensor, device: str = "cpu") -> np.ndarray:
        """[N, embedding]: what the map and the probes use (SANE: token latents aggregated as the run says)."""
        return self.method.embed(self.model, prepared, weights, device, (self.aggregation,))[self.aggregation]

    def code_embedding(self, prepared: PreparedZoo, codes: np.ndarray) -> np.ndarray:
        """The map embedding [N, dim] of codes [N, code] of `prepared`'s architecture, without decoding them."""
        return self.method.code_embedding(self.model, prepared, codes, self.aggregation)

    def encode_rows(self, prepared: PreparedZoo, rows: np.ndarray, device: str = "cpu") -> np.ndarray:
        """Codes [len(rows), code] of zoo rows, encoded a chunk at a time: the aligned weights of hundreds of
        anchors (and their token sequences) can exceed the memory budget where their codes do not."""
        chunk = chunk_rows(prepared.zoo.spec.n_params, copies=8)
        parts = prepared.iter_aligned(np.asarray(rows), chunk)
        return np.concatenate([self.encode(prepared, weights, device) for _, weights in parts])

    def decode_chunks(self, prepared: PreparedZoo, codes: np.ndarray, device: str = "cpu") -> Iterator[torch.Tensor]:
        """Aligned weights decoded from codes [N, code], a chunk of models at a time (what `encode_rows` encodes
        at once), for callers that reduce each chunk and need not hold all the decodes."""
        chunk = chunk_rows(prepared.zoo.spec.n_params, copies=8)
        for start in range(0, len(codes), chunk):
            yield self.decode(prepared, codes[start : start + chunk], device)

    def reconstruct(self, prepared: PreparedZoo, rows: np.ndarray, device: str = "cpu") -> torch.Tensor:
        """Aligned weights [rows, params] decoded from the codes of the given checkpoints (a chunk at a time)."""
        return torch.cat(list(self.decode_chunks(prepared, self.encode_rows(prepared, rows, device), device)))


# Training settings added after runs were first named, with the value that means "as before": left out of the name
# there, so a command that named a run before they existed still resumes it (and the shipped workspace keeps its).
_LATER_SETTINGS = {"lr_floor": 0.0, "objective": "generate"}


def run_name(ae_config, train_config: TrainConfig) -> str:
    """Runs are named by their settings (the kind's defaults filled in), so the same command resumes its own run
    and other settings get a new one."""
    train_config = with_kind_defaults(ae_config, train_config)
    train = asdict(train_config)
    for name, unset in _LATER_SETTINGS.items():  # at their default, settings added later leave names as they were
        if train[name] == unset:
            del train[name]
    digest = hashlib.sha256(json.dumps([asdict(ae_config), train], sort_keys=True).encode())
    return f"{method_for(ae_config).kind}-{digest.hexdigest()[:8]}"


def with_later_settings(train: dict) -> dict:
    """A stored run's training settings with those added since it was made, at the value that means "as before"."""
    return {**_LATER_SETTINGS, **train}


def train_config_from_json(data: dict) -> TrainConfig:
    return TrainConfig(**{**data, "erase_area": tuple(data["erase_area"]), "split": tuple(data["split"])})


def latest_finished(workspace: Workspace) -> str:
    finished = finished_ae_runs(workspace)
    if not finished:
        stale = [run for run in stale_runs(workspace) if run.startswith(AE_RUNS)] if workspace.exists() else []
        also = f" (the runs {', '.join(stale)} were made from a replaced zoo)" if stale else ""
        raise ZooError(f"{workspace.root}: no finished autoencoder run of its zoo{also}; train one with `ae train`")
    return finished[-1]


def load_run(workspace: Workspace, name: str | None = None, with_model: bool = True) -> AERun:
    """A run by name, or the latest finished one; refused if its zoo has been replaced since, and every file
    checked as it is read (a hand-edited one fails naming itself)."""
    files = AERunFiles.of(workspace, name or latest_finished(workspace))
    if not files.exists():
        have = ", ".join(r.name for r in ae_runs(workspace)) or "none"
        raise ZooError(f"{files.folder}: no such autoencoder run (have: {have})")
    files.check_zoo(workspace.zoo_stamp())
    config = files.read_config()
    try:
        method = method_named(files.kind())
        ae_config = method.config_type(**config["ae"])
        run = AERun(
            files,
            ae_config,
            train_config_from_json(config["train"]),
            _split(config["split"]),
            config["status"],
            aggregation=config.get("aggregation", method.unrecorded_aggregation),
        )
    except (KeyError, TypeError, ValueError, UserError) as exc:
        raise ZooError(f"{files.config}: not a run config this program reads ({_first_line(exc)})") from None
    run.stats = read_stats(files)
    if with_model:
        run.model = _model(files, method, ae_config, config, run.status)
    if files.history.exists():
        run.history = read_parquet(files.history, HISTORY_COLUMNS)
    return run


# What history.parquet holds: one row per epoch (core/rep/loop.py).
HISTORY_COLUMNS = {"epoch": "int"} | dict.fromkeys(
    ("loss", "reconstruction", "contrastive", "val_reconstruction", "lr", "elapsed_s"), "number"
)


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0] or repr(exc)


def _split(data) -> Split:
    """The stored split, as lists of model ids."""
    sides = ("train", "val", "test")
    if not isinstance(data, dict) or not all(isinstance(data.get(s), list) for s in sides):
        raise ValueError("'split' must hold lists train, val and test")
    if not all(isinstance(m, int) and not isinstance(m, bool) for s in sides for m in data[s]):
        raise ValueError("'split' must hold model ids (integers)")
    return Split(*(data[s] for s in sides))


def _model(files: AERunFiles, method: Method, ae_config, config: dict, status: str) -> nn.Module:
    """The trained model, built from the run's config and loaded with its stored weights."""
    if status not in ("trained", "done"):
        raise ZooError(f"{files.folder}: run is unfinished; `ae train` with the same settings resumes it")
    weights = read_tensors(files.model)
    try:
        model = method.build(ae_config, config)
        model.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ZooError(f"{files.model}: does not fit the run's config ({_first_line(exc)})") from None
    return model.eval()


def stats_tensors(parts: list[PreparedZoo]) -> dict[str, torch.Tensor]:
    """Per-layer statistics to store with a run: under plain names for one architecture (as runs always
    stored them), prefixed by the architecture's name for several."""
    if len(parts) == 1:
        return {"layer_mean": parts[0].layer_mean, "layer_std": parts[0].layer_std}
    return {
        f"{p.zoo.spec.name}/{key}": value
        for p in parts
        for key, value in (("layer_mean", p.layer_mean), ("layer_std", p.layer_std))
    }


def read_stats(files: AERunFiles) -> Stats:
    """{architecture: (layer_mean, layer_std)}; the key None holds a one-architecture run's statistics."""
    tensors = read_tensors(files.stats)
    try:
        if "layer_mean" in tensors or "layer_std" in tensors:
            return {None: (tensors["layer_mean"], tensors["layer_std"])}
        names = {key.rsplit("/", 1)[0] for key in tensors}
        if not names:
            raise KeyError("layer_mean")
        return {name: (tensors[f"{name}/layer_mean"], tensors[f"{name}/layer_std"]) for name in names}
    except KeyError as exc:
        raise ZooError(f"{files.stats}: lacks {exc}") from None
