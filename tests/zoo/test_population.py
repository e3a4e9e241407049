"""The vectorised population must train each model exactly as if it were trained alone."""

import pytest
import torch
import torch.nn.functional as F

from core.zoo.arch import ArchSpec, Conv, build_module, cnn_small
from core.zoo.data import load_dataset
from core.zoo.population import (
    INITS,
    Population,
    dropout_mask,
    epoch_orders,
    init_vector,
    init_vectors,
    train_single,
)

# A small odd-sized net: tanh, a pooled map with a remainder to crop (11 -> 5), dropout slots, two hidden layers.
ODD = ArchSpec("odd", 1, 13, (Conv(4, 3, pool=2), Conv(3, 2, padding=1)), (9, 7), 5, "tanh", dropout_slots=True)


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data.x_train[:200], data.y_train[:200], data.x_test, data.y_test


def _population(spec, seeds, inits, lrs, wds, dropouts):
    return Population(spec, init_vectors(spec, seeds, inits), seeds, lrs, wds, dropouts)


def test_vectorised_training_equals_one_model_at_a_time(digits):
    x, y, _, _ = digits
    spec = cnn_small()
    seeds, inits = [11, 12, 13], ["kaiming_uniform", "xavier_normal", "uniform"]
    lrs, wds = [3e-3, 1e-3, 5e-3], [0.0, 1e-3, 1e-2]
    population = _population(spec, seeds, inits, lrs, wds, [0.0] * 3)
    for epoch in (1, 2):
        population.train_epoch(x, y, epoch, batch_size=16)
    for i, seed in enumerate(seeds):
        alone = train_single(spec, init_vector(spec, seed, inits[i]), x, y, seed, 2, 16, lrs[i], wds[i])
        moved = (alone - init_vector(spec, seed, inits[i])).abs().max()
        assert moved > 1e-2  # the models really trained
        torch.testing.assert_close(population.weights()[i], alone, atol=2e-5, rtol=1e-4)


def test_odd_architecture_with_tanh_and_cropped_pooling_matches_too():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 13, 13, generator=generator), torch.randint(0, 5, (48,), generator=generator)
    seeds = [1, 2]
    population = _population(ODD, seeds, ["xavier_uniform"] * 2, [1e-2] * 2, [0.0] * 2, [0.0] * 2)
    population.train_epoch(x, y, 1, batch_size=10)
    for i, seed in enumerate(seeds):
        alone = train_single(ODD, init_vector(ODD, seed, "xavier_uniform"), x, y, seed, 1, 10, 1e-2)
        torch.testing.assert_close(population.weights()[i], alone, atol=2e-5, rtol=1e-4)


def test_a_model_trains_the_same_whatever_population_it_is_in_even_with_dropout(digits):
    x, y, _, _ = digits
    spec = cnn_small()
    crowd = _population(spec, [5, 6, 7], ["normal"] * 3, [3e-3] * 3, [0.0] * 3, [0.0, 0.3, 0.5])
    alone = _population(spec, [6], ["normal"], [3e-3], [0.0], [0.3])
    no_dropout = _population(spec, [6], ["normal"], [3e-3], [0.0], [0.0])
    for population in (crowd, alone, no_dropout):
        population.train_epoch(x, y, 1, batch_size=32)
    torch.testing.assert_close(crowd.weights()[1], alone.weights()[0], atol=1e-6, rtol=1e-5)
    assert (alone.weights()[0] - no_dropout.weights()[0]).abs().max() > 1e-3


def test_dropout_mask_rate_and_determinism():
    seeds, rates = torch.tensor([1, 2]), torch.tensor([0.25, 0.0])
    mask = dropout_mask(seeds, step=3, slot=0, shape=(64, 50), rate=rates)
    assert torch.equal(mask, dropout_mask(seeds, 3, 0, (64, 50), rates))
    assert not torch.equal(mask[0], dropout_mask(seeds, 4, 0, (64, 50), rates)[0])
    dropped = (mask[0] == 0).float().mean()
    assert 0.2 < dropped < 0.3
    assert torch.allclose(mask[0][mask[0] > 0], torch.tensor(1 / 0.75))
    assert torch.equal(mask[1], torch.ones(64, 50))


def test_epoch_orders_are_permutations_of_each_model_alone(monkeypatch):
    orders = epoch_orders(torch.tensor([4, 5, 6]), epoch=2, n=1000)
    assert all(torch.equal(row.sort().values, torch.arange(1000)) for row in orders)
    assert torch.equal(orders[2], epoch_orders(torch.tensor([6]), 2, 1000)[0])  # whatever population it is in
    monkeypatch.setattr("core.zoo.population.ORDER_BLOCK_ENTRIES", 1500)  # one model per block: the same orders
    assert torch.equal(epoch_orders(torch.tensor([4, 5, 6]), 2, 1000), orders)
    assert not torch.equal(orders[0], orders[1])
    assert not torch.equal(orders[0], epoch_orders(torch.tensor([4]), 3, 1000)[0])
    # Orders look shuffled: an image's position hardly tells where it lands (|correlation| of a random order).
    position = torch.arange(1000, dtype=torch.float32)
    assert abs(torch.corrcoef(torch.stack([position, orders[0].float()]))[0, 1]) < 0.15


def test_evaluate_matches_plain_modules(digits):
    _, _, x_test, y_test = digits
    spec = cnn_small()
    seeds = [1, 2, 3]
    population = _population(spec, seeds, ["kaiming_normal"] * 3, [1e-3] * 3, [0.0] * 3, [0.0] * 3)
    loss, acc = population.evaluate(x_test, y_test, chunk=50)
    for i in range(3):
        logits = build_module(spec, population.weights()[i])(x_test)
        assert loss[i].item() == pytest.approx(F.cross_entropy(logits, y_test).item(), rel=1e-5)
        assert acc[i].item() == pytest.approx((logits.argmax(1) == y_test).float().mean().item())


def test_init_schemes_are_seeded_and_distinct():
    spec = cnn_small()
    vectors = [init_vector(spec, 4, scheme) for scheme in INITS]
    assert all(torch.equal(v, init_vector(spec, 4, s)) for v, s in zip(vectors, INITS))
    assert not torch.equal(init_vector(spec, 4, "normal"), init_vector(spec, 5, "normal"))
    for a in range(len(vectors)):
        for b in range(a + 1, len(vectors)):
            assert not torch.equal(vectors[a], vectors[b])
    with pytest.raises(ValueError, match="unknown init"):
        init_vector(spec, 0, "orthogonal")


def test_state_round_trip_resumes_identically(digits):
    x, y, _, _ = digits
    spec = cnn_small()
    reference = _population(spec, [1, 2], ["uniform"] * 2, [3e-3] * 2, [0.0] * 2, [0.1] * 2)
    resumed = _population(spec, [1, 2], ["uniform"] * 2, [3e-3] * 2, [0.0] * 2, [0.1] * 2)
    reference.train_epoch(x, y, 1, 32)
    resumed.train_epoch(x, y, 1, 32)
    state = resumed.state()
    fresh = _population(spec, [1, 2], ["uniform"] * 2, [3e-3] * 2, [0.0] * 2, [0.1] * 2)
    fresh.load_state(state)
    reference.train_epoch(x, y, 2, 32)
    fresh.train_epoch(x, y, 2, 32)
    assert torch.equal(reference.weights(), fresh.weights())
