"""Shared fixtures: tiny zoos in temporary workspaces, built once per test session, and helpers to copy a workspace
and to run the command line in-process."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass

import pytest
import torch

from core.cli import main
from core.gen import novelty
from core.pipeline import train_and_map
from core.rep.autoencoder import AEConfig
from core.rep.loop import TrainConfig
from core.store.workspace import Workspace
from core.zoo.generate import ZooConfig, generate_zoo


@contextlib.contextmanager
def one_torch_thread():
    """One torch thread inside: with several, oneDNN splits a grouped convolution's work by its number of groups
    (models), so a model's last bit may depend on the size of its population (2.4e-7 at most measured); at one
    thread a model's arithmetic does not. For tests that compare models trained in populations of other sizes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


TINY = ZooConfig(models=6, epochs=3, save_epochs=(0, 1, 3), batch_size=32, seed=3, init_seeds=3)
TINY_AE = AEConfig(d_model=32, heads=2, encoder_layers=1, decoder_layers=1, feedforward=64, latent_dim=8)
TINY_TRAIN = TrainConfig(epochs=4, batch_size=8, warmup_epochs=1)


def copy_workspace(source: Workspace, target) -> Workspace:
    """A writable copy of a (session-wide, read-only) workspace."""
    shutil.copytree(source.root, target)
    return Workspace(target)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        """The JSON object on the last line of stdout (what --json promises)."""
        return json.loads(self.out.strip().splitlines()[-1])


@pytest.fixture
def run_cli(capsys):
    """`python -m core ARGS` in-process (arguments may be paths or numbers): exit code, stdout and stderr."""

    def run(*argv) -> CliResult:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def zoo_error_computations(monkeypatch) -> list[int]:
    """The number of models of every zoo error-set computation (core/gen/novelty.py `ZooErrorSets`) in the test."""
    computed, original = [], novelty.predicted_classes

    def counting(spec, vectors, data, activations=None):
        computed.append(len(vectors))
        return original(spec, vectors, data, activations)

    monkeypatch.setattr(novelty, "predicted_classes", counting)
    return computed


@pytest.fixture(scope="session")
def tiny_zoo_workspace(tmp_path_factory) -> Workspace:
    """A 6-model digits zoo (3 epochs, checkpoints at 0, 1, 3). Read it; do not write to it."""
    workspace = Workspace(tmp_path_factory.mktemp("tiny") / "ws")
    generate_zoo(workspace, TINY)
    return workspace


@pytest.fixture(scope="session")
def tiny_ae_workspace(tiny_zoo_workspace, tmp_path_factory) -> Workspace:
    """The tiny zoo with a small autoencoder trained and mapped on it (a few epochs). Read it; do not write to it."""
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path_factory.mktemp("tiny-ae") / "ws")
    train_and_map(workspace, TINY_AE, TINY_TRAIN, evaluate=False)
    return workspace


@pytest.fixture(scope="session")
def tiny_resnet_workspace(tmp_path_factory) -> Workspace:
    """A 6-model digits zoo of the ResNet preset (2 epochs, checkpoints at 0, 1, 2), made through the CLI.
    Read it; do not write to it."""
    workspace = Workspace(tmp_path_factory.mktemp("tiny-resnet") / "ws")
    args = ["zoo", "generate", "--workspace", str(workspace.root), "--arch", "resnet", "--models", "6"]
    args += ["--epochs", "2", "--save-epochs", "0,1,2", "--seed", "3", "--init-seeds", "3", "--quiet"]
    assert main(args) == 0
    return workspace
