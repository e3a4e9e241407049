"""The autoencoder's training loop, runs on disk, resumption and the eval contract."""

import json
import shutil
from dataclasses import replace

import pytest
import torch

from core.rep.autoencoder import AEConfig
from core.cli import main
from core.errors import Interrupted
from core.rep.evaluate import evaluate_run
from core.rep.train import TrainConfig, load_run, train_autoencoder
from core.store.workspace import Workspace

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
        epochs=120,
        batch_size=16,
        lr=3e-3,
        gamma=0.0,
        noise=0.0,
        erase_probability=0.0,
        warmup_epochs=2,
        patience=1000,
        pca_init=False,
    )
    run = train_autoencoder(workspace, SMALL, config)
    reconstruction = run.history["reconstruction"].to_list()
    assert reconstruction[-1] < reconstruction[0] / 5
    assert (run.folder / "model.safetensors").exists() and (run.folder / "embeddings.parquet").exists()


def test_the_linear_path_starts_as_pca(tiny_zoo_workspace):
    from core.rep.autoencoder import HyperRepresentationAE
    from core.rep.prepare import prepare, split_models
    from core.zoo.model_zoo import load_zoo

    zoo = load_zoo(tiny_zoo_workspace)
    prepared = prepare(zoo, split_models(list(range(6)), (0.5, 0.25, 0.25), 0), align=True)
    tokens = prepared.tokens(prepared.rows("train"))
    model = HyperRepresentationAE(prepared.layout.n_tokens, prepared.layout.width, replace(SMALL, latent_dim=3))
    model.init_linear_path(tokens)
    flat = tokens.flatten(1)
    mean = flat.mean(0)
    _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    pca = (flat - mean) @ vh[:3].T @ vh[:3] + mean
    with torch.no_grad():
        decoded = model.decode(model.encode(tokens)).flatten(1)
    torch.testing.assert_close(decoded, pca, atol=1e-4, rtol=1e-4)


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
    resumed = train_autoencoder(
        workspace, SMALL, config, on_progress=lambda d, t, i: resumed_epochs.append(i.get("phase", d))
    )
    assert resumed_epochs == [4, 5, 6, "map", "map"]  # the epochs left, then the map of the finished run
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    deterministic = ["epoch", "loss", "reconstruction", "contrastive", "val_reconstruction", "lr"]
    assert straight.history.select(deterministic).equals(resumed.history.select(deterministic))
    again = []
    finished = train_autoencoder(workspace, SMALL, config, on_progress=lambda d, t, i: again.append(d))
    assert again == [] and finished.name == resumed.name  # a finished run is returned, not retrained


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
