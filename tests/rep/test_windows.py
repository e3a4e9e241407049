"""SANE's epoch of windows: every token of every model counts exactly once, in windows of a fixed length, and a
step reads only its windows' entries (through a permutation when augmenting)."""

import pytest
import torch

from core.rep.augment import Permuter
from core.rep.sequence import sequence_layout, to_sequence
from core.rep.windows import epoch_windows, splice, window_tokens
from core.zoo.arch import cnn_small, param_names


@pytest.mark.parametrize("n_tokens, window", [(5, 8), (8, 8), (9, 8), (40, 8), (41, 10), (100, 32)])
def test_an_epoch_counts_every_token_of_every_model_exactly_once(n_tokens, window):
    seen = torch.zeros(7, n_tokens, dtype=torch.long)
    generator = torch.Generator().manual_seed(n_tokens)
    tiled = epoch_windows(7, n_tokens, window, generator)
    length = min(window, n_tokens)
    assert (tiled.start >= 0).all() and (tiled.start + length <= n_tokens).all()
    for model, start, keep_from, keep_to in zip(*(t.tolist() for t in (tiled.model, tiled.start, tiled.keep_from,
                                                                      tiled.keep_to))):  # fmt: skip
        assert 0 <= keep_from < keep_to <= length
        seen[model, start + keep_from : start + keep_to] += 1
    assert (seen == 1).all()
    assert len(tiled) <= 7 * (-(-n_tokens // length) + 1)  # about sequence length / window per model
    offsets = {int(s) for s, k in zip(tiled.start, tiled.keep_from) if k == 0 and s > 0}
    if n_tokens > 2 * window:
        assert len({o % length for o in offsets}) > 1  # the tiling starts at random offsets


def test_window_tokens_are_the_sequence_s_tokens_read_through_the_permutation():
    spec = cnn_small()
    layout = sequence_layout(param_names(spec), 16)
    flat = torch.randn(3, spec.n_params)
    generator = torch.Generator().manual_seed(0)
    tiled = epoch_windows(3, layout.n_tokens, 8, generator)
    tokens, positions, mask, entry = window_tokens(layout, flat, tiled, 8)
    whole = to_sequence(layout, flat)
    for i in range(len(tiled)):
        span = slice(int(tiled.start[i]), int(tiled.start[i]) + 8)
        assert torch.equal(tokens[i], whole[int(tiled.model[i]), span])
        assert torch.equal(positions[i], layout.positions[span])
    assert mask.sum() == layout.mask.sum() * 3  # only the kept tokens' real entries count, each once
    permuter = Permuter(spec, 1.0, 0, generator, "cpu")
    pick = permuter.draw(len(tiled))
    permuted, _, _, read = window_tokens(layout, flat, tiled, 8, lambda e: permuter.entries(pick, e))
    for i in range(len(tiled)):
        model = flat[int(tiled.model[i])][permuter.permutations[int(pick[i])]]
        span = slice(int(tiled.start[i]), int(tiled.start[i]) + 8)
        assert torch.equal(permuted[i], to_sequence(layout, model.unsqueeze(0))[0, span])
    assert torch.equal(flat[tiled.model.view(-1, 1, 1), read] * layout.mask[positions[..., 0]], permuted)

    # the behavioural loss's model: the window's entries written back where the permutation read them from
    rows = flat[tiled.model]
    assert torch.equal(splice(rows, read, mask, permuted), rows)
    changed = splice(rows, read, mask, permuted + 1.0) - rows
    for i in range(len(tiled)):
        expected = torch.zeros(spec.n_params)
        expected[read[i][mask[i]]] = 1.0
        torch.testing.assert_close(changed[i], expected)  # the counted entries moved, nothing else


def test_splice_gives_its_gradient_to_the_counted_values_only():
    flat = torch.randn(2, 6)
    entry = torch.tensor([[[4, 1, 5]], [[0, 2, 3]]])  # two windows of one token of width 3
    mask = torch.tensor([[[True, True, False]], [[True, False, True]]])
    values = torch.randn(2, 1, 3, requires_grad=True)
    out = splice(flat, entry, mask, values)
    assert out[0, 4] == values[0, 0, 0] and out[0, 1] == values[0, 0, 1] and out[0, 5] == flat[0, 5]
    assert out[1, 0] == values[1, 0, 0] and out[1, 3] == values[1, 0, 2] and out[1, 2] == flat[1, 2]
    upstream = torch.arange(12.0).view(2, 6)
    (out * upstream).sum().backward()
    expected = torch.tensor([[4.0, 1.0, 0.0], [6.0, 0.0, 9.0]])  # upstream at each counted entry, 0 elsewhere
    assert torch.equal(values.grad.view(2, 3), expected)
