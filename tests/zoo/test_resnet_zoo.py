"""A ResNet zoo end to end: generated, loaded, fine-tuned, and learned by SANE; what is CNN-only says so."""

import math

import pytest
import torch

from core.errors import UserError
from core.gen.finetune import finetune_groups, with_fresh_head
from core.pipeline import train_and_map
from core.rep.autoencoder import AEConfig
from core.rep.evaluate import evaluate_run
from core.rep.loop import TrainConfig
from core.rep.prepare import prepare, split_models, standardisation_slices
from core.rep.probes import weight_statistics
from core.rep.sane import SANEConfig
from core.zoo.arch import cnn_small, layer_slices, tensor_slices
from core.zoo.data import load_dataset
from core.zoo.generate import ZooConfig
from core.zoo.model_zoo import load_zoos
from core.zoo.resnet import resnet
from tests.conftest import copy_workspace

SANE_TINY = SANEConfig(
    token_width=64, window=8, halo=2, d_model=16, heads=2, encoder_layers=1, decoder_layers=1, feedforward=32,
    latent_dim=4, projection_dim=8,
)  # fmt: skip
SANE_TRAIN = TrainConfig(epochs=2, batch_size=8, warmup_epochs=1, permute_probability=0.5)


def test_the_zoo_stores_a_resnet_and_its_models_learned(tiny_resnet_workspace):
    zoo = load_zoos(tiny_resnet_workspace)[0]
    assert zoo.spec == resnet() and zoo.manifest["architectures"]["resnet"]["family"] == "resnet"
    assert zoo.weights.shape == (18, resnet().n_params)
    assert zoo.table.filter(zoo.table["epoch"] == 2)["test_acc"].min() > 0.5


def test_arch_enters_the_resume_digest_but_leaves_default_digests_as_they_were():
    # the digest before `arch` existed, of the settings that were then the defaults
    assert ZooConfig(save_epochs=(0, 1, 2, 5, 10, 15)).key() == "86d8ea7d0343c757"
    assert ZooConfig(arch="resnet").key() != ZooConfig().key()
    with pytest.raises(UserError, match="dropout"):
        ZooConfig(arch="resnet", dropouts=(0.0, 0.2))
    with pytest.raises(UserError, match="unknown architecture"):
        ZooConfig(arch="vgg")


def test_standardisation_splits_norm_layers_per_tensor_and_keeps_cnn_layers_whole():
    assert standardisation_slices(cnn_small()) == layer_slices(cnn_small())
    spec = resnet()
    slices = standardisation_slices(spec)
    assert len(slices) == len(spec.layers) + 3 * sum(layer.kind == "norm" for layer in spec.layers)
    conv1, bn1 = layer_slices(spec)[:2]  # the stem conv whole; its BatchNorm's weight, bias, mean, var apart
    assert slices[:5] == [conv1, *tensor_slices(spec)[1:5]] and bn1 == slice(slices[1].start, slices[4].stop)
    assert sum(s.stop - s.start for s in slices) == spec.n_params


def test_prepare_aligns_by_permutation_and_weight_statistics_cover_every_tensor(tiny_resnet_workspace):
    zoo = load_zoos(tiny_resnet_workspace)[0]
    split = split_models(list(range(6)), (0.5, 0.25, 0.25), 0)
    prepared = prepare(zoo, split, align=True)
    assert not torch.equal(prepared.aligned, zoo.weights)  # 3 init families: some had to move
    assert torch.equal(prepared.aligned.sort(1).values, zoo.weights.sort(1).values)  # reordered, nothing else
    torch.testing.assert_close(prepared.destandardise(prepared.standardised), prepared.aligned, atol=1e-5, rtol=1e-5)
    stats = weight_statistics(zoo.spec, zoo.weights)
    assert stats.shape == (18, 7 * len(tensor_slices(zoo.spec))) and (stats == stats).all()


def test_cnn_only_methods_refuse_a_resnet_zoo_with_the_way_out(tiny_resnet_workspace, tmp_path):
    workspace = copy_workspace(tiny_resnet_workspace, tmp_path / "ws")
    with pytest.raises(UserError, match="--kind sane"):
        train_and_map(workspace, AEConfig(d_model=16, heads=2), TrainConfig(epochs=1))
    assert not (workspace.root / "ae").exists()  # refused before anything was written


def test_transfer_finetuning_of_resnets_draws_a_fresh_head(tiny_resnet_workspace):
    zoo = load_zoos(tiny_resnet_workspace)[0]
    shapes = load_dataset("shapes")
    models = zoo.weights[zoo.table["epoch"].to_numpy() == 2][:3]
    target, fresh = with_fresh_head(zoo.spec, models, shapes.n_classes, seed=0, always=True)
    head = layer_slices(target)[-1]
    assert torch.equal(fresh[:, : head.start], models[:, : head.start])
    assert not torch.equal(fresh[:, head], models[:, layer_slices(zoo.spec)[-1]])
    curves, per_model, final = finetune_groups(zoo.spec, {"zoo": models}, shapes, 1, 0, fresh_head=True)
    assert per_model["zoo"].shape == (3, 2) and final.shape == (3, target.n_params)
    assert torch.isfinite(final).all() and curves["acc_mean"].is_finite().all()


def test_sane_learns_a_resnet_zoo_and_evaluates(tiny_resnet_workspace, tmp_path):
    workspace = copy_workspace(tiny_resnet_workspace, tmp_path / "ws")
    run = train_and_map(workspace, SANE_TINY, SANE_TRAIN)
    result = evaluate_run(workspace, run.name)
    assert math.isfinite(result["recon_r2"]) and set(result["recon_r2_per_layer"]) == {
        layer.key for layer in resnet().layers
    }
    assert 0 <= result["recon_acc_ratio_recalibrated"] < 10  # BatchNorm: also after re-estimating statistics
    probes = result["probe_r2"]
    assert set(probes) == {"embedding", "weights", "stats"}
    assert all(math.isfinite(r2) for by_property in probes.values() for r2 in by_property.values())
