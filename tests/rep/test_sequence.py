"""Sequential (SANE) tokenisation: exact inverse on every architecture we have, hand-checked token contents."""

import pytest
import torch
from torch import nn

from core.rep.sequence import flatten_state_dict, from_sequence, sequence_layout, state_dict_shapes, to_sequence
from core.zoo.arch import ArchSpec, Conv, build_module, cnn_l, cnn_s, cnn_small, flatten, param_names


class Block(nn.Module):
    def __init__(self, channels: int, stride: int):
        super().__init__()
        out = channels * stride
        self.conv1 = nn.Conv2d(channels, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


def tiny_resnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        Block(4, 1),
        Block(4, 2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )


def test_hand_checked_tokens_of_a_linear_layer():
    shapes = [("fc.weight", (2, 3)), ("fc.bias", (2,))]
    vector = torch.tensor([[1.0, 2, 3, 4, 5, 6, 7, 8]])  # weight rows [1 2 3], [4 5 6]; bias [7 8]
    layout = sequence_layout(shapes, width=2)
    tokens = to_sequence(layout, vector)
    assert tokens[0].tolist() == [[1, 2], [3, 7], [4, 5], [6, 8]]  # each unit's row: kernel, then bias
    assert layout.positions.tolist() == [[0, 0, 0], [1, 0, 1], [2, 0, 2], [3, 0, 3]]
    wide = sequence_layout(shapes, width=5)
    assert to_sequence(wide, vector)[0].tolist() == [[1, 2, 3, 7, 0], [4, 5, 6, 8, 0]]
    assert wide.mask.tolist() == [[True] * 4 + [False]] * 2


def test_batchnorm_channels_hold_scale_shift_and_statistics():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2, 3]))
        bn.bias.copy_(torch.tensor([4.0, 5, 6]))
        bn.running_mean.copy_(torch.tensor([7.0, 8, 9]))
    state = bn.state_dict()
    layout = sequence_layout(state_dict_shapes(state), width=4)
    tokens = to_sequence(layout, flatten_state_dict(state).unsqueeze(0))
    assert "num_batches_tracked" not in str(state_dict_shapes(state))
    assert tokens[0, :, :3].tolist() == [[1, 4, 7], [2, 5, 8], [3, 6, 9]] and tokens[0, :, 3].tolist() == [1, 1, 1]


@pytest.mark.parametrize("width", [1, 7, 64, 288])
@pytest.mark.parametrize(
    "spec",
    [
        cnn_small(),
        cnn_s(),
        cnn_s(in_channels=3),
        cnn_l(),
        ArchSpec("odd", 2, 13, (Conv(4, 3, pool=2), Conv(3, 2, padding=1)), (9, 7), 5, "tanh", dropout_slots=True),
    ],
    ids=lambda v: getattr(v, "name", None),
)
def test_round_trip_is_exact_on_our_cnns(spec, width):
    vectors = torch.randn(3, spec.n_params)
    layout = sequence_layout(param_names(spec), width)
    tokens = to_sequence(layout, vectors)
    assert tokens.shape == (3, layout.n_tokens, width)
    assert torch.equal(from_sequence(layout, tokens), vectors)
    assert layout.mask.sum() == spec.n_params  # every weight exactly once
    assert layout.positions[:, 1].max() + 1 == len(spec.layers)


def test_round_trip_is_exact_on_a_resnet_with_batchnorm():
    torch.manual_seed(0)
    net = tiny_resnet()
    net(torch.randn(4, 1, 8, 8))  # fill BatchNorm running statistics
    state = net.state_dict()
    shapes = state_dict_shapes(state)
    layout = sequence_layout(shapes, 16)
    vector = flatten_state_dict(state).unsqueeze(0)
    assert torch.equal(from_sequence(layout, to_sequence(layout, vector)), vector)
    # one layer per module: convs, their BatchNorms (4 tensors each), shortcut conv and BN, the classifier
    assert len(layout.layer_names) == 1 + 1 + 2 * 6 + 1
    assert "2.bn1" in layout.layer_names and "3.shortcut.1" in layout.layer_names


def test_positions_count_within_each_layer_and_along_the_sequence():
    spec = cnn_small()
    layout = sequence_layout(param_names(spec), 8)
    assert layout.positions[:, 0].tolist() == list(range(layout.n_tokens))
    for layer in range(len(spec.layers)):
        within = layout.positions[layout.positions[:, 1] == layer, 2]
        assert within.tolist() == list(range(len(within)))
    first = spec.layers[0]  # 8 output channels, 1x3x3 kernel + bias = 10 entries -> 2 tokens of 8 each
    assert (layout.positions[:, 1] == 0).sum() == first.weight_shape[0] * 2


def test_a_model_flattened_from_its_module_matches_the_zoo_vector():
    spec = cnn_small()
    module = build_module(spec, torch.randn(spec.n_params))
    assert torch.equal(flatten_state_dict(module.state_dict()), flatten(spec, module.state_dict()))
