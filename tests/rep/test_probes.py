"""Linear probes and SANE's aggregations of token latents, on small hand-checked cases."""

import numpy as np
import polars as pl
import pytest
import torch

from core.errors import UserError
from core.rep.autoencoder import AEConfig, HyperRepresentationAE
from core.rep.methods.hyperrep import layer_pooled
from core.rep.probes import _tau, probe_all, probe_scores, ridge_probe
from core.rep.sane import aggregate, depth_parts


def _normal_equations_probe(features, target, sides) -> float:
    """The textbook ridge probe: (X^T X + lambda I) w = X^T y for every lambda, the best on val, R^2 on test."""
    train, val, test = (sides == s for s in ("train", "val", "test"))
    x = (features - features[train].mean(0)) / (features[train].std(0) + 1e-8)
    y_mean = target[train].mean()
    gram, xty = x[train].T @ x[train], x[train].T @ (target[train] - y_mean)

    def r2(rows, coef):
        truth = target[rows]
        return 1 - ((truth - x[rows] @ coef - y_mean) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()

    coefs = [np.linalg.solve(gram + lam * np.eye(len(gram)), xty) for lam in np.logspace(-3, 5, 17)]
    return r2(test, max(coefs, key=lambda coef: r2(val, coef)))


@pytest.mark.parametrize("n_features", [5, 300])  # fewer, then many more features than train rows
def test_the_ridge_probe_equals_the_normal_equations(n_features):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(80, n_features))
    target = features[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=80)
    sides = np.array(["train"] * 50 + ["val"] * 15 + ["test"] * 15)
    expected = _normal_equations_probe(features, target, sides)
    assert ridge_probe(features, target, sides) == pytest.approx(expected, abs=1e-9)
    assert expected > 0.2  # the probe finds some signal, so the comparison is not between two failures


def test_kendall_tau_by_hand():
    # Pairs of (1,2,3,4) against (1,3,2,4): five concordant, one discordant, so tau = (5 - 1) / 6.
    assert _tau(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(4 / 6)
    assert _tau(np.array([1.0, 2.0, 3.0]), np.array([30.0, 20.0, 10.0])) == pytest.approx(-1.0)
    assert np.isnan(_tau(np.array([1.0, 2.0, 3.0]), np.array([5.0, 5.0, 5.0])))  # a constant prediction ranks nothing


def test_probe_scores_rank_and_fit_the_same_probe():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(60, 4))
    target = features @ np.array([1.0, 0.0, 0.0, 0.0])  # exactly linear: any sensible probe ranks it perfectly
    sides = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    scores = probe_scores(features, target, sides)
    assert scores["r2"] == pytest.approx(ridge_probe(features, target, sides))
    assert scores["tau"] == pytest.approx(1.0)
    table = pl.DataFrame({"test_acc": target, "epoch": -target, "ggap": rng.normal(size=60)})
    both = probe_all({"x": features}, table, sides)
    assert set(both) == {"r2", "tau"} and both["tau"]["x"]["epoch"] == pytest.approx(1.0)
    assert both["r2"]["x"]["test_acc"] == pytest.approx(scores["r2"])


def test_a_val_split_without_spread_still_gives_a_probe():
    # Every lambda scores NaN on a constant val target (a zoo whose val models share a value): `ae train` ended in a
    # traceback there, the probe holding no coefficients. The least regularised lambda is kept.
    rng = np.random.default_rng(2)
    features = rng.normal(size=(60, 3))
    target = features @ np.array([2.0, -1.0, 0.5])
    sides = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10)
    target[40:50] = 0.25
    assert ridge_probe(features, target, sides) > 0.99


def test_depth_parts_split_layers_by_relative_depth():
    eight = depth_parts(torch.tensor([0, 0, 1, 2, 3, 4, 5, 6, 7, 7]))  # eight layers: two per part
    assert [m.nonzero().flatten().tolist() for m in eight] == [[0, 1, 2], [3, 4], [5, 6], [7, 8, 9]]
    five = depth_parts(torch.tensor([0, 1, 2, 3, 4]))  # parts floor(4l/5): 0, 0, 1, 2, 3
    assert [m.nonzero().flatten().tolist() for m in five] == [[0, 1], [2], [3], [4]]


def test_aggregations_of_token_latents_by_hand():
    latents = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [2.0, 2.0]]])  # one model, three tokens, latent size 2
    layers = torch.tensor([0, 0, 1])
    assert torch.equal(aggregate(latents, "mean", layers), torch.tensor([[2.0, 0.0]]))
    assert torch.equal(aggregate(latents, "max", layers), torch.tensor([[3.0, 2.0]]))
    std = torch.tensor([(2 / 3) ** 0.5, (8 / 3) ** 0.5])
    torch.testing.assert_close(aggregate(latents, "meanstd", layers), torch.cat([torch.tensor([2.0, 0.0]), std])[None])
    # Two layers, four parts of depth: layer 0 fills parts 0 and 1 (its tokens' mean), layer 1 parts 2 and 3.
    layer0, layer1 = [2.0, -1.0], [2.0, 2.0]
    assert torch.equal(aggregate(latents, "depth", layers), torch.tensor([layer0 + layer0 + layer1 + layer1]))
    spread0, spread1 = [1.0, 1.0], [0.0, 0.0]  # layer 0's two tokens differ by 2 in each entry; layer 1 has one
    expected = layer0 + layer0 + layer1 + layer1 + spread0 + spread0 + spread1 + spread1
    assert torch.equal(aggregate(latents, "depthstd", layers), torch.tensor([expected]))
    with pytest.raises(UserError, match="unknown aggregation 'median'"):
        aggregate(latents, "median", layers)


def test_layer_pooling_by_hand():
    states = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [2.0, 2.0]]])  # one model, three tokens of width 2
    pooled = layer_pooled(states, torch.tensor([0, 0, 1]))  # layer 0: tokens 0 and 1; layer 1: token 2
    assert torch.equal(pooled, torch.tensor([[2.0, -1.0, 2.0, 2.0, 1.0, 1.0, 0.0, 0.0]]))  # means, then spreads


def test_the_latent_from_known_states_is_the_encoders():
    """Embeddings that need the states and the latent run the transformer once (`latent_of`); it must be `encode`."""
    torch.manual_seed(0)
    model = HyperRepresentationAE(5, 3, AEConfig(d_model=8, heads=2, feedforward=16, latent_dim=4, projection_dim=2))
    tokens = torch.randn(6, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(model.latent_of(tokens, model.token_states(tokens)), model.encode(tokens))
