"""Autoencoder training over 2 gloo processes on the CPU (core/rep/distributed.py) against one process with the same
global batch: the same loss history within RTOL, through torchrun's own command line and through `ae train --nproc`,
which also resumes a run that one process stopped. Augmentation noise, random erasing and the behavioural loss
(whose draws each process makes for itself) are off, so what remains is floating-point order."""

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from core.errors import Interrupted
from core.rep.autoencoder import AEConfig
from core.rep.loop import TrainConfig
from core.rep.train import train_autoencoder
from tests.conftest import copy_workspace

AE = AEConfig(d_model=32, heads=2, encoder_layers=1, decoder_layers=1, feedforward=64, latent_dim=8)
RANDOM_DRAWS_OFF = {"noise": 0.0, "erase_probability": 0.0, "behaviour_weight": 0.0}  # each process's own draws
TRAIN = TrainConfig(epochs=3, batch_size=8, warmup_epochs=1, structure_weight=1.0, **RANDOM_DRAWS_OFF)
OPTIONS = [
    *("--d-model", "32", "--heads", "2", "--encoder-layers", "1", "--decoder-layers", "1", "--feedforward", "64"),
    *("--latent-dim", "8", "--epochs", "3", "--batch-size", "8", "--warmup-epochs", "1", "--noise", "0"),
    *("--erase", "0", "--behaviour-weight", "0", "--structure-weight", "1", "--device", "cpu", "--quiet", "--json"),
]
# Measured: 2 processes matched one to 4e-7 relative over 3 epochs of an 8-model zoo; the gradients are summed across
# processes in another order than one process sums them, and that difference grows with every step.
RTOL = 1e-5
FIGURES = ["loss", "reconstruction", "contrastive", "val_reconstruction", "lr"]


@pytest.fixture(scope="module")
def one_process(tiny_zoo_workspace, tmp_path_factory):
    """The loss history of the run in this process."""
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path_factory.mktemp("one") / "ws")
    return train_autoencoder(workspace, AE, TRAIN, "r").files.history


def _history(workspace) -> pl.DataFrame:
    return pl.read_parquet(workspace.root / "ae" / "r" / "history.parquet")


def _assert_same_history(history: pl.DataFrame, reference_path) -> None:
    reference = pl.read_parquet(reference_path)
    assert history["epoch"].to_list() == reference["epoch"].to_list() == [1, 2, 3]
    np.testing.assert_allclose(history[FIGURES].to_numpy(), reference[FIGURES].to_numpy(), rtol=RTOL)


def _core(*argv, launcher=()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *launcher, "core", *argv], capture_output=True, text=True, timeout=300)


def test_torchrun_with_two_gloo_processes_follows_one_process(tiny_zoo_workspace, one_process, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    torchrun = ("torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m")
    result = _core("ae", "train", "--workspace", workspace.root, "--run-name", "r", *OPTIONS, launcher=torchrun)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["run"] == "r"
    assert len(result.stdout.strip().splitlines()) == 1  # rank 0 alone prints
    _assert_same_history(_history(workspace), one_process)


def test_nproc_resumes_a_run_one_process_stopped(tiny_zoo_workspace, one_process, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    with pytest.raises(Interrupted, match="stopped after epoch 1"):
        train_autoencoder(workspace, AE, TRAIN, "r", should_stop=lambda: True)
    result = _core("ae", "train", "--workspace", workspace.root, "--run", "r", "--nproc", "2", *OPTIONS)
    assert result.returncode == 0, result.stderr
    _assert_same_history(_history(workspace), one_process)


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--nproc", "0"], "--nproc must lie in 1..256, got 0"), (["--nproc", "2", "--epochs", "0"], "epochs >= 1")],
)
def test_bad_nproc_requests_are_one_line_before_any_process_starts(run_cli, tiny_zoo_workspace, options, message):
    result = run_cli("ae", "train", "--workspace", tiny_zoo_workspace.root, *options)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and message in result.err


def test_nproc_without_a_zoo_is_one_line(run_cli, tmp_path):
    result = run_cli("ae", "train", "--workspace", tmp_path / "ws", "--nproc", "2")
    assert result.code == 2 and result.err.strip().splitlines() == [
        f"error: {tmp_path / 'ws'}: no zoo here to train on (zoo generate or zoo import first)"
    ]
