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
in memory whole. Distances to the zoo take the smallest over chunks; the zoo against itself pairs a large block of
queries (a quarter of the memory budget) with small chunks of the zoo, so the zoo is read a few times over, not once
per chunk.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

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


def zoo_chunks(zoo: ZooWeights, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, weights [<= rows, params]) over the whole zoo, in order."""
    if isinstance(zoo, PreparedZoo):
        yield from zoo.iter_aligned(chunk=rows)
    elif isinstance(zoo, Zoo):
        yield from zoo.iter_chunks(rows)
    else:
        for start in range(0, len(zoo), rows):
            yield start, zoo[start : start + rows]


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
        for start in range(0, len(data.y_test), 64):
            x = data.x_test[start : start + 64]
            index = torch.arange(start, start + len(x)).expand(n, -1)
            logits = population.net.forward(population.params, population.net.batch_input(data.x_test, index))
            predicted[rows, start : start + len(x)] = logits.argmax(-1).to(torch.int16)
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


def min_l2(vectors: torch.Tensor, reference: ZooWeights, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """For each row of `vectors`, the smallest L2 distance to a row of `reference` (read a chunk at a time; pairs
    where `exclude` [vectors, reference] is True are skipped)."""
    best = torch.full((len(vectors),), float("inf"))
    size = chunk_rows(_n_params(reference), copies=2)
    for start, chunk in zoo_chunks(reference, size):
        distance = torch.cdist(vectors, chunk)
        if exclude is not None:
            distance = distance.masked_fill(exclude[:, start : start + len(chunk)], float("inf"))
        best = torch.minimum(best, distance.min(dim=1).values)
    return best


def zoo_min_l2(zoo: ZooWeights, zoo_models: np.ndarray) -> torch.Tensor:
    """Each zoo checkpoint's smallest L2 distance to a checkpoint of another model: blocks of queries (a quarter
    of the budget each) against the zoo read in chunks."""
    block = chunk_rows(_n_params(zoo), copies=0) * 4
    found = []
    for start, queries in zoo_chunks(zoo, block):
        own = zoo_models[start : start + len(queries)]
        found.append(min_l2(queries, zoo, torch.from_numpy(own[:, None] == zoo_models[None, :])))
    return torch.cat(found)


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
    generated: torch.Tensor, generated_errors: torch.Tensor, decoded: torch.Tensor, decoded_errors: torch.Tensor
) -> dict:
    """The generated models against the generator's own decodes of its anchors: per model the smallest L2 distance
    and the largest error-IoU, and their medians (0 and 1 for a model that is one of the decodes)."""
    l2, iou = min_l2(generated, decoded), max_iou(generated_errors, decoded_errors)
    return {
        "decoded_min_l2": l2.numpy(),
        "decoded_max_iou": iou.numpy(),
        "decoded_min_l2_median": float(l2.median()),
        "decoded_max_iou_median": float(iou.median()),
    }


def novelty(
    generated: torch.Tensor,
    generated_errors: torch.Tensor,
    zoo: ZooWeights,
    zoo_errors: torch.Tensor,
    zoo_models: np.ndarray,
) -> dict:
    """Per-model figures for the generated models and the medians next to the zoo's own (each zoo checkpoint
    compared with the checkpoints of the other models)."""
    gen_l2, gen_iou = min_l2(generated, zoo), max_iou(generated_errors, zoo_errors)
    zoo_l2, zoo_iou = zoo_min_l2(zoo, zoo_models), zoo_max_iou(zoo_errors, zoo_models)
    return {
        "min_l2": gen_l2.numpy(),
        "max_iou": gen_iou.numpy(),
        "min_l2_median": float(gen_l2.median()),
        "zoo_min_l2_median": float(zoo_l2.median()),
        "max_iou_median": float(gen_iou.median()),
        "zoo_max_iou_median": float(zoo_iou.median()),
    }


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

    Computing holds a lock: a generation that asks while the background thread computes the same zoo waits for
    that result instead of computing it a second time."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._sets: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def predictions(
        self, key: tuple, spec: Spec, weights: ZooWeights, data: Dataset, activations: list[str]
    ) -> torch.Tensor:
        """The zoo's predicted classes under `key`, computed from `weights` (the zoo's, aligned or not) if not kept
        yet."""
        with self._lock:
            if key not in self._sets:
                if len(self._sets) >= self.capacity:
                    self._sets.popitem(last=False)
                self._sets[key] = predicted_classes(spec, weights, data, activations)
            self._sets.move_to_end(key)
            return self._sets[key]

    def get(self, key: tuple, spec: Spec, weights: ZooWeights, data: Dataset, activations: list[str]) -> torch.Tensor:
        """The zoo's error sets under `key` (from its kept predictions)."""
        return self.predictions(key, spec, weights, data, activations) != data.y_test
