"""The behavioural loss: its distances by hand, zero for a perfect decode, gradients into the decoder, the same
value for a batch as for its models one at a time, and training runs that use it."""

import math
from dataclasses import replace

import pytest
import torch

from core.errors import UserError
from core.pipeline import train_and_map
from core.rep.autoencoder import AEConfig
from core.rep.behaviour import Behaviour, output_distance
from core.rep.loop import TrainConfig
from core.rep.methods import sane as sane_method
from core.rep.methods.hyperrep import HyperRepTrainer
from core.rep.prepare import prepare, split_models
from core.rep.sane import SANEConfig
from core.zoo.arch import trainable_mask
from core.zoo.model_zoo import load_zoos
from core.zoo.population import recalibrate_norm_statistics
from tests.conftest import copy_workspace

SMALL = AEConfig(d_model=16, heads=2, encoder_layers=1, decoder_layers=1, feedforward=32, latent_dim=8)


def test_distances_by_hand():
    original = torch.tensor([[[0.0, math.log(3.0)]]])  # softmax: (1/4, 3/4)
    decoded = torch.tensor([[[0.0, 0.0]]])  # softmax: (1/2, 1/2)
    expected_kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert output_distance(decoded, original, "kl").item() == pytest.approx(expected_kl, rel=1e-6)
    # mse: squared error over the model's logits, divided by their variance (0 and log 3: variance (log 3)^2 / 4)
    expected_mse = (math.log(3.0) ** 2 / 2) / (math.log(3.0) ** 2 / 4)
    assert output_distance(decoded, original, "mse").item() == pytest.approx(expected_mse, rel=1e-6)
    with pytest.raises(UserError, match="unknown behaviour distance"):
        output_distance(decoded, original, "l1")


@pytest.fixture(scope="module")
def zoo(tiny_zoo_workspace):
    return load_zoos(tiny_zoo_workspace)[0]


@pytest.mark.parametrize("distance", ["kl", "mse"])
def test_the_loss_is_zero_for_a_perfect_decode_and_positive_otherwise(zoo, distance):
    behaviour = Behaviour(zoo, "train", distance, 16, torch.Generator().manual_seed(0), "cpu")
    rows = torch.arange(6)
    queries = behaviour.queries()
    original = zoo.weights[rows]
    assert behaviour.loss(original.clone(), original, rows, queries).item() == pytest.approx(0.0, abs=1e-7)
    noisy = original + 0.3 * torch.randn(original.shape, generator=torch.Generator().manual_seed(1))
    assert behaviour.loss(noisy, original, rows, queries).item() > 1e-3


@pytest.mark.parametrize("distance", ["kl", "mse"])
def test_a_batch_gives_the_mean_of_its_models_one_at_a_time(zoo, distance):
    behaviour = Behaviour(zoo, "noise", distance, 8, torch.Generator().manual_seed(0), "cpu")
    rows = torch.tensor([0, 4, 9, 13])
    queries = behaviour.queries()
    original = zoo.weights[rows]
    decoded = original + 0.2 * torch.randn(original.shape, generator=torch.Generator().manual_seed(2))
    batch = behaviour.loss(decoded, original, rows, queries)
    alone = [behaviour.loss(decoded[i : i + 1], original[i : i + 1], rows[i : i + 1], queries) for i in range(4)]
    assert batch.item() == pytest.approx(torch.stack(alone).mean().item(), rel=1e-5)


def test_models_of_several_activations_are_each_run_as_their_own(zoo):
    mixed = replace(zoo, table=zoo.table.with_columns(zoo.table["activation"].set(zoo.table["epoch"] == 1, "tanh")))
    behaviour = Behaviour(mixed, "train", "mse", 8, torch.Generator().manual_seed(0), "cpu")
    rows = torch.arange(6)
    queries = behaviour.queries()
    together = behaviour.outputs(mixed.weights[rows], rows, queries)
    for row in range(6):
        alone = Behaviour(mixed, "train", "mse", 8, None, "cpu").outputs(mixed.weights[[row]], rows[[row]], queries)
        assert torch.allclose(together[row], alone[0], atol=1e-5)
    assert mixed.table["activation"][1] == "tanh"  # the table's second row is epoch 1: a tanh model here


def test_the_gradient_reaches_the_decoder(zoo):
    split = split_models(list(range(6)), (0.5, 0.25, 0.25), 0)
    prepared = prepare(zoo, split, align=True)
    train = TrainConfig(batch_size=4, gamma=0.0, structure_weight=0.0, behaviour_weight=1.0, query_batch=8)
    trainer = HyperRepTrainer(prepared, SMALL, train, torch.Generator().manual_seed(0), "cpu")
    model = trainer.build()
    trainer.initialise(model)
    parts = trainer.losses(model, torch.arange(4))
    assert set(parts) == {"loss", "reconstruction", "contrastive", "behaviour"}
    assert parts["loss"].item() == pytest.approx(parts["behaviour"].item())  # structure and contrast weigh 0
    parts["loss"].backward()
    assert model.unembed.weight.grad.abs().sum() > 0 and model.linear_decoder.weight.grad.abs().sum() > 0


def test_sane_s_behaviour_term_is_the_same_in_chunks_of_models(zoo, monkeypatch):
    """Large models come a chunk at a time, recomputed in the backward pass: the same loss and gradients."""
    split = split_models(list(range(6)), (0.5, 0.25, 0.25), 0)
    prepared = prepare(zoo, split, align=True)
    config = SANEConfig(token_width=16, window=8, halo=2, d_model=16, heads=2, encoder_layers=1, decoder_layers=1,
                        feedforward=32, latent_dim=4, projection_dim=4)  # fmt: skip
    train = TrainConfig(batch_size=5, gamma=0.0, structure_weight=0.0, behaviour_weight=1.0, query_batch=8)
    found = []
    for chunk_bytes in (1 << 30, 2 * 4 * zoo.spec.n_params):  # the whole batch at once; two models a chunk
        monkeypatch.setattr(sane_method, "BEHAVIOUR_CHUNK_BYTES", chunk_bytes)
        torch.manual_seed(0)
        trainer = sane_method.SANETrainer([prepared], config, train, torch.Generator().manual_seed(0), "cpu")
        model = trainer.build()
        batch = trainer.batches()[0]
        assert len(batch[1]) == 5  # chunks of 2, 2 and 1
        loss = trainer.losses(model, batch)["behaviour"]
        loss.backward()
        found.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (whole, whole_grads), (chunked, chunked_grads) = found
    assert whole.item() > 0 and chunked.item() == pytest.approx(whole.item(), rel=1e-5)
    assert len(whole_grads) == len(chunked_grads) > 0
    for a, b in zip(whole_grads, chunked_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_without_the_zoos_dataset_train_queries_are_refused_with_a_way_out(zoo):
    stranger = replace(zoo, manifest={**zoo.manifest, "dataset": {"name": "unknown"}})
    with pytest.raises(UserError, match="--queries noise"):
        Behaviour(stranger, "train", "kl", 8, None, "cpu")
    assert Behaviour(stranger, "noise", "kl", 8, torch.Generator(), "cpu").queries().shape == (8, 1, 8, 8)


def test_training_with_the_behavioural_loss_logs_it_and_resumes_its_run(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    train = TrainConfig(epochs=3, batch_size=8, warmup_epochs=1, behaviour_weight=1.0, query_batch=16)
    run = train_and_map(workspace, SMALL, train, evaluate=False)
    assert {"behaviour", "val_behaviour"} <= set(run.history.columns)
    assert run.history["behaviour"].is_finite().all() and run.name == train_and_map(workspace, SMALL, train).name
    sane = SANEConfig(token_width=16, window=8, halo=2, d_model=16, heads=2, latent_dim=4)
    sane_run = train_and_map(workspace, sane, replace(train, behaviour_distance="mse"), evaluate=False)
    assert sane_run.history["val_behaviour"].is_finite().all() and sane_run.history["behaviour"].min() > 0


def test_a_decoded_resnet_is_judged_with_its_statistics_re_estimated(tiny_resnet_workspace):
    zoo = load_zoos(tiny_resnet_workspace)[0]
    behaviour = Behaviour(zoo, "train", "mse", 64, torch.Generator().manual_seed(0), "cpu")
    rows = torch.arange(6, 9)
    original, queries = zoo.weights[rows], behaviour.fixed_queries(0)
    scrambled = original.clone()
    stored = ~trainable_mask(zoo.spec)
    scrambled[:, stored] = torch.rand(3, int(stored.sum())) + 0.5  # running statistics a decoder got wrong
    assert behaviour.loss(scrambled, original, rows, queries) == behaviour.loss(original, original, rows, queries)
    # the decoded outputs are those of the model with its statistics re-estimated on the queries
    recalibrated = recalibrate_norm_statistics(zoo.spec, scrambled, queries, batch_size=len(queries))
    # (up to the unbiased variance PyTorch stores: 255/256 at the last stage's 2x2 maps of 64 images)
    batch = behaviour.outputs(scrambled, rows, queries, batch_statistics=True)
    assert (batch - behaviour.outputs(recalibrated, rows, queries)).norm() < 0.01 * batch.norm()
    assert (batch - behaviour.outputs(scrambled, rows, queries)).norm() > 0.1 * batch.norm()
