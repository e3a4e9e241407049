"""Shared fixtures: tiny zoos in temporary workspaces, built once per test session."""

from __future__ import annotations

import pytest

from core.store.workspace import Workspace
from core.zoo.model_zoo import ZooConfig, generate_zoo

TINY = ZooConfig(models=6, epochs=3, save_epochs=(0, 1, 3), batch_size=32, seed=3, init_seeds=3)


@pytest.fixture(scope="session")
def tiny_zoo_workspace(tmp_path_factory) -> Workspace:
    """A 6-model digits zoo (3 epochs, checkpoints at 0, 1, 3). Read it; do not write to it."""
    workspace = Workspace(tmp_path_factory.mktemp("tiny") / "ws")
    generate_zoo(workspace, TINY)
    return workspace


@pytest.fixture(scope="session")
def tiny_ae_workspace(tiny_zoo_workspace, tmp_path_factory) -> Workspace:
    """The tiny zoo with a small autoencoder trained on it (a few epochs). Read it; do not write to it."""
    import shutil

    from core.rep.autoencoder import AEConfig
    from core.rep.train import TrainConfig, train_autoencoder

    workspace = Workspace(tmp_path_factory.mktemp("tiny-ae") / "ws")
    shutil.copytree(tiny_zoo_workspace.root, workspace.root)
    ae = AEConfig(d_model=32, heads=2, encoder_layers=1, decoder_layers=1, feedforward=64, latent_dim=8)
    train_autoencoder(workspace, ae, TrainConfig(epochs=4, batch_size=8, warmup_epochs=1))
    return workspace


@pytest.fixture(scope="session")
def tiny_resnet_workspace(tmp_path_factory) -> Workspace:
    """A 6-model digits zoo of the ResNet preset (2 epochs, checkpoints at 0, 1, 2), made through the CLI.
    Read it; do not write to it."""
    from core.cli import main

    workspace = Workspace(tmp_path_factory.mktemp("tiny-resnet") / "ws")
    args = ["zoo", "generate", "--workspace", str(workspace.root), "--arch", "resnet", "--models", "6"]
    args += ["--epochs", "2", "--save-epochs", "0,1,2", "--seed", "3", "--init-seeds", "3", "--quiet"]
    assert main(args) == 0
    return workspace
