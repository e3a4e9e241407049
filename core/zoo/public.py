"""Import the published model zoos of Schürholt et al. (NeurIPS 2022 datasets track) into our format.

Their layout is one folder per trained model (a ray-tune trial): `params.json` (flat config keys such as
`model::activation`), `result.json` (one JSON object per line and epoch) and `checkpoint_<e>/checkpoints`
(a torch state dict). State dicts are read with `torch.load(weights_only=True)` only: never arbitrary pickle.
A model whose files are missing or broken is reported and skipped; the import goes on. Their CNN zoos (CNN-s,
CNN-l) are matched by exact key and shape sets; their ResNet-18 zoos by the torchvision layout
(core/zoo/public_resnet.py).

The folder is untrusted: every file is read only if it is a regular file within a size cap (core/limits.py),
and only if it lies inside the folder (a link pointing elsewhere is refused); every value of params.json and
result.json is checked for its type and range.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import ArchitectureError, DataError, UserError
from core.limits import MAX_ABS_WEIGHT, MAX_CHECKPOINT_BYTES, MAX_JSON_BYTES, MAX_RESULT_LOG_BYTES
from core.store.files import read_bytes, read_json_value, read_torch
from core.store.workspace import Workspace
from core.zoo.arch import ACTIVATIONS, ArchSpec, Spec, cnn_l, cnn_s, cnn_small, flatten, match_state_dict
from core.zoo.data import load_dataset
from core.zoo.model_zoo import Progress, Zoo, ZooWriter, check_replacing, finish_table
from core.zoo.public_resnet import CIFAR_SIZE, looks_like_resnet, resnet_vector
from core.zoo.table import METRICS

_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
# The public zoos log the epoch-0 evaluation (before any training) with train_loss = train_acc = -999.
_NOT_MEASURED = -999.0
# Seeds and batch sizes are stored as 64-bit integers.
_MAX_INT = 2**63 - 1


@dataclass
class ImportReport:
    zoo: Zoo
    models: int
    problems: list[str]


def _candidates(activation: str) -> list[ArchSpec]:
    specs = []
    for channels in (1, 3):
        specs += [cnn_s(channels, activation=activation), cnn_l(channels, activation=activation)]
        specs.append(cnn_small(channels, activation=activation))
    return specs


def _read_results(path: Path) -> dict[int, dict]:
    """Epoch -> metrics. Raise ValueError naming the line when the file is truncated or malformed."""
    by_epoch = {}
    try:
        lines = read_bytes(path, MAX_RESULT_LOG_BYTES).decode().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise ValueError(f"{path}: line {number} is not valid JSON (truncated file?)") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {number} is not a JSON object")
        by_epoch[_integer(record, "training_iteration", number - 1, f"result.json line {number}")] = record
    return by_epoch


def _integer(record: dict, key: str, default: int, where: str) -> int:
    """An integer field in 0..2^63-1 (a float that is a whole number counts, as JSON writers may give 7.0)."""
    value = record.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT:
        raise ValueError(f"{where}: {key} {value!r} is not an integer in 0..{_MAX_INT}")
    return value


def _number(record: dict, key: str, default: float, where: str) -> float:
    value = record.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{where}: {key} {value!r} is not a number")
    return float(value)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = read_torch(path, MAX_CHECKPOINT_BYTES)
    except UserError as exc:  # refused (size, code), or not a torch file: the message says which
        raise ValueError(str(exc)) from None
    if isinstance(state, dict) and "model_state_dict" in state:
        state = state["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: does not hold a state dict of tensors")
    return state


def _metric(record: dict, key: str, epoch: int) -> float:
    value = _number(record, key, float("nan"), f"result.json epoch {epoch}")
    return float("nan") if value == _NOT_MEASURED else value


def _model_folders(root: Path) -> tuple[list[Path], list[str]]:
    """The folders holding a params.json, and a problem for each link to a folder outside `root` (not followed;
    links to folders inside it would only repeat models)."""
    folders, problems, inside = [], [], root.resolve()
    for here, subfolders, files in os.walk(root):
        if "params.json" in files:
            folders.append(Path(here))
        for name in subfolders:
            path = Path(here) / name
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                problems.append(f"{path.relative_to(root)}: skipped: links to a folder outside the zoo folder")
    return sorted(folders), problems


def _inside(path: Path, root: Path) -> Path:
    """`path`, refused when it (or a link on the way) leads outside the zoo folder `root` (resolved)."""
    target = path.resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"{path.name} links outside the zoo folder (to {target}); refused")
    return path


def import_public_zoo(
    source: str | Path,
    workspace: Workspace,
    dataset: str | None = None,
    on_progress: Progress | None = None,
    replace: bool = False,
) -> ImportReport:
    """Import every sound model of the folder `source` into the workspace (which must hold no zoo unless
    `replace`), reporting each skipped one; `dataset` names the data the zoo was trained on, checked to fit.
    Checkpoints go to the new zoo's shards as they are read (core/zoo/model_zoo.py ZooWriter), so the import
    holds less than a shard's rows at once whatever the size of the zoo; the workspace is locked throughout."""
    root = Path(source).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (expected one folder per model with params.json)")
    data = load_dataset(dataset) if dataset else None
    check_replacing(workspace, replace)  # early, to fail before the work; again under the lock before writing
    folders, problems = _model_folders(root)
    if not folders:
        raise UserError(f"{root}: no model folders found (none holds a params.json)")
    with workspace.lock(), ZooWriter(workspace) as writer:
        check_replacing(workspace, replace)
        spec, rows = _stream_models(root, folders, writer, data, dataset, problems, on_progress)
        manifest = {
            "dataset": {"name": dataset or "unknown", "n_classes": spec.n_classes},
            "zoo": {
                "source": "public-layout",
                "imported_from": root.name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "import_problems": problems,
            },
        }
        table = finish_table(rows)
        [zoo] = writer.finish([(spec, table)], manifest)
    return ImportReport(zoo, table["model_id"].n_unique(), problems)


def _stream_models(
    root: Path, folders: list[Path], writer: ZooWriter, data, dataset: str | None, problems: list[str], on_progress
) -> tuple[Spec, list[dict]]:
    """Read the model folders in order, handing each checkpoint's weights to `writer` as soon as it is checked;
    a model found unsound at a later checkpoint is taken back (`ZooWriter.cut`) and reported in `problems`.
    Returns the zoo's spec and its checkpoint rows; the named dataset (`data`, None if none) must fit the first
    sound model."""
    # A ResNet's weights do not fix its input size (global average pooling): the named dataset's images do.
    in_size = data.image_shape[1] if data is not None else CIFAR_SIZE
    spec: Spec | None = None
    rows: list[dict] = []
    for model_id, folder in enumerate(folders):
        written = writer.rows(spec.name) if spec else 0
        try:
            model_spec, model_rows = _read_model(folder, spec, root.resolve(), in_size, writer.add)
        except (ValueError, UserError) as exc:
            problems.append(f"{folder.relative_to(root)}: skipped: {exc}")
            _take_back(writer, spec, written)
        except (TypeError, AttributeError, KeyError, OverflowError) as exc:  # what a check above may have missed
            problems.append(f"{folder.relative_to(root)}: skipped: malformed params.json or result.json ({exc!r})")
            _take_back(writer, spec, written)
        else:
            if spec is None and data is not None:
                _check_fits(data, dataset, model_spec)  # at the first sound model: before the rest is read
            spec = spec or model_spec
            rows += [{**row, "model_id": model_id} for row in model_rows]
        if on_progress:
            on_progress(model_id + 1, len(folders), {"skipped": len(problems)})
    if not rows:
        detail = "; ".join(problems[:3])
        raise UserError(f"{root}: no model could be imported ({len(problems)} problems: {detail})")
    return spec, rows


def _take_back(writer: ZooWriter, spec: Spec | None, written: int) -> None:
    """Take back the rows a skipped model handed over: the zoo's matrix goes back to its `written` rows, and any
    other (the architecture of a first model that failed) to none."""
    for name in {*writer.pending, *writer.shards.manifest["tensors"]}:
        writer.cut(name, written if spec is not None and name == spec.name else 0)


def _check_fits(data, name: str, spec: Spec) -> None:
    """The dataset named for the zoo has its models' input shape and class count."""
    wanted = (spec.in_channels, spec.in_size, spec.in_size)
    if data.image_shape != wanted or data.n_classes != spec.n_classes:
        raise DataError(
            f"{name}: images {list(data.image_shape)} in {data.n_classes} classes do not fit the zoo's "
            f"{spec.name} (images {list(wanted)}, {spec.n_classes} classes)"
        )


def _read_model(folder: Path, expected: Spec | None, root: Path, in_size: int, emit) -> tuple[Spec, list[dict]]:
    """One model folder's spec and checkpoint rows; each checkpoint's weights go to `emit(architecture, [1,
    n_params])` once checked, so a model's checkpoints are never held together. ValueError says what is wrong."""
    params = read_json_value(_inside(folder / "params.json", root), MAX_JSON_BYTES)
    if not isinstance(params, dict):
        raise ValueError("params.json: not a JSON object")
    if not (folder / "result.json").exists():
        raise ValueError("result.json missing")
    results = _read_results(_inside(folder / "result.json", root))
    activation = str(params.get("model::activation", "tanh")).lower().replace("_", "")

    rows, spec = [], None
    for epoch, ckpt_dir in _checkpoint_folders(folder):
        state = _load_state_dict(_inside(ckpt_dir / "checkpoints", root))
        try:
            checkpoint_spec, vector = _spec_and_vector(state, activation, in_size)
        except ValueError as exc:
            raise ValueError(f"{ckpt_dir.name}/checkpoints: {exc}") from None
        if spec is not None and checkpoint_spec != spec:
            raise ValueError(f"{ckpt_dir.name}: architecture {checkpoint_spec.name} differs from epoch 0's {spec.name}")
        spec = checkpoint_spec
        if expected is not None and spec.with_activation(expected.activation) != expected:
            raise ValueError(f"architecture {spec.name} differs from the zoo's {expected.name}")
        if epoch not in results:
            raise ValueError(f"result.json has no line for epoch {epoch} (truncated?)")
        record = results[epoch]
        missing = [k for k in ("train_acc", "test_acc", "train_loss", "test_loss") if k not in record]
        if missing:
            raise ValueError(f"result.json epoch {epoch} lacks {missing}")
        if not (vector.abs() <= MAX_ABS_WEIGHT).all():  # NaN fails the comparison too
            raise ValueError(f"checkpoint_{epoch}: non-finite weights or weights beyond ±{MAX_ABS_WEIGHT:g}")
        rows.append(_checkpoint_row(params, spec, epoch, record))
        emit(spec.name, vector.unsqueeze(0))
    return spec, rows


def _spec_and_vector(state: dict[str, torch.Tensor], activation: str, in_size: int) -> tuple[Spec, torch.Tensor]:
    """The architecture a checkpoint's state dict holds and its flat vector; ValueError saying what does not fit."""
    if looks_like_resnet(state):
        return resnet_vector(state, in_size)  # torchvision's ResNet is ReLU whatever params.json names
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one we model ({', '.join(ACTIVATIONS)})")
    spec = match_state_dict(state, _candidates(activation))
    if spec is None:
        shapes = {k: list(v.shape) for k, v in state.items()}
        raise ValueError(
            f"architecture not recognised (not CNN-s, CNN-l, a CIFAR ResNet or ours): {json.dumps(shapes)[:300]}"
        )
    try:
        return spec, flatten(spec, state)
    except ArchitectureError as exc:
        raise ValueError(str(exc)) from None


def _checkpoint_folders(folder: Path) -> list[tuple[int, Path]]:
    """[(epoch, checkpoint_<epoch> folder)], by epoch."""
    checkpoints = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT_DIR.match(p.name))
    )
    if not checkpoints:
        raise ValueError("no checkpoint_<epoch> folders")
    epochs = [epoch for epoch, _ in checkpoints]
    if len(set(epochs)) != len(epochs):
        raise ValueError("two checkpoint folders name the same epoch (e.g. checkpoint_1 and checkpoint_000001)")
    return checkpoints


def _checkpoint_row(params: dict, spec: Spec, epoch: int, record: dict) -> dict:
    """One checkpoint's row of the zoo table, from its model's params.json and its epoch's result.json line; a
    value of the wrong type or out of range raises ValueError naming it."""
    seed = _integer(params, "seed", 0, "params.json")
    # The ResNet zoos' params.json names a dropout rate their torchvision ResNet never applies (it has no dropout).
    dropout = 0.0 if spec.family == "resnet" else _number(params, "model::dropout", 0.0, "params.json")
    return {
        "epoch": epoch,
        "seed": seed,
        "init_seed": seed,
        "init": str(params.get("model::init_type", "unknown")),
        "lr": _number(params, "optim::lr", float("nan"), "params.json"),
        "weight_decay": _number(params, "optim::wd", 0.0, "params.json"),
        "dropout": dropout,
        "activation": spec.activation,
        "batch_size": _integer(params, "training::batchsize", 0, "params.json"),
        **{key: _metric(record, key, epoch) for key in METRICS},
    }
