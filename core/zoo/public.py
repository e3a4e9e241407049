"""Import the published model zoos of Schürholt et al. (NeurIPS 2022 datasets track) into our format.

Their layout is one folder per trained model (a ray-tune trial): `params.json` (flat config keys such as
`model::activation`), `result.json` (one JSON object per line and epoch) and `checkpoint_<e>/checkpoints`
(a torch state dict). State dicts are read with `torch.load(weights_only=True)` only: never arbitrary pickle.
A model whose files are missing or broken is reported and skipped; the import goes on.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import ArchitectureError, UserError
from core.store.workspace import Workspace
from core.zoo.arch import ACTIVATIONS, ArchSpec, cnn_l, cnn_s, cnn_small, flatten, match_state_dict
from core.zoo.model_zoo import Progress, Zoo, finish_table, save_zoo

_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
# The public zoos log the epoch-0 evaluation (before any training) with train_loss = train_acc = -999.
_NOT_MEASURED = -999.0


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
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {number} is not valid JSON (truncated file?)") from exc
        epoch = int(record.get("training_iteration", number - 1))
        by_epoch[epoch] = record
    return by_epoch


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # The weights-only unpickler rejects foreign bytes with many exception types (UnpicklingError, KeyError for
    # an unknown opcode, EOFError for an empty file, ...); every one of them means "not a state dict".
    except Exception as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path}: not a readable torch state dict ({first_line})") from exc
    if isinstance(state, dict) and "model_state_dict" in state:
        state = state["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: does not hold a state dict of tensors")
    return state


def _metric(record: dict, key: str) -> float:
    value = float(record.get(key, float("nan")))
    return float("nan") if value == _NOT_MEASURED else value


def _model_folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("params.json"))


def import_public_zoo(
    source: str | Path,
    workspace: Workspace,
    dataset: str | None = None,
    on_progress: Progress | None = None,
) -> ImportReport:
    root = Path(source).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (expected one folder per model with params.json)")
    folders = _model_folders(root)
    if not folders:
        raise UserError(f"{root}: no model folders found (none holds a params.json)")

    spec: ArchSpec | None = None
    vectors, rows, problems = [], [], []
    for model_id, folder in enumerate(folders):
        try:
            model_spec, model_vectors, model_rows = _read_model(folder, spec)
        except ValueError as exc:
            problems.append(f"{folder.relative_to(root)}: skipped: {exc}")
        except (TypeError, AttributeError, KeyError) as exc:  # nulls or wrong types in params.json / result.json
            problems.append(f"{folder.relative_to(root)}: skipped: malformed params.json or result.json ({exc!r})")
        else:
            spec = spec or model_spec
            for row in model_rows:
                row["model_id"] = model_id
            vectors += model_vectors
            rows += model_rows
        if on_progress:
            on_progress(model_id + 1, len(folders), {"skipped": len(problems)})
    if not rows:
        detail = "; ".join(problems[:3])
        raise UserError(f"{root}: no model could be imported ({len(problems)} problems: {detail})")

    table = finish_table(rows)
    manifest = {
        "dataset": {"name": dataset or "unknown", "n_classes": spec.n_classes},
        "zoo": {
            "source": "public-layout",
            "imported_from": root.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "import_problems": problems,
        },
    }
    zoo = Zoo(spec, torch.stack(vectors), table, manifest)
    with workspace.lock():
        save_zoo(workspace, [zoo])
    return ImportReport(zoo, table["model_id"].n_unique(), problems)


def _read_model(folder: Path, expected: ArchSpec | None) -> tuple[ArchSpec, list[torch.Tensor], list[dict]]:
    try:
        params = json.loads((folder / "params.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"params.json unreadable ({exc})") from exc
    if not (folder / "result.json").exists():
        raise ValueError("result.json missing")
    results = _read_results(folder / "result.json")
    activation = str(params.get("model::activation", "tanh")).lower().replace("_", "")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one we model ({', '.join(ACTIVATIONS)})")

    vectors, rows, spec = [], [], None
    for epoch, ckpt_dir in _checkpoint_folders(folder):
        state = _load_state_dict(ckpt_dir / "checkpoints")
        if spec is None:
            spec = match_state_dict(state, _candidates(activation))
            if spec is None:
                shapes = {k: list(v.shape) for k, v in state.items()}
                raise ValueError(f"architecture not recognised (not CNN-s, CNN-l or ours): {json.dumps(shapes)[:300]}")
            if expected is not None and spec.with_activation(expected.activation) != expected:
                raise ValueError(f"architecture {spec.name} differs from the zoo's {expected.name}")
        if epoch not in results:
            raise ValueError(f"result.json has no line for epoch {epoch} (truncated?)")
        record = results[epoch]
        missing = [k for k in ("train_acc", "test_acc", "train_loss", "test_loss") if k not in record]
        if missing:
            raise ValueError(f"result.json epoch {epoch} lacks {missing}")
        try:
            vector = flatten(spec, state)
        except ArchitectureError as exc:
            raise ValueError(f"{ckpt_dir.name}: {exc}") from exc
        if not torch.isfinite(vector).all():
            raise ValueError(f"checkpoint_{epoch}: non-finite weights")
        vectors.append(vector)
        rows.append(_checkpoint_row(params, activation, epoch, record))
    return spec, vectors, rows


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


def _checkpoint_row(params: dict, activation: str, epoch: int, record: dict) -> dict:
    """One checkpoint's row of the zoo table, from its model's params.json and its epoch's result.json line."""
    return {
        "epoch": epoch,
        "seed": int(params.get("seed", 0)),
        "init_seed": int(params.get("seed", 0)),
        "init": str(params.get("model::init_type", "unknown")),
        "lr": float(params.get("optim::lr", float("nan"))),
        "weight_decay": float(params.get("optim::wd", 0.0)),
        "dropout": float(params.get("model::dropout", 0.0)),
        "activation": activation,
        "batch_size": int(params.get("training::batchsize", 0)),
        "train_loss": _metric(record, "train_loss"),
        "train_acc": _metric(record, "train_acc"),
        "val_loss": _metric(record, "val_loss"),
        "val_acc": _metric(record, "val_acc"),
        "test_loss": _metric(record, "test_loss"),
        "test_acc": _metric(record, "test_acc"),
    }
