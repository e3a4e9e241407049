"""ResNets: specs and modules agree, the population trains them as plain modules would (running statistics
included), and BatchNorm statistics can be re-estimated."""

import pytest
import torch
import torch.nn.functional as F

from core.errors import ArchitectureError
from core.rep.sequence import flatten_state_dict
from core.zoo.arch import build_module, cnn_small, flatten, param_names, trainable_mask, unflatten
from core.zoo.data import load_dataset
from core.zoo.families import arch_by_name, spec_from_json
from core.zoo.population import (
    Population,
    evaluate_models,
    init_vector,
    init_vectors,
    recalibrate_norm_statistics,
    stacked_net,
    train_single,
)
from core.zoo.resnet import resnet

SMALL = resnet(widths=(4, 8), blocks=(1, 1))


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data.x_train[:160], data.y_train[:160], data.x_test, data.y_test


def test_spec_keys_and_flat_order_are_the_modules_state_dict():
    for spec in (resnet(), resnet(3, 5, "tanh", widths=(4, 6, 8), blocks=(2, 1, 1)), SMALL):
        module = build_module(spec)
        floats = [(k, tuple(v.shape)) for k, v in module.state_dict().items() if v.is_floating_point()]
        assert floats == param_names(spec)
        vector = torch.randn(spec.n_params)
        state = build_module(spec, vector).state_dict()
        assert torch.equal(flatten(spec, state), vector) and torch.equal(flatten_state_dict(state), vector)
    assert resnet().n_params == 20146 and resnet().name == "resnet"
    assert spec.layers[-1].key == "fc"  # the head is last: transfer redraws it


def test_trainable_mask_spares_only_running_statistics():
    mask = trainable_mask(SMALL)
    frozen = [name for name, shape in param_names(SMALL) for _ in range(int(torch.tensor(shape).prod()))]
    assert {n.rsplit(".", 1)[1] for n, m in zip(frozen, mask.tolist()) if not m} == {"running_mean", "running_var"}
    assert trainable_mask(cnn_small()).all()


def test_specs_round_trip_through_json_and_names_stay_unique():
    for spec in (resnet(), SMALL, cnn_small(), cnn_small(widths=(16, 12, 8))):
        assert spec_from_json(spec.to_json()) == spec
    assert "family" not in cnn_small().to_json()  # CNN specs on disk stay as they were
    assert cnn_small(widths=(16, 12, 8)).name == "cnn-small-w16-12-8" and SMALL.name == "resnet-w4-8-b1-1"
    assert arch_by_name("resnet", (1, 8, 8), 10) == resnet()
    assert arch_by_name("auto", (1, 8, 8), 10) == cnn_small()
    with pytest.raises(ArchitectureError, match="unknown architecture family"):
        spec_from_json({"family": "vit", "name": "x"})
    with pytest.raises(ArchitectureError, match="28x28"):
        arch_by_name("cnn-s", (1, 8, 8), 10)


def test_resnet_init_starts_batchnorm_at_identity():
    spec = SMALL
    state = unflatten(spec, init_vector(spec, 3, "kaiming_normal"))
    assert torch.equal(state["bn1.weight"], torch.ones(4)) and torch.equal(state["bn1.running_var"], torch.ones(4))
    assert torch.equal(state["layer2.0.downsample.1.running_mean"], torch.zeros(8))
    assert not torch.equal(init_vector(spec, 3, "kaiming_normal"), init_vector(spec, 4, "kaiming_normal"))


def test_vectorised_resnet_training_equals_one_model_at_a_time_with_running_statistics(digits):
    x, y, x_test, y_test = digits
    seeds, inits = [11, 12, 13], ["kaiming_uniform", "xavier_normal", "uniform"]
    lrs, wds = [3e-3, 1e-3, 5e-3], [0.0, 1e-3, 1e-2]
    population = Population(SMALL, init_vectors(SMALL, seeds, inits), seeds, lrs, wds, [0.0] * 3)
    for epoch in (1, 2, 3):
        population.train_epoch(x, y, epoch, batch_size=16)
    running = ~trainable_mask(SMALL)
    for i, seed in enumerate(seeds):
        start = init_vector(SMALL, seed, inits[i])
        alone = train_single(SMALL, start, x, y, seed, 3, 16, lrs[i], wds[i])
        assert (alone - start)[running].abs().max() > 1e-2  # the running statistics really moved
        torch.testing.assert_close(population.weights()[i], alone, atol=2e-5, rtol=1e-4)

    loss, acc = population.evaluate(x_test, y_test, chunk=50)
    for i in range(3):
        with torch.no_grad():
            logits = build_module(SMALL, population.weights()[i]).eval()(x_test)
        assert loss[i].item() == pytest.approx(F.cross_entropy(logits, y_test).item(), rel=1e-5)
        assert acc[i].item() == pytest.approx((logits.argmax(1) == y_test).float().mean().item())


def test_resnets_refuse_dropout():
    with pytest.raises(ArchitectureError, match="dropout"):
        Population(SMALL, init_vectors(SMALL, [1], ["uniform"]), [1], [1e-3], [0.0], [0.2])


def test_recalibration_restores_scrambled_statistics_as_plain_modules_would():
    data = load_dataset("digits")
    x, y, x_test, y_test = data.x_train[:640], data.y_train[:640], data.x_test, data.y_test
    spec, seeds = resnet(widths=(8, 16), blocks=(1, 1)), [1, 2]
    start = init_vectors(spec, seeds, ["kaiming_uniform"] * 2)
    population = Population(spec, start, seeds, [3e-3] * 2, [0.0] * 2, [0.0] * 2)
    for epoch in range(1, 7):
        population.train_epoch(x, y, epoch, batch_size=32)
    trained = population.weights()
    running = ~trainable_mask(spec)
    scrambled = trained.clone()
    scrambled[:, running] = torch.rand(2, int(running.sum())) * 5
    _, acc_trained = evaluate_models(spec, trained, x_test, y_test)
    _, acc_scrambled = evaluate_models(spec, scrambled, x_test, y_test)
    recalibrated = recalibrate_norm_statistics(spec, scrambled, x, batch_size=64)
    _, acc_recalibrated = evaluate_models(spec, recalibrated, x_test, y_test)
    assert (acc_trained > 0.8).all() and (acc_scrambled < acc_trained - 0.3).all()
    # Restored: statistics over the whole training set may even beat the running averages (one model +0.03).
    assert (acc_recalibrated > acc_trained - 0.03).all()
    assert torch.equal(recalibrated[:, ~running], scrambled[:, ~running])  # no weight moved

    for i in range(2):  # PyTorch's cumulative average: momentum=None, from reset statistics
        module = build_module(spec, scrambled[i]).train()
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.reset_running_stats()
                layer.momentum = None
        with torch.no_grad():
            for start in range(0, len(x), 64):
                module(x[start : start + 64])
        torch.testing.assert_close(recalibrated[i], flatten(spec, module.state_dict()), atol=1e-5, rtol=1e-4)
    cnn = init_vectors(cnn_small(), seeds, ["uniform"] * 2)
    assert recalibrate_norm_statistics(cnn_small(), cnn, x) is cnn  # nothing to recalibrate


def test_evaluation_mode_differentiates_through_decoded_running_statistics():
    spec = resnet(1, 10)
    vectors = torch.stack([init_vector(spec, seed, "kaiming_uniform") for seed in (1, 2)])
    vectors = vectors + 0.01 * torch.randn(vectors.shape, generator=torch.Generator().manual_seed(0))
    net = stacked_net(spec)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    index = torch.arange(4).expand(2, -1)
    plain = net.forward(vectors, net.batch_input(x, index))
    decoded = vectors.clone().requires_grad_(True)  # as weights fresh from a decoder
    with_grad = net.forward(decoded, net.batch_input(x, index))
    assert torch.allclose(with_grad, plain, atol=1e-5)  # the written-out formula is F.batch_norm's
    with_grad.sum().backward()
    running = trainable_mask(spec) == 0
    assert decoded.grad[:, running].abs().sum() > 0  # gradients reach the running statistics too
