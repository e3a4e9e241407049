"""The ready-made digits workspace the app opens on.

It is unpacked from the pack shipped in `assets/` (made by our own CLI, see the README) when there is one:
that takes seconds, where building it (a 256-model zoo, the autoencoder, the map) takes minutes on two CPU
cores. Without the pack it is built, with the same settings as the CLI's defaults, reporting progress by phase.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.packing import unpack_workspace
from core.workspace import Workspace

ASSET = Path(__file__).resolve().parent.parent / "assets" / "digits-workspace.zip"
NAME = "digits"
# Phases reported through on_progress(done, total, {"phase": ...}); each phase counts its own steps.
PHASES = ("unpack", "zoo", "autoencoder", "evaluation")


def build_default(
    workspace: Workspace,
    device: str = "cpu",
    on_progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Build the default workspace from scratch: `zoo generate` and `ae train` with the CLI's defaults.

    The work happens in a hidden staging workspace beside the target, renamed into place when complete, so
    the target either does not exist or is whole; a stopped build resumes where it stopped."""
    from core.evaluate import evaluate_run
    from core.train import train_autoencoder
    from core.zoo import ZooConfig, generate_zoo

    def phase(name: str):
        return lambda done, total, info: on_progress and on_progress(done, total, {"phase": name, **info})

    staging = Workspace(workspace.root.parent / f".{workspace.root.name}.staging")
    if not staging.exists():
        epochs = ZooConfig.epochs
        zoo_config = ZooConfig(save_epochs=tuple(sorted({0, 1, epochs // 4, epochs // 2, epochs})))
        generate_zoo(staging, zoo_config, device, phase("zoo"), should_stop)
    run = train_autoencoder(staging, device=device, on_progress=phase("autoencoder"), should_stop=should_stop)
    phase("evaluation")(0, 1, {})
    evaluate_run(staging, run.name, device)
    phase("evaluation")(1, 1, {})
    staging.root.rename(workspace.root)


def ensure_default(
    root: str | Path,
    device: str = "cpu",
    on_progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    asset: Path = ASSET,
) -> Workspace:
    """The default workspace under `root`: as it is, unpacked from `asset`, or built."""
    workspace = Workspace(Path(root) / NAME)
    if workspace.exists():
        return workspace
    if asset.exists():
        if on_progress:
            on_progress(0, 1, {"phase": "unpack"})
        unpack_workspace(asset, workspace.root)
        if on_progress:
            on_progress(1, 1, {"phase": "unpack"})
        return workspace
    build_default(workspace, device, on_progress, should_stop)
    return workspace
