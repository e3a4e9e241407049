"""The autoencoder's training loop, runs on disk, resumption and the eval contract."""

from dataclasses import replace

import pytest
import torch

from core.cli.describe import describe_eval
from core.errors import Interrupted
from core.pipeline import train_and_map
from core.rep import evaluate, loop
from core.rep.autoencoder import AEConfig, HyperRepresentationAE
from core.rep.evaluate import evaluate_run
from core.rep.loop import TrainConfig
from core.rep.methods.hyperrep import pca_start
from core.rep.prepare import prepare, split_models
from core.rep.run import load_run
from core.rep.tokens import token_layout, tokenize
from core.rep.train import settings_for_device
from core.store import budget
from core.zoo.model_zoo import load_zoos
from tests.conftest import copy_workspace

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


def test_a_tiny_autoencoder_overfits_a_tiny_zoo(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
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
        structure_weight=1.0,  # the weight-space loss alone: it is the one that can fall to nearly nothing
        behaviour_weight=0.0,
    )
    run = train_and_map(workspace, SMALL, config)
    reconstruction = run.history["reconstruction"].to_list()
    assert reconstruction[-1] < reconstruction[0] / 5
    assert (run.folder / "model.safetensors").exists() and (run.folder / "embeddings.parquet").exists()


def test_the_linear_path_starts_as_pca(tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    prepared = prepare(zoo, split_models(list(range(6)), (0.5, 0.25, 0.25), 0), align=True)
    layout = token_layout(zoo.spec)
    standardised = prepared.standardised_rows(prepared.rows("train"))
    tokens = tokenize(layout, standardised)
    model = HyperRepresentationAE(layout.n_tokens, layout.width, replace(SMALL, latent_dim=3))
    model.init_linear_path(*pca_start(standardised, layout, rank=3, seed=0))
    flat = tokens.flatten(1)
    mean = flat.mean(0)
    _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    pca = (flat - mean) @ vh[:3].T @ vh[:3] + mean
    with torch.no_grad():
        decoded = model.decode(model.encode(tokens)).flatten(1)
    torch.testing.assert_close(decoded, pca, atol=1e-4, rtol=1e-4)


def test_interrupted_training_resumes_bit_identically(tiny_zoo_workspace, tmp_path):
    config = TrainConfig(epochs=6, batch_size=8, warmup_epochs=1, permute_probability=0.5)
    straight = train_and_map(copy_workspace(tiny_zoo_workspace, tmp_path / "a"), SMALL, config, evaluate=False)

    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "b")
    epochs_seen = []
    with pytest.raises(Interrupted):
        train_and_map(
            workspace,
            SMALL,
            config,
            on_progress=lambda d, t, i: epochs_seen.append(d),
            should_stop=lambda: len(epochs_seen) >= 3,
            evaluate=False,
        )
    resumed_epochs = []
    resumed = train_and_map(
        workspace, SMALL, config, on_progress=lambda d, t, i: resumed_epochs.append((i["phase"], d, i)), evaluate=False
    )
    # the epochs left, then the map of the finished run
    assert [(p, d) for p, d, _ in resumed_epochs] == [
        ("training", 4),
        ("training", 5),
        ("training", 6),
        ("map", 0),
        ("map", 1),
    ]
    checkpoints = len(load_zoos(workspace)[0].table)
    assert all(info["points"] == checkpoints for p, _, info in resumed_epochs if p == "map")  # what its time scales by
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    deterministic = ["epoch", "loss", "reconstruction", "contrastive", "val_reconstruction", "lr"]
    assert straight.history.select(deterministic).equals(resumed.history.select(deterministic))
    again = []
    finished = train_and_map(workspace, SMALL, config, on_progress=lambda d, t, i: again.append(d), evaluate=False)
    assert again == [] and finished.name == resumed.name  # a finished run is returned, not retrained


def test_the_resumable_state_is_written_at_intervals_and_when_stopped_and_removed_once_trained(
    tiny_zoo_workspace, tmp_path, monkeypatch
):
    written = []
    save = loop._save_state

    def counting(path, run, generator):
        written.append(run.epoch)
        save(path, run, generator)

    monkeypatch.setattr(loop, "_save_state", counting)
    config = TrainConfig(epochs=5, batch_size=8, warmup_epochs=1)
    monkeypatch.setattr(loop, "STATE_EVERY_S", 1e9)  # no interval passes: only a stop writes
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    with pytest.raises(Interrupted):
        train_and_map(workspace, SMALL, config, should_stop=lambda: not written, evaluate=False)
    state = next((workspace.root / "ae").iterdir()) / "train_state.pt"
    assert written == [1] and state.exists()
    resumed = train_and_map(workspace, SMALL, config, evaluate=False)
    assert written == [1] and resumed.history["epoch"].to_list() == [1, 2, 3, 4, 5]
    assert not state.exists()  # a trained run is not resumed: its state is gone
    monkeypatch.setattr(loop, "STATE_EVERY_S", 0.0)
    monkeypatch.setattr(loop, "STATE_COST_FACTOR", 0.0)  # every epoch
    train_and_map(copy_workspace(tiny_zoo_workspace, tmp_path / "every"), SMALL, config, evaluate=False)
    assert written[1:] == [1, 2, 3, 4, 5]


def test_layer_norm_switch_changes_the_objective(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    base = TrainConfig(epochs=2, batch_size=8, warmup_epochs=1)
    normed = train_and_map(workspace, SMALL, base)
    plain = train_and_map(workspace, SMALL, TrainConfig(**{**base.__dict__, "layer_norm": False}))
    assert normed.name != plain.name
    assert plain.history["reconstruction"][0] < normed.history["reconstruction"][0] / 10  # raw weights are small
    assert load_run(workspace).name == plain.name  # the latest finished run


def test_eval_json_has_the_contract_keys(tiny_zoo_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    sizes = ("--d-model", 32, "--latent-dim", 8, "--batch-size", 8)
    trained = run_cli("ae", "train", "--workspace", workspace.root, "--epochs", 3, *sizes, "--json", "--quiet")
    assert trained.code == 0
    evaluated = run_cli("ae", "eval", "--workspace", workspace.root, "--json")
    result = evaluated.json
    assert evaluated.code == 0 and result == trained.json
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
    assert "probe_notes" not in result  # the flat weights fit: probed


def test_the_flat_weights_probe_that_does_not_fit_the_budget_is_left_out_and_says_why(
    tiny_ae_workspace, tmp_path, run_cli, monkeypatch
):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    monkeypatch.setattr(budget, "_budget_mb", [budget.DEFAULT_MEMORY_MB])  # --memory below ends with the test
    monkeypatch.setattr(evaluate, "fits", lambda n_bytes: n_bytes < 20 * 4 * 18 * 1288)  # 18 checkpoints do not fit
    evaluated = run_cli("ae", "eval", "--workspace", workspace.root, "--memory", 64, "--refresh", "--json")
    assert evaluated.code == 0
    note = evaluated.json["probe_notes"]["weights"]
    assert "18 checkpoints" in note and "2 MB" in note and "64 MB" in note and "--memory" in note
    assert evaluated.json["probe_r2"]["weights"] == dict.fromkeys(["test_acc", "epoch", "ggap"])
    assert f"weights probe: {note}" in run_cli("ae", "eval", "--workspace", workspace.root).out


def test_eval_without_a_run_is_a_clear_error(tiny_zoo_workspace, run_cli):
    result = run_cli("ae", "eval", "--workspace", tiny_zoo_workspace.root, "--json")
    assert result.code == 2 and "no finished autoencoder run" in result.err


def test_cuda_scales_the_default_batch_and_learning_rate_and_nothing_else():
    default = TrainConfig()
    on_gpu = settings_for_device(default, "cuda")
    assert (on_gpu.batch_size, on_gpu.lr) == (4 * default.batch_size, pytest.approx(2 * default.lr))
    assert replace(on_gpu, batch_size=default.batch_size, lr=default.lr) == default
    assert settings_for_device(default, "cpu") == default
    chosen = TrainConfig(batch_size=32)
    assert settings_for_device(chosen, "cuda") == chosen  # a batch size or rate the user chose stays
    assert settings_for_device(TrainConfig(lr=3e-4), "cuda:0") == TrainConfig(lr=3e-4)


@pytest.mark.filterwarnings("error")  # numpy's "mean of empty slice" would be a warning on the user's screen
def test_accuracy_kept_by_reconstructions_counts_only_checkpoints_that_learned():
    # 10 classes: a checkpoint learned something at accuracy >= 0.2
    first = (torch.tensor([0.8, 0.1]), torch.tensor([0.6, 0.1]), 10, None)
    second = (torch.tensor([0.5]), torch.tensor([0.5]), 10, None)
    figures = evaluate._accuracy_retention([first, second])
    assert figures["recon_acc_ratio"] == pytest.approx((0.75 + 1.0) / 2)
    assert figures["recon_keep90_fraction"] == pytest.approx(0.5) and figures["recon_acc_checkpoints"] == 2
    untrained = evaluate._accuracy_retention([(torch.tensor([0.1, 0.12]), torch.tensor([0.1, 0.1]), 10, None)])
    assert untrained["recon_acc_ratio"] is None and untrained["recon_keep90_fraction"] is None
    assert "twice chance" in untrained["recon_acc_note"]
    result = {"run": "r", "test_models": 1, "test_checkpoints": 2, "recon_r2": 0.5, "recon_r2_per_layer": {}}
    assert any("not measured (no test checkpoint" in line for line in describe_eval(result | untrained))
