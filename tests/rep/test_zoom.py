"""Zooming into a region of the map: the projection of a subset alone."""

import numpy as np

from core.rep.zoom import zoom_projection


def test_the_zoom_spreads_the_region_along_its_own_main_directions():
    rng = np.random.default_rng(0)
    # a blob far from the origin, long along one latent direction and short along another
    points = 100.0 + rng.normal(size=(200, 6)) * np.array([5.0, 0.1, 0.1, 2.0, 0.1, 0.1])
    xy = zoom_projection(points)
    assert xy.shape == (200, 2) and np.allclose(xy.mean(axis=0), 0.0, atol=1e-9)
    assert (
        abs(xy[:, 0].std() - 5.0) < 0.6 and abs(xy[:, 1].std() - 2.0) < 0.3
    )  # the long direction first, then the next
    assert np.allclose(zoom_projection(points[::-1])[::-1], xy)  # the same region looks the same


def test_the_zoom_of_one_or_identical_points_is_the_origin():
    assert np.array_equal(zoom_projection(np.ones((1, 4))), np.zeros((1, 2)))
    assert np.allclose(zoom_projection(np.ones((3, 4))), 0.0)
