"""Are generated models new, or copies of the zoo? (Zeng et al. 2025, "Generative Modeling of Weights:
Generalization or Memorization?")

Per generated model, each next to the same measure among the zoo's own models:
- the smallest L2 distance to any zoo checkpoint (in the aligned weight space the generator works in);
- the largest IoU between its set of misclassified test images and any zoo checkpoint's;
- the largest prediction agreement with any zoo checkpoint: the fraction of test images on which the two predict
  the same class (no checkpoint excluded: a zoo checkpoint agrees with itself, 1);
and against the generator's own decodes of its anchors (the anchors encoded and decoded), the same L2 and IoU: a
generator that merely reproduces its decodes sits at distance ~0 and IoU ~1 from them however far the decodes lie
from the zoo. A copy sits at distance ~0, IoU ~1 and agreement ~1.

Where IoU is not monotone in novelty: it falls as a working model moves away from the zoo, but rises again once
the model collapses. A model near chance errs on almost every image, and the zoo holds checkpoints that do too
(epoch 0, before training): two error sets that each cover ~90% of the images overlap with an IoU of ~0.8, so a
collapsed model reads as a near copy. Agreement does not rise that way: two chance-level models that err
independently predict the same class on about 1/classes of the images (an image one of them gets wrong can be
mislabelled in classes - 1 ways), so agreement keeps falling as a model degrades; the exception is two models
that predict one constant class each, the same one (agreement 1). Read both beside accuracy.

The zoo side is read a chunk of checkpoints at a time (`zoo_chunks`): a zoo on disk, or prepared (aligned), is never
in memory whole. Distances to the zoo take the smallest over chunks, for every group of models in one pass
(`nearest_l2`). The zoo against itself (`zoo_min_l2`) pairs blocks of equal size, each pair once (the distances are
symmetric): a large block of queries against thin chunks of the zoo ran at the speed of memory, not of the
processor (a 96 MB zoo under a 256 MB budget, 164-row blocks against 13-row chunks: 14.7 s of `cdist` where the
whole zoo at once took 2.0 s). The zoo's own figures do not depend on the models compared with it: a generation
computes them once (`zoo_novelty`) for all its groups.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
import polars as pl
import torch

from core.rep.prepare import PreparedZoo
from core.store.budget import chunk_rows
from core.zoo.arch import Spec
from core.zoo.data import Dataset
from core.zoo.model_zoo import Zoo
from core.zoo.population import Population

# A zoo's weights as novelty reads them: in memory, stored (a Zoo: its own weights) or prepared (aligned).
ZooWeights = torch.Tensor | Zoo | PreparedZoo


def zoo_block(zoo: ZooWeights, start: int, stop: int) -> torch.Tensor:
    """Weights [stop - start, params] of the zoo's rows start..stop-1 (aligned, for a prepared zoo)."""
    if isinstance(zoo, PreparedZoo):
        return zoo.aligned_rows(np.arange(start, stop))
    if isinstance(zoo, Zoo):
        return zoo.rows(np.arange(start, stop))
    return zoo[start:stop]


def zoo_chunks(zoo: ZooWeights, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, weights [<= rows, params]) over the whole zoo, in order."""
    for start in range(0, len(zoo), rows):
        yield start, zoo_block(zoo, start, min(start + rows, len(zoo)))


def _n_params(zoo: ZooWeights) -> int:
    if isinstance(zoo, torch.Tensor):
        return zoo.shape[1]
    return (zoo.zoo if isinstance(zoo, PreparedZoo) else zoo).spec.n_params


def predicted_classes(
    spec: Spec, vectors: ZooWeights, data: Dataset, activations: list[str] | None = None
) -> torch.Tensor:
    """Int16 [models, test images]: the class each model predicts for each test image (a zoo a chunk at a time)."""
    if isinstance(vectors, torch.Tensor):
        return _predicted(spec, vectors, data, activations)
    activations = activations or [spec.activation] * len(vectors)
    size = chunk_rows(spec.n_params, copies=8)
    return torch.cat([_predicted(spec, c, data, activations[s : s + len(c)]) for s, c in zoo_chunks(vectors, size)])


@torch.no_grad()
def _predicted(spec: Spec, vectors: torch.Tensor, data: Dataset, activations: list[str] | None) -> torch.Tensor:
    activations = activations or [spec.activation] * len(vectors)
    predicted = torch.zeros(len(vectors), len(data.y_test), dtype=torch.int16)
    for activation in sorted(set(activations)):
        rows = torch.tensor([i for i, a in enumerate(activations) if a == activation])
        n = len(rows)
        population = Population(
            spec.with_activation(activation), vectors[rows], [0] * n, [0.0] * n, [0.0] * n, [0.0] * n
        )
        classes = torch.empty(n, len(data.y_test), dtype=torch.int16)
        population.evaluate(data.x_test, data.y_test, classes=classes)  # in passes sized by the backend's budget
        predicted[rows] = classes
    return predicted


# error_sets predicts through this name, so that replacing `predicted_classes` (which ZooErrorSets calls) reaches the
# zoo's computations alone: the tests count those.
_predict = predicted_classes


def error_sets(spec: Spec, vectors: torch.Tensor, data: Dataset, activations: list[str] | None = None) -> torch.Tensor:
    """Bool [models, test images]: which test images each model gets wrong."""
    return _predict(spec, vectors, data, activations) != data.y_test


def max_iou(errors: torch.Tensor, reference: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """For each row of `errors`, the largest IoU with any row of `reference` (pairs where `exclude` is True
    are skipped, e.g. checkpoints of the same model)."""
    a, b = errors.float(), reference.float()
    intersection = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1) - intersection
    iou = torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))
    if exclude is not None:
        iou = iou.masked_fill(exclude, -1.0)
    return iou.max(dim=1).values


def min_l2(vectors: torch.Tensor, reference: ZooWeights) -> torch.Tensor:
    """For each row of `vectors`, the smallest L2 distance to a row of `reference` (read a chunk at a time)."""
    return nearest_l2([vectors], reference)[0]


def nearest_l2(groups: list[torch.Tensor], reference: ZooWeights) -> list[torch.Tensor]:
    """`min_l2` of every group of vectors, in one pass over `reference`: each chunk read serves all groups."""
    best = [torch.full((len(vectors),), float("inf")) for vectors in groups]
    for _, chunk in zoo_chunks(reference, chunk_rows(_n_params(reference), copies=2)):
        for k, vectors in enumerate(groups):
            if len(vectors):
                best[k] = torch.minimum(best[k], torch.cdist(vectors, chunk).min(dim=1).values)
    return best


def zoo_min_l2(zoo: ZooWeights, zoo_models: np.ndarray) -> torch.Tensor:
    """Each zoo checkpoint's smallest L2 distance to a checkpoint of another model. Blocks of a sixteenth of the
    budget, each pair of blocks once: the pair's distances update the smallest of both blocks' rows. Two blocks
    are held at a time, and a third while one is read (its raw and aligned rows)."""
    count, size = len(zoo_models), chunk_rows(_n_params(zoo), copies=0)
    models = torch.tensor(np.asarray(zoo_models))  # a copy: polars gives read-only arrays
    best = torch.full((count,), float("inf"))
    for first in range(0, count, size):
        block = zoo_block(zoo, first, min(count, first + size))
        rows = slice(first, first + len(block))
        for second in range(first, count, size):
            other = block if second == first else zoo_block(zoo, second, min(count, second + size))
            columns = slice(second, second + len(other))
            distance = torch.cdist(block, other).masked_fill_(models[rows, None] == models[None, columns], float("inf"))
            best[rows] = torch.minimum(best[rows], distance.min(dim=1).values)
            best[columns] = torch.minimum(best[columns], distance.min(dim=0).values)
    return best


def zoo_max_iou(zoo_errors: torch.Tensor, zoo_models: np.ndarray) -> torch.Tensor:
    """Each zoo checkpoint's largest error-IoU with a checkpoint of another model, in blocks of rows: the whole
    [checkpoints, checkpoints] matrix (three of them, with the intersections and unions) would grow with the
    square of the zoo."""
    block = max(1, chunk_rows(len(zoo_models), copies=3))
    found = []
    for start in range(0, len(zoo_errors), block):
        own = zoo_models[start : start + block]
        exclude = torch.from_numpy(own[:, None] == zoo_models[None, :])
        found.append(max_iou(zoo_errors[start : start + block], zoo_errors, exclude))
    return torch.cat(found)


def max_agreement(
    predictions: torch.Tensor, reference: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """For each row of `predictions` (classes [models, images]), the largest fraction of images on which it
    predicts the same class as a row of `reference` (pairs where `exclude` is True are skipped)."""
    classes = int(max(predictions.max(), reference.max())) + 1 if predictions.numel() and reference.numel() else 0
    agree = torch.zeros(len(predictions), len(reference))
    for c in range(classes):  # one matmul per class: a one-hot of every image and class at once is 10x the memory
        agree += (predictions == c).float() @ (reference == c).float().T
    agree /= max(predictions.shape[1], 1)
    if exclude is not None:
        agree = agree.masked_fill(exclude, -1.0)
    return agree.max(dim=1).values


ZOO_REFERENCE_ROWS = 256  # zoo checkpoints whose agreement with the rest estimates the zoo's median


def agreement(predictions: torch.Tensor, zoo_predictions: torch.Tensor) -> dict:
    """{"max_agreement": per model, "max_agreement_median"}: agreement with the most similar zoo checkpoint."""
    best = max_agreement(predictions, zoo_predictions)
    return {"max_agreement": best.numpy(), "max_agreement_median": float(best.median())}


def zoo_agreement_median(zoo_predictions: torch.Tensor, zoo_models: np.ndarray) -> float:
    """The median over zoo checkpoints of their agreement with the checkpoints of the other models, estimated on
    up to ZOO_REFERENCE_ROWS of them (a fixed random subset): the whole zoo against itself costs one matmul per
    class of [checkpoints, images] x [images, checkpoints], ten seconds and more for an MNIST zoo."""
    rows = np.sort(np.random.default_rng(0).permutation(len(zoo_models))[:ZOO_REFERENCE_ROWS])
    exclude = torch.from_numpy(zoo_models[rows][:, None] == zoo_models[None, :])
    return float(max_agreement(zoo_predictions[torch.from_numpy(rows)], zoo_predictions, exclude).median())


def decoded_novelty(
    generated: torch.Tensor, generated_errors: torch.Tensor, decodes: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> dict:
    """The generated models against the generator's own decodes of its anchors: per model the smallest L2 distance
    and the largest error-IoU, and their medians (0 and 1 for a model that is one of the decodes). `decodes` gives
    (decoded weights, their error sets) a chunk of anchors at a time: the decodes of many anchors are never held
    at once."""
    l2 = torch.full((len(generated),), float("inf"))
    iou = torch.full((len(generated),), -1.0)
    for decoded, decoded_errors in decodes:
        l2 = torch.minimum(l2, min_l2(generated, decoded))
        iou = torch.maximum(iou, max_iou(generated_errors, decoded_errors))
    return {
        "decoded_min_l2": l2.numpy(),
        "decoded_max_iou": iou.numpy(),
        "decoded_min_l2_median": float(l2.median()),
        "decoded_max_iou_median": float(iou.median()),
    }


class ZooReference(NamedTuple):
    """What every group of one generation is compared with, computed once for all of them."""

    predictions: torch.Tensor  # int16 [checkpoints, test images]: each zoo checkpoint's predicted classes
    errors: torch.Tensor  # bool, the same shape: which test images each gets wrong
    models: np.ndarray  # [checkpoints] model ids
    figures: dict  # `zoo_novelty`


def zoo_novelty(zoo: ZooWeights, zoo_errors: torch.Tensor, zoo_models: np.ndarray) -> dict:
    """The zoo's own medians: each zoo checkpoint compared with the checkpoints of the other models."""
    return {
        "zoo_min_l2_median": float(zoo_min_l2(zoo, zoo_models).median()),
        "zoo_max_iou_median": float(zoo_max_iou(zoo_errors, zoo_models).median()),
    }


def groups_novelty(
    groups: dict[str, torch.Tensor],
    group_errors: dict[str, torch.Tensor],
    zoo: ZooWeights,
    zoo_errors: torch.Tensor,
    zoo_figures: dict,
) -> dict[str, dict]:
    """{group: per-model figures and medians, next to the zoo's own (`zoo_figures`, from `zoo_novelty`)}, the
    distances of every group found in one pass over the zoo."""
    distances = nearest_l2(list(groups.values()), zoo)
    figures = {}
    for name, l2 in zip(groups, distances, strict=True):
        iou = max_iou(group_errors[name], zoo_errors)
        figures[name] = {"min_l2": l2.numpy(), "max_iou": iou.numpy(), "min_l2_median": float(l2.median())}
        figures[name] |= {"max_iou_median": float(iou.median()), **zoo_figures}
    return figures


def novelty(
    generated: torch.Tensor,
    generated_errors: torch.Tensor,
    zoo: ZooWeights,
    zoo_errors: torch.Tensor,
    zoo_models: np.ndarray,
) -> dict:
    """Per-model figures for the generated models and the medians next to the zoo's own (one group; a generation
    compares all of its groups through `groups_novelty`)."""
    zoo_figures = zoo_novelty(zoo, zoo_errors, zoo_models)
    return groups_novelty({"": generated}, {"": generated_errors}, zoo, zoo_errors, zoo_figures)[""]


def novelty_plane(per_model: dict[str, np.ndarray], figures: dict[str, dict]) -> pl.DataFrame:
    """The accuracy-vs-similarity plane of Zeng et al.: every generated and baseline model, as generated (one row
    per model: group, epoch-0 accuracy, min L2, max error-IoU and, where measured, max prediction agreement)."""
    return pl.concat(
        [
            pl.DataFrame(
                {
                    "group": [name] * len(f["min_l2"]),
                    "acc_epoch0": per_model[name][:, 0],
                    "min_l2": f["min_l2"],
                    "max_iou": f["max_iou"],
                    **({"max_agreement": f["max_agreement"]} if "max_agreement" in f else {}),
                }
            )
            for name, f in figures.items()
        ],
        how="diagonal",
    )


class ZooErrorSets:
    """The predictions (and so the error sets) of zoos, computed once per zoo and kept: they depend only on the
    zoo's weights and the dataset, and take a few seconds for a 256-model zoo. Aligned weights compute the same
    functions as the zoo's own (alignment only permutes hidden neurons), so every autoencoder run of a zoo shares
    them, and the app can compute them before any run is loaded. A long-lived process (the app) keeps one of these
    for its lifetime and fills it from a background thread; each CLI command makes its own. The key names the zoo
    (core/pipeline.py), so a new zoo is seen.

    It also keeps the error sets of an autoencoder run's decodes of a generation's anchors (`decoded_errors`).

    Computing holds a lock: a generation that asks while the background thread computes the same zoo waits for
    that result instead of computing it a second time."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._sets: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._decodes: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # apart: a region's never evicts a zoo's
        self._shares: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def predictions(
        self, key: tuple, spec: Spec, weights: ZooWeights, data: Dataset, activations: list[str]
    ) -> torch.Tensor:
        """The zoo's predicted classes under `key`, computed from `weights` (the zoo's, aligned or not) if not kept
        yet."""
        with self._lock:
            if key not in self._sets:
                self._keep(self._sets, key, predicted_classes(spec, weights, data, activations))
            self._sets.move_to_end(key)
            return self._sets[key]

    def decoded_errors(
        self, key: tuple, spec: Spec, decoded: Iterable[torch.Tensor], data: Dataset
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(decoded weights, their error sets) a chunk at a time, as `decoded_novelty` takes them: the error sets
        of an autoencoder run's decodes of a generation's anchors, kept under `key` (the run and the anchors).
        Every generation of a region compares its models with the same decodes, and evaluating them took a sixth
        of bench/paper.py's generations on an MNIST zoo; the decodes themselves are cheap and made again each time."""
        with self._lock:
            kept = self._decodes.get(key)
            if kept is not None:
                self._decodes.move_to_end(key)
        made, start = [], 0
        for chunk in decoded:
            errors = error_sets(spec, chunk, data) if kept is None else kept[start : start + len(chunk)]
            made.append(errors)
            start += len(chunk)
            yield chunk, errors
        if kept is None:
            with self._lock:
                self._keep(self._decodes, key, torch.cat(made))

    def decoded_shares(self, key: tuple, measure: Callable[[], np.ndarray]) -> np.ndarray:
        """The share of each anchor's validation accuracy that the run's decode of it keeps (core/gen/fidelity.py),
        kept under `key` (the run and the anchors) or measured now: every generation around the same anchors checks
        the same decodes, and the check took a quarter of bench/paper.py's generation time on an MNIST zoo (11.4 s of
        44.9 s a seed, the five spreads and the diverse ensemble each checking the same anchors)."""
        with self._lock:
            shares = self._shares.get(key)
            if shares is not None:
                self._shares.move_to_end(key)
                return shares
        shares = measure()
        with self._lock:
            self._keep(self._shares, key, shares)
        return shares

    def _keep(self, kept: OrderedDict, key: tuple, value) -> None:
        if len(kept) >= self.capacity:
            kept.popitem(last=False)
        kept[key] = value

    def get(self, key: tuple, spec: Spec, weights: ZooWeights, data: Dataset, activations: list[str]) -> torch.Tensor:
        """The zoo's error sets under `key` (from its kept predictions)."""
        return self.predictions(key, spec, weights, data, activations) != data.y_test
