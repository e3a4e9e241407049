"""The ready-made digits workspace the app opens on.

The app unpacks it from the pack shipped in `assets/` (made by our own CLI, see the README) when there is one:
that takes seconds, where building it (a 256-model zoo, the autoencoder, the map) takes minutes on two CPU
cores. Without the pack it is built, with the same settings as the CLI's defaults, reporting progress by phase.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.store.workspace import Workspace

ASSET = Path(__file__).resolve().parent.parent / "assets" / "digits-workspace.zip"
NAME = "digits"


def default_configs():
    """(zoo, autoencoder, training) settings: what `zoo generate` and `ae train` do without options (the
    CLI's saved epochs are 0, 1, E/4, E/2, E). Imported here, not at the top, so the app starts without torch."""
    from core.rep.autoencoder import AEConfig
    from core.rep.train import TrainConfig
    from core.zoo.model_zoo import ZooConfig

    return ZooConfig(save_epochs=(0, 1, 3, 7, 15)), AEConfig(), TrainConfig()


def build_default(
    workspace: Workspace,
    device: str = "cpu",
    on_progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Build the default workspace from scratch: `zoo generate` and `ae train` with the CLI's defaults,
    reporting progress with info["phase"] in zoo, autoencoder, map, evaluation.

    The work happens in a hidden staging workspace beside the target, renamed into place when complete, so
    the target either does not exist or is whole; a stopped build resumes where it stopped."""
    from core.rep.evaluate import evaluate_run
    from core.rep.train import train_autoencoder
    from core.zoo.model_zoo import generate_zoo

    def phase(name: str):
        return lambda done, total, info: on_progress and on_progress(done, total, {"phase": name, **info})

    zoo_config, ae_config, train_config = default_configs()
    staging = Workspace(workspace.root.parent / f".{workspace.root.name}.staging")
    if not staging.exists():
        generate_zoo(staging, zoo_config, device, phase("zoo"), should_stop)
    run = train_autoencoder(staging, ae_config, train_config, None, device, phase("autoencoder"), should_stop)
    phase("evaluation")(0, 1, {})
    evaluate_run(staging, run.name, device)
    phase("evaluation")(1, 1, {})
    staging.root.rename(workspace.root)
