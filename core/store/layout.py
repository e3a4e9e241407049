"""Where things live inside a workspace, readable without importing torch (the app's first page needs only
these paths, the zoo's table and the map, and starts faster without it)."""

from __future__ import annotations

from pathlib import Path

from core.store.workspace import Workspace, read_json


def runs_dir(workspace: Workspace) -> Path:
    return workspace.root / "ae"


def list_runs(workspace: Workspace) -> list[str]:
    """Autoencoder runs, oldest first."""
    folder = runs_dir(workspace)
    if not folder.exists():
        return []
    runs = [p for p in folder.iterdir() if (p / "config.json").exists()]
    return [p.name for p in sorted(runs, key=lambda p: (p / "config.json").stat().st_mtime)]


def run_statuses(workspace: Workspace) -> dict[str, str]:
    """{run: "training" | "done"}, oldest first."""
    return {r: read_json(runs_dir(workspace) / r / "config.json").get("status", "?") for r in list_runs(workspace)}


def run_kind(workspace: Workspace, run: str) -> str:
    """ "hyperrep" (per-neuron tokens, whole model) or "sane" (sequence tokens, windows)."""
    return read_json(runs_dir(workspace) / run / "config.json").get("kind", "hyperrep")


def embeddings_path(workspace: Workspace, run_name: str) -> Path:
    return runs_dir(workspace) / run_name / "embeddings.parquet"


def samples_dir(workspace: Workspace) -> Path:
    return workspace.root / "samples"


def models_table_path(workspace: Workspace) -> Path:
    return workspace.zoo_dir / "models.parquet"
