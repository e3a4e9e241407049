"""The ready-made digits workspace the app opens on.

The app unpacks it from the pack shipped in `assets/` (made by our own CLI, see the README) when there is one:
that takes seconds, where building it (a 256-model zoo, the autoencoder, the map) takes minutes on two CPU
cores. Without the pack it is built with the configs' defaults (core/pipeline.py `build_workspace`).

The app's entry point imports this module before its first page draws, so the engine (torch) is imported inside
the functions below, when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.store.packing import unpack_workspace
from core.store.workspace import Workspace

ASSET = Path(__file__).resolve().parent.parent / "assets" / "digits-workspace.zip"
NAME = "digits"


def default_configs() -> tuple:
    """(zoo, autoencoder, training) settings of the default workspace: the configs' own defaults."""
    from core import pipeline  # lazy: the engine imports torch, which the app's first page does without

    return pipeline.default_configs()


def unpack_default(target: Workspace) -> Workspace:
    """The shipped pack unpacked into `target` (which appears only once its zoo loads)."""
    from core.zoo.model_zoo import load_zoos  # lazy: loading the zoo imports torch; only a first start unpacks

    return unpack_workspace(ASSET, target.root, load_zoos)


def build_default(
    workspace: Workspace,
    device: str = "cpu",
    on_progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Build the default workspace from scratch, in phases zoo, training, map, evaluation; a stopped build
    resumes where it stopped, and the target appears only when complete."""
    from core import pipeline  # lazy: the engine imports torch, which the app's first page does without

    pipeline.build_workspace(workspace, default_configs(), device, on_progress, should_stop)
