"""The autoencoder's training loop, runs on disk, resumption and the eval contract."""

import json
import shutil

import pytest
import torch

from core.autoencoder import AEConfig
from core.cli import main
from core.errors import Interrupted
from core.evaluate import evaluate_run
from core.train import TrainConfig, load_run, train_autoencoder
from core.workspace import Workspace

SMALL = AEConfig(
    d_model=32,
    heads=2,
    encoder_layers=1,
    decoder_layers=1,
    feedforward=64,
    latent_dim=16,
    projection_dim=8,
    dropout=0.0,
)


def _copy(workspace: Workspace, target) -> Workspace:
    shutil.copytree(workspace.root, target)
    return Workspace(target)


def test_a_tiny_autoencoder_overfits_a_tiny_zoo(tiny_zoo_workspace, tmp_path):
    workspace = _copy(tiny_zoo_workspace, tmp_path / "ws")
    config = TrainConfig(
        epochs=120, batch_size=16, lr=3e-3, gamma=0.0, noise=0.0, erase_probability=0.0, warmup_epochs=2, patience=1000
    )
    run = train_autoencoder(workspace, SMALL, config)
    reconstruction = run.history["reconstruction"].to_list()
    assert reconstruction[-1] < reconstruction[0] / 5
    assert (run.folder / "model.safetensors").exists() and (run.folder / "embeddings.parquet").exists()


def test_interrupted_training_resumes_bit_identically(tiny_zoo_workspace, tmp_path):
    config = TrainConfig(epochs=6, batch_size=8, warmup_epochs=1, permute_probability=0.5)
    straight = train_autoencoder(_copy(tiny_zoo_workspace, tmp_path / "a"), SMALL, config)

    workspace = _copy(tiny_zoo_workspace, tmp_path / "b")
    epochs_seen = []
    with pytest.raises(Interrupted):
        train_autoencoder(
            workspace,
            SMALL,
            config,
            on_progress=lambda d, t, i: epochs_seen.append(d),
            should_stop=lambda: len(epochs_seen) >= 3,
        )
    resumed_epochs = []
    resumed = train_autoencoder(workspace, SMALL, config, on_progress=lambda d, t, i: resumed_epochs.append(d))
    assert resumed_epochs == [4, 5, 6]
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert straight.history.drop("elapsed_s").equals(resumed.history.drop("elapsed_s"))


def test_layer_norm_switch_changes_the_objective(tiny_zoo_workspace, tmp_path):
    workspace = _copy(tiny_zoo_workspace, tmp_path / "ws")
    base = TrainConfig(epochs=2, batch_size=8, warmup_epochs=1)
    normed = train_autoencoder(workspace, SMALL, base)
    plain = train_autoencoder(workspace, SMALL, TrainConfig(**{**base.__dict__, "layer_norm": False}))
    assert normed.name != plain.name
    assert plain.history["reconstruction"][0] < normed.history["reconstruction"][0] / 10  # raw weights are small
    assert load_run(workspace).name == plain.name  # the latest finished run


def test_eval_json_has_the_contract_keys(tiny_zoo_workspace, tmp_path, capsys):
    workspace = _copy(tiny_zoo_workspace, tmp_path / "ws")
    code = main(
        [
            "ae",
            "train",
            "--workspace",
            str(workspace.root),
            "--epochs",
            "3",
            "--d-model",
            "32",
            "--latent-dim",
            "8",
            "--batch-size",
            "8",
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["ae", "eval", "--workspace", str(workspace.root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result == trained
    assert isinstance(result["recon_r2"], float) and result["recon_acc_ratio"] > 0
    assert 0 <= result["recon_keep90_fraction"] <= 1
    for features in ("embedding", "weights", "stats"):
        assert set(result["probe_r2"][features]) == {"test_acc", "epoch", "ggap"}
    assert set(result["recon_r2_per_layer"]) == {
        "module_list.0",
        "module_list.3",
        "module_list.5",
        "module_list.9",
        "module_list.11",
    }
    assert evaluate_run(workspace, refresh=True)["recon_r2"] == pytest.approx(result["recon_r2"], abs=1e-6)


def test_eval_without_a_run_is_a_clear_error(tiny_zoo_workspace, capsys):
    assert main(["ae", "eval", "--workspace", str(tiny_zoo_workspace.root), "--json"]) == 2
    assert "no finished autoencoder run" in capsys.readouterr().err
