"""SANE: windows with halos, the windowed model, training runs (resumable), embeddings, evaluation, CLI."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from core.errors import UserError
from core.gen.anchors import resolve_anchors
from core.gen.config import SampleConfig
from core.gen.draw import draw_models
from core.pipeline import generate, train_and_map
from core.rep.autoencoder import AEConfig
from core.rep.embed import embedding_matrix, load_embeddings
from core.rep.evaluate import evaluate_run
from core.rep.loop import TrainConfig
from core.rep.methods.sane import sane_layout
from core.rep.run import load_run
from core.rep.sane import DEPTH_PARTS, SANE, SANEConfig, aggregate, decode_sequence, encode_sequence, windows
from core.rep.sequence import from_sequence
from core.rep.tokens import token_layout
from core.store.files import read_parquet, read_tensors
from core.store.workspace import Workspace
from core.zoo.data import load_dataset
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.model_zoo import combined_table, load_zoos, zoo_info
from tests.conftest import copy_workspace

TINY = SANEConfig(
    token_width=16,
    window=8,
    halo=2,
    d_model=16,
    heads=2,
    encoder_layers=1,
    decoder_layers=1,
    feedforward=32,
    latent_dim=4,
    projection_dim=8,
)
TRAIN = TrainConfig(epochs=3, batch_size=8, warmup_epochs=1, permute_probability=0.5)


@pytest.mark.parametrize("n, window, halo", [(5, 8, 2), (8, 8, 2), (9, 8, 2), (40, 8, 2), (41, 10, 0), (100, 32, 8)])
def test_windows_keep_every_token_once_with_context_inside_the_sequence(n, window, halo):
    spans = windows(n, window, halo)
    kept = [i for _, _, a, b in spans for i in range(a, b)]
    assert kept == list(range(n))
    for start, end, keep_start, keep_end in spans:
        assert 0 <= start <= keep_start < keep_end <= end <= n and end - start == min(window, n)
        if n > window:  # a kept token has `halo` tokens of context on each side unless the sequence ends
            assert keep_start - start >= min(halo, keep_start) and end - keep_end >= min(halo, n - keep_end)


def test_windows_refuse_a_halo_that_leaves_nothing():
    with pytest.raises(ValueError, match="leaves no tokens"):
        windows(100, 8, 4)


def test_windowed_passes_equal_one_pass_when_the_sequence_fits_and_differ_only_through_context():
    torch.manual_seed(0)
    model = SANE(TINY).eval()
    tokens = torch.randn(2, 8, 16)
    positions = torch.stack([torch.arange(8), torch.zeros(8, dtype=torch.long), torch.arange(8)], 1)
    with torch.no_grad():
        whole = model.encode(tokens, positions.unsqueeze(0))
    assert torch.allclose(encode_sequence(model, tokens, positions), whole)
    long_tokens = torch.randn(2, 30, 16)
    long_positions = torch.stack([torch.arange(30), torch.zeros(30, dtype=torch.long), torch.arange(30)], 1)
    latents = encode_sequence(model, long_tokens, long_positions)
    assert latents.shape == (2, 30, 4)
    assert decode_sequence(model, latents, long_positions).shape == (2, 30, 16)
    with torch.no_grad():  # window 8, halo 2: keep 0-3 from tokens 0-7, then 4-7 from tokens 2-9, ...
        first = model.encode(long_tokens[:, :8], long_positions[:8].unsqueeze(0))
        second = model.encode(long_tokens[:, 2:10], long_positions[2:10].unsqueeze(0))
    assert torch.allclose(latents[:, :4], first[:, :4], atol=1e-6)
    assert torch.allclose(latents[:, 4:8], second[:, 2:6], atol=1e-6)
    assert not torch.allclose(latents[:, 4:6], first[:, 4:6], atol=1e-4)  # context differs, so values do


def test_positions_hold_no_table_as_long_as_the_sequence_and_ignore_where_the_window_sits():
    torch.manual_seed(0)
    model = SANE(TINY).eval()
    assert sum(p.numel() for p in model.encoder_positions.parameters()) == TINY.max_layers * TINY.d_model
    tokens = torch.randn(2, 8, 16)
    layer, within = torch.full((8,), 3), torch.arange(40, 48)
    with torch.no_grad():
        outputs = [
            model.encode(tokens, torch.stack([offset + torch.arange(8), layer, within], 1).unsqueeze(0))
            for offset in (0, 100, 5000)  # the same layer's tokens, with other layers' lengths before them
        ]
        moved = model.encode(tokens, torch.stack([torch.arange(8), layer, within + 1], 1).unsqueeze(0))
        other_layer = model.encode(tokens, torch.stack([torch.arange(8), layer + 1, within], 1).unsqueeze(0))
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    assert not torch.allclose(outputs[0], moved, atol=1e-4) and not torch.allclose(outputs[0], other_layer, atol=1e-4)


@pytest.fixture(scope="module")
def sane_workspace(tiny_zoo_workspace, tmp_path_factory):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path_factory.mktemp("sane") / "ws")
    train_and_map(workspace, TINY, TRAIN)
    return workspace


def test_a_sane_run_trains_maps_and_evaluates(sane_workspace):
    run = load_run(sane_workspace)
    assert run.kind == "sane" and run.name.startswith("sane-") and isinstance(run.model, SANE)
    table = read_parquet(run.files.embeddings)
    assert table.height == 18 and len(table["embedding"][0]) == 2 * DEPTH_PARTS * TINY.latent_dim
    result = evaluate_run(sane_workspace, run.name)
    assert result["kind"] == "sane" and math.isfinite(result["recon_r2"])  # 3 epochs: no quality to assert
    assert set(result["recon_r2_per_layer"]) == {
        layer.key for layer in run.prepare(load_zoos(sane_workspace)[0]).zoo.spec.layers
    }
    assert set(result["probe_r2"]) == {"embedding", "weights", "stats"}
    assert "recon_acc_ratio_recalibrated" not in result  # no BatchNorm, nothing to re-estimate


def test_sane_training_resumes_bit_identically(tiny_zoo_workspace, tmp_path):
    straight = train_and_map(copy_workspace(tiny_zoo_workspace, tmp_path / "a"), TINY, TRAIN)
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "b")
    seen = []
    with pytest.raises(Exception, match="stopped after epoch"):
        train_and_map(
            workspace, TINY, TRAIN, on_progress=lambda d, t, i: seen.append(d), should_stop=lambda: len(seen) >= 2
        )
    resumed = train_and_map(workspace, TINY, TRAIN)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_sane_codes_are_all_token_latents_and_decode_window_by_window(sane_workspace):
    run = load_run(sane_workspace)
    prepared = run.prepare(load_zoos(sane_workspace)[0])
    layout = sane_layout(prepared.zoo.spec, run.ae_config)
    weights = prepared.aligned[:5]
    codes = run.encode(prepared, weights)
    assert codes.shape == (5, layout.n_tokens * TINY.latent_dim) and layout.n_tokens > TINY.window
    latents = torch.from_numpy(codes).view(5, layout.n_tokens, -1)
    stored = embedding_matrix(read_parquet(run.files.embeddings))[:5]
    by_depth = aggregate(latents, "depthstd", layout.token_layer).numpy()  # the map's embedding: latents by depth
    assert np.allclose(run.embed(prepared, weights), by_depth, atol=1e-6)
    assert by_depth.shape == (5, 2 * DEPTH_PARTS * TINY.latent_dim)
    assert np.allclose(stored, by_depth, atol=1e-5)
    decoded = run.decode(prepared, codes)
    by_hand = prepared.destandardise(
        from_sequence(layout, decode_sequence(run.model, latents, layout.positions))
    )  # one decode_sequence call over the whole sequence: windows of 8 with halos of 2
    assert torch.allclose(decoded, by_hand, atol=1e-6)
    assert torch.allclose(decoded, run.reconstruct(prepared, np.arange(5)), atol=1e-6)


@pytest.mark.parametrize("selection", ["none", "subsample", "bootstrap"])
def test_generation_from_a_sane_run_decodes_fine_tunes_and_places_models(sane_workspace, selection):
    config = SampleConfig(n=3, finetune_epochs=1, selection=selection, candidates=2, rounds=2, baselines=False)
    result = generate(sane_workspace, config).to_json()
    assert result["ae_kind"] == "sane" and result["selection"]["mode"] == selection
    assert set(result["curves"]) == {"generated", "random_init", "anchors"}
    assert all(len(curve) == 2 and all(0 <= a <= 1 for a in curve) for curve in result["curves"].values())
    if selection != "none":
        history = result["selection"]["history"]
        assert len(history) == (2 if selection == "bootstrap" else 1)
        assert all(step["kept_mean"] >= step["drawn_mean"] for step in history)
    folder = sane_workspace.root / "samples" / result["samples_run"]
    samples = read_parquet(folder / "samples.parquet")
    assert samples.height == 3 and samples["umap_x"].is_finite().all()
    weights = read_tensors(folder / "weights.safetensors")["generated"]
    assert weights.shape == (3, load_zoos(sane_workspace)[0].spec.n_params) and torch.isfinite(weights).all()


def test_the_token_mode_draws_each_sane_token_with_its_own_unit(sane_workspace):
    run = load_run(sane_workspace)
    zoos = load_zoos(sane_workspace)
    table = combined_table(zoos)
    anchors = resolve_anchors(zoos, table, "top:0.5")
    prepared = run.prepare(anchors.zoo)
    config = SampleConfig(method="token", n=2, finetune_epochs=0, selection="none", baselines=False)
    rng = np.random.default_rng(0)
    weights, sampler, _, _ = draw_models(run, prepared, anchors, config, load_dataset("digits"), rng, "cpu")
    n_tokens = sane_layout(prepared.zoo.spec, run.ae_config).n_tokens
    assert sampler.token_units.shape == (n_tokens,) and (sampler.token_units > 0).all()
    assert sampler.token_units.std() > 0  # tokens vary by different amounts across the anchors
    assert weights.shape == (2, prepared.zoo.spec.n_params) and torch.isfinite(weights).all()


def test_sane_generation_is_seeded(sane_workspace):
    config = SampleConfig(n=2, finetune_epochs=0, baselines=False, selection="subsample", seed=4)
    first = generate(sane_workspace, config).to_json()
    folder = sane_workspace.root / "samples" / first["samples_run"]
    weights = read_tensors(folder / "weights.safetensors")["generated"]
    second = generate(sane_workspace, config).to_json()
    assert torch.equal(weights, read_tensors(folder / "weights.safetensors")["generated"])
    assert first["curves"] == second["curves"]


def test_cli_trains_a_sane_run(tiny_zoo_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    train = ("ae", "train", "--workspace", workspace.root, "--kind", "sane", "--quiet")
    sizes = ("--token-width", 16, "--window", 8, "--halo", 2, "--d-model", 16, "--latent-dim", 4)
    result = run_cli(*train, *sizes, "--epochs", 2, "--batch-size", 8, "--json")
    assert result.code == 0
    assert result.json["kind"] == "sane" and result.json["run"].startswith("sane-")
    assert run_cli(*train, "--window", 8, "--halo", 4).code == 2  # a window of 8 keeps nothing with halos of 4


def test_sane_on_a_zoo_of_a_cnn_and_a_resnet(tmp_path):
    workspace = Workspace(tmp_path / "mixed")
    config = ZooConfig(models=4, epochs=1, save_epochs=(0, 1), init_seeds=2, arch="cnn-small,resnet", seed=5)
    zoos = generate_zoo(workspace, config)
    assert [z.spec.name for z in zoos] == ["cnn-small", "resnet"] and zoo_info(load_zoos(workspace))["models"] == 8
    with pytest.raises(UserError, match="--kind sane"):
        train_and_map(workspace, AEConfig(d_model=16, heads=2, latent_dim=4), TrainConfig(epochs=1))
    wide_tokens = dataclasses.replace(TINY, token_width=64)
    run = train_and_map(workspace, wide_tokens, TrainConfig(epochs=2, batch_size=4, warmup_epochs=1))
    assert set(run.stats) == {"cnn-small", "resnet"}
    result = evaluate_run(workspace, run.name)
    assert set(result["architectures"]) == {"cnn-small", "resnet"} and math.isfinite(result["recon_r2"])
    assert (
        any(k.startswith("resnet/") for k in result["recon_r2_per_layer"])
        and result["probe_r2"]["weights"]["epoch"] is None
    )
    table = read_parquet(run.files.embeddings)
    assert table["checkpoint"].to_list() == list(range(16))
    resnet_ids = ",".join(str(c) for c in zoos[1].table["checkpoint"].to_list())
    sampled = generate(
        workspace, SampleConfig(anchors=f"ids:{resnet_ids}", n=2, finetune_epochs=1, baselines=False), run.name
    ).to_json()
    assert sampled["architecture"] == "resnet" and all(len(c) == 2 for c in sampled["curves"].values())


def test_remapping_with_another_aggregation_changes_the_map_and_the_probes_agree(sane_workspace, tmp_path, run_cli):
    workspace = copy_workspace(sane_workspace, tmp_path / "ws")
    run = load_run(workspace)
    before = evaluate_run(workspace, run.name)
    assert set(before["probe_r2_by_aggregation"]) == {"depthstd", "depth", "mean", "max", "meanstd"}
    assert before["aggregation"] == "depthstd" and run.files.read_config()["aggregation"] == "depthstd"  # recorded
    assert before["probe_r2_by_aggregation"]["depthstd"] == pytest.approx(before["probe_r2"]["embedding"], abs=1e-6)

    result = run_cli("ae", "embed", "--workspace", workspace.root, "--aggregation", "meanstd", "--json", "--quiet")
    assert result.code == 0 and result.json["checkpoints"] == 18
    remapped = load_run(workspace)
    assert remapped.aggregation == "meanstd" and not (remapped.folder / "eval.json").exists()
    prepared = remapped.prepare(load_zoos(workspace)[0])
    latents = torch.from_numpy(remapped.encode(prepared, prepared.aligned)).view(18, -1, TINY.latent_dim)
    stored = embedding_matrix(read_parquet(run.files.embeddings))
    expected = torch.cat([latents.mean(1), latents.std(1, correction=0)], dim=1).numpy()
    assert stored.shape == (18, 2 * TINY.latent_dim) and np.allclose(stored, expected, atol=1e-5)
    after = evaluate_run(workspace, run.name)
    assert after["probe_r2"]["embedding"] == pytest.approx(after["probe_r2_by_aggregation"]["meanstd"], abs=1e-6)


def test_a_run_that_recorded_no_aggregation_reads_as_mapped_then_with_the_mean(sane_workspace, tmp_path):
    workspace = copy_workspace(sane_workspace, tmp_path / "ws")
    files = load_run(workspace).files
    files.write_config({k: v for k, v in files.read_config().items() if k != "aggregation"})
    assert load_run(workspace).aggregation == "mean"


def test_a_per_neuron_run_is_remapped_with_its_pooled_encoder_states(tiny_ae_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    refused = run_cli("ae", "embed", "--workspace", workspace.root, "--aggregation", "max")
    choices = "latent+layerstd, latent, depthstd, meanstd, layerstd"
    assert refused.code == 2 and f"unknown aggregation 'max'; choose one of {choices}" in refused.err
    before = run_cli("ae", "eval", "--workspace", workspace.root, "--json").json
    assert set(before["probe_r2_by_aggregation"]) == set(choices.split(", "))
    new_runs_default = before["probe_r2_by_aggregation"]["latent+layerstd"]
    assert before["probe_r2"]["embedding"] == pytest.approx(new_runs_default, abs=1e-6)
    assert run_cli("ae", "embed", "--workspace", workspace.root, "--aggregation", "depthstd").code == 0
    run = load_run(workspace)
    assert run.aggregation == "depthstd"
    width = 2 * DEPTH_PARTS * run.ae_config.d_model  # mean and std of the states in each part of the depth
    assert embedding_matrix(load_embeddings(run.files)).shape[1] == width
    after = run_cli("ae", "eval", "--workspace", workspace.root, "--json").json
    assert after["probe_r2"]["embedding"] == pytest.approx(after["probe_r2_by_aggregation"]["depthstd"], abs=1e-6)
    assert run_cli("ae", "embed", "--workspace", workspace.root, "--aggregation", "latent+layerstd").code == 0
    layers = len(token_layout(load_zoos(workspace)[0].spec).token_layer.unique())
    wide = run.ae_config.latent_dim + 2 * layers * run.ae_config.d_model  # the latent, then each layer's mean and std
    assert embedding_matrix(load_embeddings(load_run(workspace).files)).shape[1] == wide
    assert run_cli("ae", "embed", "--workspace", workspace.root, "--aggregation", "latent").code == 0  # and back
    assert load_run(workspace).aggregation == "latent"
