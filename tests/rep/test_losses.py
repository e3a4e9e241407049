"""The losses on small hand-checked cases."""

import math

import pytest
import torch

from core.rep.losses import nt_xent, reconstruction_loss


def test_layer_normalised_reconstruction_by_hand():
    # one model, two tokens (layers with std 0.5 and 2.0), width 3, one padded entry in the second token
    target = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]]])
    predicted = torch.tensor([[[1.5, 2.0, 2.0], [4.0, 7.0, 9.0]]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    std = torch.tensor([[0.5], [2.0]])
    # errors on real entries: 0.5, 0, -1 (layer std .5) and 0, 2 (layer std 2); the padded 9 is ignored
    by_hand = ((0.5 / 0.5) ** 2 + 0 + (1 / 0.5) ** 2 + 0 + (2 / 2.0) ** 2) / 5
    assert reconstruction_loss(predicted, target, mask, std, layer_norm=True).item() == pytest.approx(by_hand)
    plain = (0.25 + 0 + 1 + 0 + 4) / 5
    assert reconstruction_loss(predicted, target, mask, std, layer_norm=False).item() == pytest.approx(plain)


def test_nt_xent_by_hand_and_its_extremes():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    # view a0: similarities to a1, b0, b1 are 0, 1, 0 (cosines) over t; the positive is b0
    per_row = -math.log(math.exp(1 / t) / (math.exp(0) + math.exp(1 / t) + math.exp(0)))
    assert nt_xent(a, b, t).item() == pytest.approx(per_row, rel=1e-5)
    matched = nt_xent(torch.eye(8), torch.eye(8), 0.1)
    swapped = nt_xent(torch.eye(8), torch.eye(8).roll(1, dims=0), 0.1)
    assert matched < 0.01 < 5 < swapped
