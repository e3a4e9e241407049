"""The PCA start read in blocks: hand-checked directions on both routes (covariance and Gram matrix), the same
principal subspace as a thin SVD however the rows are blocked, and a seeded sample where the matrix does not fit."""

import pytest
import torch

from core.rep.methods import hyperrep
from core.rep.methods.hyperrep import pca_start
from core.rep.pca import principal_directions
from core.rep.tokens import token_layout
from core.zoo.arch import ArchSpec, Conv


def blocks_of(rows: torch.Tensor, size: int):
    return lambda first: iter(rows.split(size)[first:])


def test_more_rows_than_columns_go_through_the_covariance():
    rows = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.5], [0.0, -0.5]]) + torch.tensor([3.0, 1.0])
    mean, directions = principal_directions(blocks_of(rows, 3), rank=2)
    torch.testing.assert_close(mean, torch.tensor([3.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(directions, torch.eye(2, dtype=torch.float64))  # variance 0.5 before 0.125


def test_fewer_rows_than_columns_go_through_the_gram_matrix_and_drop_the_null_direction():
    rows = torch.tensor([[2.0, 0, 0, 0], [-2.0, 0, 0, 0], [0.0, 0, 1, 0]])
    mean, directions = principal_directions(blocks_of(rows, 1), rank=3)
    torch.testing.assert_close(mean, torch.tensor([0.0, 0, 1 / 3, 0], dtype=torch.float64))
    # Centred, the rows vary by 8 along the first axis and by 2/3 along the third; three rows span two directions.
    torch.testing.assert_close(directions, torch.tensor([[1.0, 0, 0, 0], [0.0, 0, 1, 0]], dtype=torch.float64))


@pytest.mark.parametrize("shape", [(9, 5), (5, 9)])
def test_blocks_span_the_subspace_of_the_thin_svd(shape):
    rows = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * torch.linspace(3, 0.5, shape[1])
    centred = rows.double() - rows.double().mean(0)
    vh = torch.linalg.svd(centred, full_matrices=False)[2][:3]
    whole = principal_directions(blocks_of(rows, len(rows)), rank=3)
    for size in (1, 2, 4):
        mean, directions = principal_directions(blocks_of(rows, size), rank=3)
        torch.testing.assert_close(mean, rows.double().mean(0))
        torch.testing.assert_close(directions.T @ directions, vh.T @ vh)  # the same projector
        torch.testing.assert_close(directions, whole[1])  # and, signs fixed, the same directions


def test_a_training_set_whose_matrix_does_not_fit_the_budget_starts_from_a_sample(monkeypatch):
    layout = token_layout(ArchSpec("t", 1, 4, (Conv(2, 3, padding=1, pool=2),), (6,), 3))
    rows = torch.randn(10, layout.spec.n_params, generator=torch.Generator().manual_seed(0))
    mean, directions = pca_start(rows, layout, rank=8, seed=0)
    assert directions.shape == (8, layout.n_tokens * layout.width)  # 10 rows span 9 directions: the top 8
    monkeypatch.setattr(hyperrep, "share_bytes", lambda share=0.25: 3 * 8 * 4 * 4)  # 4 x 4 (x 3) fits, 10 x 10 not
    mean, directions = pca_start(rows, layout, rank=8, seed=0)
    assert directions.shape[0] == 3  # a sample of 4 models spans 3 directions
    torch.testing.assert_close(directions @ directions.T, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(pca_start(rows, layout, rank=8, seed=0)[1], directions)  # the seed picks the sample
