"""Datasets the zoos train on: bundled digits, procedural shapes, and local MNIST-family / CIFAR-10 folders.

Nothing here downloads. Every split is a deterministic function of a seed, and every image tensor is
float32 [N, C, H, W], standardised per channel with the training split's statistics. Dataset files are read
within a size cap, decompressed ones too (core/limits.py), and checked to hold images.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from core.errors import DataError, UserError
from core.limits import MAX_DATASET_FILE_BYTES
from core.store.files import read_bytes
from core.zoo.dataset_cache import DatasetCache
from core.zoo.tasks import Task, few_shot, kept_test_rows, parse_task

BUILTIN = ("digits", "shapes")
# Validation accuracy is measured on the first SCORED_VAL_IMAGES of the validation split (a random subset: the split
# is drawn at random), by the zoo's table as by the generator's selection, so an anchor and a draw are ranked on the
# same images. 2,048 images resolve 0.05 points, plenty to rank; MNIST's whole split (6,000 images) made every
# scored model three times as costly (two thirds of a quick MNIST zoo's snapshot evaluation); digits' and shapes'
# splits are smaller and used whole.
SCORED_VAL_IMAGES = 2048


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    # Per-channel statistics of the raw [0, 1] training images, which every split was standardised with;
    # exported models carry them so that they can preprocess new images the same way.
    channel_mean: tuple[float, ...] = ()
    channel_std: tuple[float, ...] = ()
    # What the labels mean (core/zoo/tasks.py): a model moving between datasets of one label space keeps its head.
    label_space: tuple = ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def scored_val(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation images and labels that validation accuracy is measured on (SCORED_VAL_IMAGES)."""
        return self.x_val[:SCORED_VAL_IMAGES], self.y_val[:SCORED_VAL_IMAGES]


DATASETS = DatasetCache()  # the datasets this process loaded (core/zoo/dataset_cache.py)


def load_dataset(name: str, seed: int = 0, val_fraction: float = 0.1) -> Dataset:
    """`name` is `digits`, `shapes`, or a folder holding MNIST-family IDX files or CIFAR-10 binary batches, with
    optional task options after it (`digits:classes=0-4:k=10`, core/zoo/tasks.py). A copy of the one kept from an
    earlier call with the same arguments, where its files have not changed since."""
    task = parse_task(name)
    files = _source_files(task.base)
    if files is None:  # a folder that cannot be read as a dataset: loading it says why
        return _load(name, task, seed, val_fraction)
    key = (name, seed, val_fraction, tuple(_file_signature(path) for path in files))
    return DATASETS.get(key, lambda: _load(name, task, seed, val_fraction))


def _load(name: str, task: Task, seed: int, val_fraction: float) -> Dataset:
    train, test = _base_arrays(task.base, seed)
    x, y = task.transform(*train, seed)
    if test is None:  # the built-in sets: a seeded fifth is the test split
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = int(round(0.2 * len(x)))
        test_rows, rest = order[:n_test], order[n_test:]
        return _split_with_test(name, x[rest], y[rest], x[test_rows], y[test_rows], seed, val_fraction, task)
    x_test, y_test = task.transform(*test, seed)
    return _split_with_test(name, x, y, x_test, y_test, seed, val_fraction, task)


_RAW_INPUT = {
    "digits": "scikit-learn's load_digits() images hold pixel values 0 to 16: divide by 16 to get [0, 1]",
    "shapes": "the generated shapes are already in [0, 1]",
}


def data_recipe(name: str, seed: int) -> dict:
    """How a dataset's test split and raw inputs are made, in words for a model card: enough for someone without
    this project to rebuild the test images and feed raw ones to an exported model (which then standardises them
    with its own `preprocess`)."""
    task = parse_task(name)
    if task.base in BUILTIN:
        test = (
            f"a seeded fifth of the {task.base} images: numpy.random.default_rng({seed}).permutation(n), first "
            "round(0.2 * n) indices (n images in the order the set gives them)"
        )
        raw = _RAW_INPUT[task.base]
    else:
        test = "the folder's own test files (MNIST-family t10k IDX files, or CIFAR-10's test_batch)"
        raw = "image bytes 0 to 255: divide by 255 to get [0, 1]"
    options = name[len(task.base) :].lstrip(":")
    if task.test is not None:
        test += (
            f"; of those, {task.test}: numpy.random.default_rng([{seed}, 13]).permutation(n_test)[:{task.test}], sorted"
        )
    return {
        "test_split": test + (f", after the task options {options!r}" if options else ""),
        "raw_input": raw + ", then apply model.preprocess (the training split's per-channel standardisation)",
        "layout": "float tensor [N, channels, height, width]",
    }


def _base_arrays(base: str, seed: int):
    """((images, labels) to train on, (images, labels) to test on, or None to split off), raw in [0, 1]."""
    if base == "digits":
        return _digits(), None
    if base == "shapes":
        return make_shapes(n=1800, seed=seed), None
    folder = Path(base).expanduser()
    if not folder.exists():
        raise DataError(
            f"{base}: no such dataset; use one of {', '.join(BUILTIN)} or a folder with IDX or CIFAR-10 files"
        )
    if not folder.is_dir():
        raise DataError(f"{folder}: a dataset must be a folder (MNIST-family IDX files or CIFAR-10 binary batches)")
    cifar = _find_cifar_folder(folder)
    return _cifar10(cifar) if cifar is not None else _idx_folder(folder)


def _source_files(base: str) -> list[Path] | None:
    """The files a dataset is read from (none for the built-in sets), or None where the folder is not a dataset."""
    if base in BUILTIN:
        return []
    folder = Path(base).expanduser()
    try:
        cifar = _find_cifar_folder(folder) if folder.is_dir() else None
        if cifar is not None:
            return [*_cifar_batches(cifar), cifar / "test_batch.bin"]
        return [path for pair in _idx_files(folder) for path in pair] if folder.is_dir() else None
    except (DataError, OSError):
        return None


def _file_signature(path: Path) -> tuple:
    """What tells a file's version: its size, times and inode (None for a missing file)."""
    try:
        path, stat = path.resolve(), path.stat()
    except OSError:
        return (str(path.absolute()), None)
    return (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


# ---------------------------------------------------------------- built-in data


def _digits() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None] / 16.0
    return x, bunch.target.astype(np.int64)


# The seven tetrominoes plus three more simple shapes, so that `shapes` has ten classes like `digits`.
_SHAPES = {
    "I": ["####"],
    "O": ["##", "##"],
    "T": ["###", ".#."],
    "S": [".##", "##."],
    "Z": ["##.", ".##"],
    "J": ["#..", "###"],
    "L": ["..#", "###"],
    "plus": [".#.", "###", ".#."],
    "ring": ["###", "#.#", "###"],
    "diagonal": ["#...", ".#..", "..#.", "...#"],
}
SHAPE_NAMES = tuple(_SHAPES)


def make_shapes(n: int, seed: int, size: int = 8, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A procedural 10-class image set: each image is one shape at a random position and shade, plus noise.

    Shapes keep their orientation: with random rotations the small CNN of the zoos reached only 55% test
    accuracy after 30 epochs, too hard a target for a transfer experiment; upright it reaches 85-90%."""
    rng = np.random.default_rng(seed)
    masks = [np.array([[c == "#" for c in row] for row in rows], dtype=np.float32) for rows in _SHAPES.values()]
    y = np.arange(n) % len(masks)
    rng.shuffle(y)
    x = np.zeros((n, 1, size, size), dtype=np.float32)
    for i, label in enumerate(y):
        mask = masks[label]
        h, w = mask.shape
        top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        x[i, 0, top : top + h, left : left + w] = mask * rng.uniform(0.6, 1.0)
    x += rng.normal(0.0, noise, size=x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0), y.astype(np.int64)


# ---------------------------------------------------------------- local folders

_IDX_MAGIC = {0x08: np.uint8}


def _dataset_bytes(path: Path) -> bytes:
    """A dataset file's bytes (decompressed for .gz), never more than MAX_DATASET_FILE_BYTES."""
    try:
        raw = read_bytes(path, MAX_DATASET_FILE_BYTES)
        if path.suffix != ".gz":
            return raw
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
            raw = unzipped.read(MAX_DATASET_FILE_BYTES + 1)
    except UserError as exc:
        raise DataError(str(exc)) from None
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt compressed data
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(raw) > MAX_DATASET_FILE_BYTES:
        raise DataError(f"{path}: decompresses to more than {MAX_DATASET_FILE_BYTES:,} bytes; refused")
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped); raise DataError naming the file when it is malformed."""
    raw = _dataset_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_MAGIC:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header promises {expected} bytes of data for shape {dims}, file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, prefix: str, kind: str) -> Path:
    names = [f"{prefix}-{kind}", f"{prefix}-{kind}.gz"]
    for name in names:
        for candidate in (folder / name, folder / name.replace("-idx", ".idx")):
            if candidate.exists():
                return candidate
    raise DataError(f"{folder}: missing {names[0]}[.gz] (expected MNIST-family IDX files or CIFAR-10 binary batches)")


def _idx_files(folder: Path) -> list[tuple[Path, Path]]:
    """(images, labels) files of the training and the test split."""
    return [
        (_find_idx(folder, prefix, "images-idx3-ubyte"), _find_idx(folder, prefix, "labels-idx1-ubyte"))
        for prefix in ("train", "t10k")
    ]


def _idx_folder(folder: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    splits = []
    for images_path, labels_path in _idx_files(folder):
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3:
            raise DataError(f"{images_path}: expected 3 dimensions (count, rows, cols), found {images.ndim}")
        if labels.ndim != 1:
            raise DataError(f"{labels_path}: expected 1 dimension (count), found {labels.ndim}")
        if len(images) != len(labels):
            raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
        if not len(images) or 0 in images.shape[1:]:
            raise DataError(f"{images_path}: holds no images (shape {list(images.shape)})")
        splits.append((images[:, None].astype(np.float32) / 255.0, labels.astype(np.int64)))
    return splits[0], splits[1]


_CIFAR_RECORD = 1 + 3 * 32 * 32


def _find_cifar_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / "cifar-10-batches-bin"):
        if (candidate / "test_batch.bin").exists() or (candidate / "data_batch_1.bin").exists():
            return candidate
    return None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise DataError(f"{path}: missing CIFAR-10 batch file")
    raw = np.frombuffer(_dataset_bytes(path), dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        raise DataError(
            f"{path}: size {raw.size} bytes is not a multiple of the CIFAR-10 record ({_CIFAR_RECORD} bytes)"
        )
    records = raw.reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label {labels.max()} out of range 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels


def _cifar_batches(folder: Path) -> list[Path]:
    return [folder / f"data_batch_{i}.bin" for i in range(1, 6)]


def _cifar10(folder: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    train = [_read_cifar_batch(path) for path in _cifar_batches(folder)]
    test = _read_cifar_batch(folder / "test_batch.bin")
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])), test


# ---------------------------------------------------------------- splits


def _split_with_test(name, x_tr, y_tr, x_te, y_te, seed, val_fraction, task: Task) -> Dataset:
    if len(x_tr) < 2 or len(x_te) < 1:
        raise DataError(f"{name}: {len(x_tr)} training and {len(x_te)} test images; need at least 2 and 1")
    order = np.random.default_rng(seed + 1).permutation(len(x_tr))
    n_val = max(1, int(round(val_fraction * len(x_tr))))
    val, train = order[:n_val], order[n_val:]
    if task.k is not None:  # few-shot: k labelled images per class to train on
        train = train[few_shot(y_tr[train], task.k, seed, name)]
    if task.test is not None:
        kept = kept_test_rows(len(x_te), task.test, seed, name)
        x_te, y_te = x_te[kept], y_te[kept]
    mean = x_tr[train].mean(axis=(0, 2, 3), keepdims=True)
    std = x_tr[train].std(axis=(0, 2, 3), keepdims=True) + 1e-6

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray((a - mean) / std, dtype=np.float32))

    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    return Dataset(
        name=name,
        x_train=tensor(x_tr[train]),
        y_train=torch.from_numpy(y_tr[train].copy()),
        x_val=tensor(x_tr[val]),
        y_val=torch.from_numpy(y_tr[val].copy()),
        x_test=tensor(x_te),
        y_test=torch.from_numpy(y_te.copy()),
        n_classes=n_classes,
        channel_mean=tuple(float(v) for v in mean.reshape(-1)),
        channel_std=tuple(float(v) for v in std.reshape(-1)),
        label_space=task.label_space(n_classes),
    )
