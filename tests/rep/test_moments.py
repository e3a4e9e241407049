"""Streamed moments, per layer and per column: hand-checked cases, and a zoo prepared in chunks against the
whole-tensor figures."""

import math

import numpy as np
import torch

from core.rep import prepare as prepare_module
from core.rep.moments import ColumnMoments, LayerMoments
from core.rep.prepare import STD_FLOOR, prepare, split_models, standardisation_slices
from core.zoo.model_zoo import load_zoos

ROWS = torch.tensor([[1.0, 2.0, 10.0], [3.0, 4.0, 20.0], [5.0, 6.0, 30.0]])


def test_chunked_moments_match_the_hand_computed_ones():
    spans = [slice(0, 2), slice(2, 3)]
    one_by_one, whole = LayerMoments(spans), LayerMoments(spans)
    for row in ROWS:
        one_by_one.add(row.unsqueeze(0))
    whole.add(ROWS)
    # span 0 holds 1..6: mean 3.5, unbiased variance 17.5 / 5; span 1 holds 10, 20, 30: mean 20, variance 100
    for moments in (one_by_one, whole):
        mean, std = moments.mean_std(1e-4)
        torch.testing.assert_close(mean, torch.tensor([3.5, 20.0]))
        torch.testing.assert_close(std, torch.tensor([math.sqrt(3.5), 10.0]))


def test_a_single_value_and_a_constant_span_get_the_floor():
    moments = LayerMoments([slice(0, 1)])
    moments.add(torch.tensor([[7.0]]))
    assert moments.mean_std(0.25)[1].item() == 0.25


def test_column_moments_in_any_chunking_match_the_hand_computed_ones():
    # column 0 holds 1, 3, 5 (mean 3, variance 4), column 1 2, 4, 6 (mean 4, variance 4), column 2 10, 20, 30
    for sizes in ((3,), (1, 1, 1), (2, 1)):
        moments = ColumnMoments(3)
        for chunk in ROWS.split(list(sizes)):
            moments.add(chunk)
        mean, std = moments.mean_std()
        torch.testing.assert_close(mean, torch.tensor([3.0, 4.0, 20.0]))
        torch.testing.assert_close(std, torch.tensor([2.0, 2.0, 10.0]))
    one = ColumnMoments(3)
    one.add(ROWS[:1])
    one.add(ROWS[:0])  # an empty chunk changes nothing
    assert one.mean_std()[0].tolist() == [1.0, 2.0, 10.0] and one.mean_std()[1].tolist() == [0.0, 0.0, 0.0]


def test_statistics_streamed_in_chunks_equal_the_whole_tensor_ones(tiny_zoo_workspace, monkeypatch):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    split = split_models(zoo.table["model_id"].unique().to_list(), (0.6, 0.2, 0.2), seed=0)
    whole = prepare(zoo, split, align=True)
    monkeypatch.setattr(prepare_module, "chunk_rows", lambda n_params: 2)  # 2 checkpoints at a time
    chunked = prepare(zoo, split, align=True)
    train = whole.aligned[torch.from_numpy(whole.rows("train"))]
    means = torch.stack([train[:, s].mean() for s in standardisation_slices(zoo.spec)])
    stds = torch.stack([train[:, s].std().clamp_min(STD_FLOOR) for s in standardisation_slices(zoo.spec)])
    for prepared in (whole, chunked):
        torch.testing.assert_close(prepared.layer_mean, means, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(prepared.layer_std, stds, rtol=1e-5, atol=1e-6)
    rows = np.array([5, 0, 17])
    assert torch.equal(chunked.aligned_rows(rows), whole.aligned[torch.from_numpy(rows)])
    torch.testing.assert_close(chunked.standardised_rows(rows), whole.standardised[torch.from_numpy(rows)])
    assert torch.equal(torch.cat([c for _, c in chunked.iter_aligned(chunk=4)]), whole.aligned)
