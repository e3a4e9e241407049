"""Per-neuron tokens, the permutation symmetry and the token augmentations."""

import pytest
import torch

from core.rep.tokens import (
    add_noise,
    detokenize,
    permutation_index,
    random_erase,
    random_permutation_indices,
    token_layout,
    tokenize,
)
from core.zoo.arch import ArchSpec, Conv, build_module, cnn_l, cnn_s, cnn_small
from core.zoo.data import load_dataset

ODD = ArchSpec("odd", 2, 13, (Conv(4, 3, pool=2), Conv(3, 2, padding=1)), (9, 7), 5, "tanh", dropout_slots=True)
SPECS = [cnn_small(1), cnn_s(1), cnn_s(3), cnn_l(3), ODD]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.name}-{s.in_channels}")
def test_tokens_round_trip_exactly(spec):
    layout = token_layout(spec)
    vectors = torch.randn(4, spec.n_params)
    tokens = tokenize(layout, vectors)
    assert tokens.shape == (4, sum(layer.weight_shape[0] for layer in spec.layers), layout.width)
    assert layout.mask.sum() == spec.n_params
    assert (tokens[:, ~layout.mask] == 0).all()
    assert torch.equal(detokenize(layout, tokens), vectors)


def test_a_token_is_one_neurons_incoming_weights_and_bias():
    spec = cnn_small()
    layout = token_layout(spec)
    module = build_module(spec)
    from core.zoo.arch import flatten

    tokens = tokenize(layout, flatten(spec, module.state_dict()).unsqueeze(0))[0]
    conv = module.module_list[3]  # the second conv: 6 channels of 8 x 3 x 3 kernels
    first = 8  # tokens of layer 0
    channel = 4
    expected = torch.cat([conv.weight[channel].reshape(-1), conv.bias[channel : channel + 1]]).detach()
    assert torch.equal(tokens[first + channel, : expected.numel()], expected)
    assert layout.token_layer[first + channel] == 1
    assert tokens.shape[1] == 8 * 9 + 1  # the widest token: the second conv's


@pytest.mark.parametrize("spec", [cnn_small(1), cnn_s(1), cnn_l(3), ODD], ids=lambda s: s.name)
def test_permuting_hidden_neurons_keeps_the_function(spec):
    generator = torch.Generator().manual_seed(0)
    vector = torch.cat([p.detach().reshape(-1) for p in build_module(spec).parameters()])
    index = random_permutation_indices(spec, 3, generator)
    if spec.name == "cnn-small":
        x = load_dataset("digits").x_test[:64]
    else:
        x = torch.randn(16, spec.in_channels, spec.in_size, spec.in_size, generator=generator)
    original = build_module(spec, vector)(x)
    for gather in index:
        permuted = vector[gather]
        assert not torch.equal(permuted, vector)
        assert torch.equal(permuted.sort().values, vector.sort().values)
        torch.testing.assert_close(build_module(spec, permuted)(x), original, atol=1e-5, rtol=1e-4)


def test_permutation_index_moves_units_and_their_outgoing_weights():
    spec = ArchSpec("mlp-ish", 1, 1, (Conv(2, 1),), (3,), 2)  # conv 1->2 (1x1), linear 2->3, linear 3->2
    perms = [torch.tensor([1, 0]), torch.tensor([2, 0, 1])]
    vector = torch.arange(float(spec.n_params))
    permuted = vector[permutation_index(spec, perms)]
    # conv weights w0, w1 and biases b0, b1 swap places
    assert permuted[:4].tolist() == [1.0, 0.0, 3.0, 2.0]
    # linear 2->3: rows reordered by [2, 0, 1], columns swapped
    linear = vector[4:10].view(3, 2)
    assert permuted[4:10].view(3, 2).tolist() == linear[[2, 0, 1]][:, [1, 0]].tolist()
    with pytest.raises(ValueError, match="one permutation per hidden layer"):
        permutation_index(spec, perms[:1])


def test_noise_touches_only_real_entries():
    layout = token_layout(cnn_small())
    tokens = tokenize(layout, torch.randn(3, cnn_small().n_params))
    scale = torch.full((layout.n_tokens, 1), 2.0)
    noisy = add_noise(tokens, layout.mask, scale, 0.1, torch.Generator().manual_seed(1))
    assert (noisy[:, ~layout.mask] == 0).all()
    assert (noisy - tokens)[:, layout.mask].std().item() == pytest.approx(0.2, rel=0.1)
    assert torch.equal(add_noise(tokens, layout.mask, scale, 0.0, None), tokens)


def test_random_erase_zeroes_one_rectangle_of_the_requested_size():
    tokens = torch.ones(200, 40, 50)
    erased = random_erase(tokens, 1.0, (0.1, 0.2), torch.Generator().manual_seed(0))
    zero = erased == 0
    fraction = zero.float().mean((1, 2))
    assert ((fraction > 0.07) & (fraction < 0.25)).all()
    for sample in zero[:20]:
        rows, cols = sample.any(1).nonzero().flatten(), sample.any(0).nonzero().flatten()
        assert sample[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # one solid rectangle
    some = random_erase(tokens, 0.5, (0.1, 0.2), torch.Generator().manual_seed(0))
    touched = (some == 0).any(2).any(1).float().mean()
    assert 0.35 < touched < 0.65
    assert torch.equal(random_erase(tokens, 0.0, (0.1, 0.2), None), tokens)
