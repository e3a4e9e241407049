"""Latent paths: decoded models along the line between two embeddings, beside the weight-space line."""

import polars as pl
import pytest

from core.errors import UserError
from core.gen.path import latent_path
from core.zoo.model_zoo import load_zoos


def test_the_weight_line_ends_at_the_checkpoints_and_the_latent_line_is_decoded(tiny_ae_workspace):
    path = latent_path(tiny_ae_workspace, None, (5, 14), steps=5)
    assert path["t"].to_list() == [0.0, 0.25, 0.5, 0.75, 1.0]
    table = load_zoos(tiny_ae_workspace)[0].table
    accuracy = {c: table.filter(pl.col("checkpoint") == c)["test_acc"][0] for c in (5, 14)}
    assert path["weights"][0] == pytest.approx(accuracy[5], abs=1e-4)
    assert path["weights"][-1] == pytest.approx(accuracy[14], abs=1e-4)
    assert path["latent"].is_between(0, 1).all() and path["latent"].n_unique() > 1


def test_a_path_needs_two_different_checkpoints(tiny_ae_workspace):
    with pytest.raises(UserError, match="two different checkpoints"):
        latent_path(tiny_ae_workspace, None, (5, 5))
