"""Dataset names with options: a base dataset (digits, shapes, a local folder) made into another task, for zoos
restricted to some classes and for transfer learning. Everything is made offline from what the base holds.

    BASE[:OPTION[:OPTION...]]

    digits:classes=0-4          the classes 0 to 4 only, relabelled 0..4 (also classes=1,3,5)
    digits:classes=5-9:k=10     the classes 5 to 9, with 10 labelled training images per class (few-shot)
    digits:invert               inverted contrast (1 - pixel)
    digits:rotate=90            every image turned by 90 degrees (90, 180 or 270)
    digits:noise=0.3            Gaussian pixel noise of std 0.3 (seeded), clipped to [0, 1]
    mnist:test=2000             a seeded 2,000 of the test images (a faster, still fine-grained instrument)

Options apply in this order whatever order they are written in: classes, then invert, rotate and noise on the raw
[0, 1] images, then k, which keeps k images per class of the training split only (validation and test stay whole,
so a few-shot model is judged as fairly as any other), and test, which keeps a seeded subset of the test split
(every model of a zoo and of its generations is judged on the same images). Two tasks share a label space when
they have the same base and classes: a model moving between them keeps its output layer (core/gen/finetune.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import DataError, UserError
from core.limits import MAX_TASK_CLASSES
from core.names import checked_path_text, shortened

ROTATIONS = (0, 90, 180, 270)
MAX_NOISE = 10.0
_OPTIONS = ("classes", "k", "invert", "rotate", "noise", "test")


@dataclass(frozen=True)
class Task:
    base: str
    classes: tuple[int, ...] | None = None  # None: every class of the base
    k: int | None = None  # training images per class; None: all
    invert: bool = False
    rotate: int = 0
    noise: float = 0.0
    test: int | None = None  # test images kept; None: all

    def transform(self, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw [0, 1] images [N, C, H, W] and labels of the base -> the task's (class subset relabelled,
        images transformed). `seed` draws the noise."""
        if self.classes is not None:
            missing = [c for c in self.classes if not (y == c).any()]
            if missing:
                raise DataError(
                    f"{self.base}: has no images of classes {missing[:10]}{' ...' if len(missing) > 10 else ''} "
                    f"(its labels: {_show(tuple(np.unique(y).tolist()))})"
                )
            keep = np.isin(y, self.classes)
            relabel = {c: i for i, c in enumerate(self.classes)}
            x, y = x[keep], np.array([relabel[int(c)] for c in y[keep]], dtype=np.int64)
        if self.invert:
            x = 1.0 - x
        if self.rotate:
            x = np.rot90(x, k=self.rotate // 90, axes=(2, 3))
        if self.noise:
            x = np.clip(x + np.random.default_rng([seed, 7]).normal(0.0, self.noise, x.shape), 0.0, 1.0)
        return np.ascontiguousarray(x, dtype=np.float32), y

    def label_space(self, n_classes: int) -> tuple:
        """What the labels mean: the base and its classes (all of them, counted, when no subset is named)."""
        return (self.base, self.classes if self.classes is not None else tuple(range(n_classes)))


def parse_task(name: str) -> Task:
    """A dataset name -> its base and options. Options are read from the right while they look like options, so a
    folder whose own name holds a colon still works."""
    parts = name.split(":")
    options: dict = {}
    while len(parts) > 1 and parts[-1].split("=", 1)[0].strip() in _OPTIONS:
        key, _, value = parts.pop().partition("=")
        options[key.strip()] = value.strip()
    base = ":".join(parts)
    if not base:
        raise DataError(f"{name!r}: no base dataset before the options")
    try:
        checked_path_text(base, "dataset")
    except UserError as exc:  # a dataset name's problem is a DataError, whichever check finds it
        raise DataError(str(exc)) from None
    try:
        return Task(
            base=base,
            classes=_classes(options["classes"]) if "classes" in options else None,
            k=_count(options["k"]) if "k" in options else None,
            invert=_flag(options, "invert"),
            rotate=_rotation(options["rotate"]) if "rotate" in options else 0,
            noise=_noise(options["noise"]) if "noise" in options else 0.0,
            test=_test_count(options["test"]) if "test" in options else None,
        )
    except ValueError as exc:
        raise DataError(
            f"{shortened(name)}: {exc} (see `core/zoo/tasks.py` for the grammar, e.g. digits:classes=0-4:k=10)"
        ) from None


def _classes(text: str) -> tuple[int, ...]:
    classes: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, dash, high = part.partition("-")
        first, last = (_class_id(low), _class_id(high)) if dash else (_class_id(part),) * 2
        if last < first:
            raise ValueError(f"classes={text}: range {part} runs backwards")
        if len(classes) + last - first + 1 > MAX_TASK_CLASSES:
            raise ValueError(f"classes={text}: at most {MAX_TASK_CLASSES} classes")
        classes += range(first, last + 1)
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes={text}: name each class once, e.g. 0-4 or 1,3,5")
    return tuple(classes)


def _class_id(text: str) -> int:
    """A class label as written: an integer in 0..MAX_TASK_CLASSES - 1 (no dataset here has more classes)."""
    if not (text.strip().isascii() and text.strip().isdigit()) or int(text) >= MAX_TASK_CLASSES:
        raise ValueError(f"classes: {text.strip()[:20]!r} is not a class label (0 to {MAX_TASK_CLASSES - 1})")
    return int(text)


def _count(text: str) -> int:
    k = int(text)
    if k < 1:
        raise ValueError(f"k={text}: at least 1 image per class")
    return k


def _test_count(text: str) -> int:
    n = int(text)
    if n < 1:
        raise ValueError(f"test={text}: keep at least 1 test image")
    return n


def kept_test_rows(n_test: int, keep: int, seed: int, name: str) -> np.ndarray:
    """Sorted indices of `keep` of the `n_test` test images, seeded (the same for every model judged on them)."""
    if keep > n_test:
        raise DataError(f"{name}: test={keep}, but the test split holds {n_test} images")
    return np.sort(np.random.default_rng([seed, 13]).permutation(n_test)[:keep])


def _flag(options: dict, key: str) -> bool:
    if key not in options:
        return False
    if options[key] not in ("", "1", "true", "yes"):
        raise ValueError(f"{key} takes no value, got {key}={options[key]}")
    return True


def _rotation(text: str) -> int:
    degrees = int(text) % 360
    if degrees not in ROTATIONS:
        raise ValueError(f"rotate={text}: turns by 90, 180 or 270 degrees")
    return degrees


def _noise(text: str) -> float:
    std = float(text)
    if not 0 <= std <= MAX_NOISE:
        raise ValueError(f"noise={text}: a pixel noise std in 0..{MAX_NOISE}")
    return std


def _show(classes: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in classes)


def few_shot(labels: np.ndarray, k: int, seed: int, name: str) -> np.ndarray:
    """Indices of k images per class among `labels` (a training split), seeded; every class must have k."""
    rng = np.random.default_rng([seed, 11])
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < k:
            raise DataError(f"{name}: class {label} has {len(members)} training images, fewer than k={k}")
        chosen.append(rng.choice(members, k, replace=False))
    return np.sort(np.concatenate(chosen))
