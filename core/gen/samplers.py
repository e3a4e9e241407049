"""Sampling new latent codes from the density of anchor embeddings, and decoding them to weights.

Three interchangeable samplers share one small interface (`fit(anchors)`, `sample(n, rng)`):
- `kde`: a Gaussian kernel density on the anchors' embeddings, sampled from the joint density (one kernel
  centre per draw, full-dimensional noise); bandwidth by Scott's or Silverman's rule or cross-validation;
- `gauss`: one Gaussian fitted to the anchors (full covariance with Ledoit-Wolf shrinkage, or diagonal);
- `neighbour`: an anchor plus Gaussian noise scaled to the anchors' per-dimension spread.
With one anchor no spread can be estimated: every sampler then falls back to `neighbour` noise scaled to the
spread of the whole zoo's embeddings, and says so in `fallback`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from core.errors import UserError

METHODS = ("kde", "gauss", "neighbour")
CV_ANCHORS = 256  # at most this many anchors choose the KDE bandwidth by cross-validation
# A full covariance costs d^2 memory and d^3 time: past this many dimensions (SANE codes hold every token's
# latent, e.g. 12,800 numbers for a 20k-parameter ResNet) the Gaussian falls back to a diagonal one.
MAX_FULL_COVARIANCE_DIM = 4096


@dataclass
class Sampler:
    method: str
    bandwidth: str | float = "cv"  # kde: cv, scott, silverman, or a number (in units of the anchors' std)
    covariance: str = "full"  # gauss: full or diag
    noise: float = 0.25  # neighbour: noise std as a fraction of the anchors' per-dimension std
    fallback: str | None = None

    def fit(self, anchors: np.ndarray, zoo_embeddings: np.ndarray) -> Sampler:
        if len(anchors) == 0:
            raise UserError("no anchors selected: choose at least one checkpoint to sample around")
        self.fallback = None
        self.anchors = anchors.astype(np.float64)
        self.scale = anchors.std(axis=0) if len(anchors) > 1 else np.zeros(anchors.shape[1])
        if len(anchors) < 2 or not (self.scale > 0).any():
            self.fallback = "one anchor: neighbour noise scaled to the whole zoo's spread"
            self.scale = zoo_embeddings.std(axis=0) * 0.25
            self._draw = self._neighbour
            return self
        self.scale = np.where(self.scale > 0, self.scale, self.scale[self.scale > 0].min())
        if self.method == "kde":
            self._fit_kde()
        elif self.method == "gauss":
            self._fit_gauss()
        elif self.method == "neighbour":
            self.scale = self.scale * self.noise
            self._draw = self._neighbour
        else:
            raise UserError(f"unknown sampler {self.method!r}; choose one of {', '.join(METHODS)}")
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._draw(n, rng).astype(np.float32)

    # ------------------------------------------------------------ the three densities

    def _neighbour(self, n: int, rng: np.random.Generator) -> np.ndarray:
        centres = self.anchors[rng.integers(0, len(self.anchors), n)]
        return centres + rng.normal(size=centres.shape) * self.scale

    def _fit_kde(self) -> None:
        """Kernels on standardised embeddings, so one bandwidth suits every dimension."""
        n, d = self.anchors.shape
        if self.bandwidth == "cv" and n >= 5:
            from sklearn.model_selection import GridSearchCV
            from sklearn.neighbors import KernelDensity

            # The search costs O(n^2) per fit; past CV_ANCHORS anchors a fixed random subset chooses the width
            # (with d = 128 the optimal width barely depends on n: Scott's factor n^(-1/(d+4)) moves 1% from
            # 256 to 1024 anchors).
            subset = self.anchors
            if n > CV_ANCHORS:
                subset = subset[np.random.default_rng(0).choice(n, CV_ANCHORS, replace=False)]
            search = GridSearchCV(KernelDensity(), {"bandwidth": np.logspace(-1.5, 0.5, 12)}, cv=min(5, n))
            self.kernel_width = float(search.fit(subset / self.scale).best_params_["bandwidth"])
        elif self.bandwidth in ("scott", "cv"):
            self.fallback = (
                "bandwidth by Scott's rule (cross-validation needs 5 anchors)" if self.bandwidth == "cv" else None
            )
            self.kernel_width = n ** (-1.0 / (d + 4))
        elif self.bandwidth == "silverman":
            self.kernel_width = (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
        else:
            try:
                self.kernel_width = float(self.bandwidth)
            except ValueError as exc:
                raise UserError(f"kde bandwidth {self.bandwidth!r}: use cv, scott, silverman or a number") from exc
        self._draw = self._kde

    def _kde(self, n: int, rng: np.random.Generator) -> np.ndarray:
        centres = self.anchors[rng.integers(0, len(self.anchors), n)]
        return centres + rng.normal(size=centres.shape) * self.kernel_width * self.scale

    def _fit_gauss(self) -> None:
        self.mean = self.anchors.mean(axis=0)
        if self.covariance == "full" and len(self.mean) > MAX_FULL_COVARIANCE_DIM:
            self.fallback = f"diagonal covariance: {len(self.mean)} dimensions are too many for a full one"
        if self.covariance == "diag" or self.fallback:
            self.factor = np.diag(self.scale)
        else:
            from sklearn.covariance import LedoitWolf

            covariance = LedoitWolf().fit(self.anchors).covariance_
            self.factor = np.linalg.cholesky(covariance + 1e-9 * np.eye(len(covariance)))
        self._draw = self._gauss

    def _gauss(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean + rng.normal(size=(n, len(self.mean))) @ self.factor.T


# ---------------------------------------------------------------- choosing anchors


def select_anchors(table: pl.DataFrame, rule: str) -> list[int]:
    """Checkpoint ids for `top:F` (best fraction F by validation accuracy), `epoch:E`, or `ids:a,b,c`."""
    kind, _, value = rule.partition(":")
    try:
        if kind == "top":
            fraction = float(value)
            if not 0 < fraction <= 1:
                raise ValueError
            metric = "val_acc" if table["val_acc"].is_not_nan().all() else "test_acc"
            count = max(1, round(fraction * table.height))
            return sorted(table.sort(metric, descending=True)["checkpoint"][:count].to_list())
        if kind == "epoch":
            ids = table.filter(pl.col("epoch") == int(value))["checkpoint"].to_list()
            if not ids:
                raise UserError(
                    f"anchors {rule!r}: no checkpoint at epoch {value} (have {sorted(set(table['epoch']))})"
                )
            return ids
        if kind == "ids":
            ids = [int(v) for v in value.split(",") if v.strip()]
            known = set(table["checkpoint"].to_list())
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise UserError(f"anchors {rule!r}: no checkpoint with id {unknown[:5]} in this zoo")
            if not ids:
                raise UserError("anchors: the list of ids is empty")
            return ids
    except ValueError as exc:
        raise UserError(f"anchors {rule!r}: expected top:F (0 < F <= 1), epoch:E or ids:a,b,c") from exc
    raise UserError(f"anchors {rule!r}: expected top:F, epoch:E or ids:a,b,c")
