"""The noise frontier's upper envelope: arithmetic on a generation's stored figures, apart from the baselines
that compute them (core/gen/baselines.py imports the engine, torch and scikit-learn; the app's figures import
this module on the first page, which must not wait for them)."""

from __future__ import annotations


def frontier_envelope(noise_frontier: list[dict]) -> tuple[list[float], list[float], list[str]]:
    """(error-IoU, accuracy, hover text) of the noise frontier's upper envelope, in order of IoU: at each point
    the best accuracy noise reached at that novelty or more (lower or equal IoU). Accuracy only rises as novelty
    falls on it: a larger scale can land at a higher IoU with a lower accuracy (a collapsing model overlaps the
    zoo's untrained checkpoints), and adding noise does at least as well as the smaller scale there."""
    points = sorted(noise_frontier, key=lambda p: (p["max_iou_median"], -p["acc_mean"]))
    x, y, text, best = [], [], [], None
    for p in points:
        lifted = best is not None and best["acc_mean"] > p["acc_mean"]
        best = best if lifted else p
        x.append(p["max_iou_median"])
        y.append(best["acc_mean"])
        text.append(
            f"noise {p['scale']:g} x layer std"
            + (f" (its own {p['acc_mean']:.3f}; scale {best['scale']:g} does better)" if lifted else "")
        )
    return x, y, text
