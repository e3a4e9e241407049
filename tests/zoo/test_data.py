"""core.data: the built-in datasets, local MNIST-family IDX and CIFAR-10 folders, and the errors they raise."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import DataError, UserError
from core.zoo.data import SHAPE_NAMES, load_dataset, make_shapes

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
CIFAR_RECORD = 1 + 3 * 32 * 32


# ---------------------------------------------------------------- fixture writers


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of unsigned bytes: 0, 0, dtype 0x08, ndim, big-endian 4-byte dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_file(path: Path, data: bytes, gz: bool = False) -> Path:
    if gz:
        path, data = path.with_name(path.name + ".gz"), gzip.compress(data)
    path.write_bytes(data)
    return path


def write_idx_folder(folder: Path, n_train: int = 40, n_test: int = 10, gz: bool = False) -> dict[str, np.ndarray]:
    """An MNIST-like folder of 28x28 images; labels cycle through 0..9. Returns the raw arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        for kind in ("images", "labels"):
            write_file(folder / IDX_NAMES[(split, kind)], idx_bytes(arrays[f"{split}_{kind}"]), gz)
    return arrays


def cifar_batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
    return pixels, labels, np.concatenate([labels[:, None], pixels], axis=1).tobytes()


def write_cifar_folder(folder: Path, per_batch: int = 3, n_test: int = 4) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    train_labels = []
    for i in range(1, 6):
        _, labels, data = cifar_batch(per_batch, seed=i)
        (folder / f"data_batch_{i}.bin").write_bytes(data)
        train_labels.append(labels)
    pixels, labels, data = cifar_batch(n_test, seed=99)
    (folder / "test_batch.bin").write_bytes(data)
    return {"train_labels": np.concatenate(train_labels), "test_pixels": pixels, "test_labels": labels}


def correlation(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.corrcoef(a.numpy().ravel(), b.astype(np.float64).ravel())[0, 1])


# ---------------------------------------------------------------- built-in datasets


def test_digits_shapes_dtype_and_disjoint_splits():
    data = load_dataset("digits", seed=0)
    sizes = [len(data.x_train), len(data.x_val), len(data.x_test)]
    assert sum(sizes) == 1797 and min(sizes) > 0
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8) and len(y) == len(x)
        assert y.dtype == torch.int64
    assert data.image_shape == (1, 8, 8)
    assert data.n_classes == 10
    assert set(data.y_train.tolist()) == set(range(10))
    # the 1797 digits images are all distinct, so disjoint splits hold 1797 distinct images between them
    all_rows = torch.cat([data.x_train, data.x_val, data.x_test]).flatten(1)
    assert len(torch.unique(all_rows, dim=0)) == 1797


def test_digits_training_split_is_standardised():
    data = load_dataset("digits", seed=0)
    assert abs(float(data.x_train.mean())) < 1e-4
    assert abs(float(data.x_train.std()) - 1.0) < 1e-3
    # the other splits use the training statistics: close to, but not exactly, standardised
    assert abs(float(data.x_test.mean())) < 0.2


def test_digits_split_is_a_function_of_the_seed():
    a, b, c = load_dataset("digits", seed=1), load_dataset("digits", seed=1), load_dataset("digits", seed=2)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    # another seed draws other test and validation images (labels compared: the standardisation differs anyway)
    assert a.x_test.shape == c.x_test.shape
    assert not torch.equal(a.y_test, c.y_test)
    assert not torch.equal(a.y_val, c.y_val)


def test_shapes_dataset_is_deterministic_ten_classes_8x8():
    a, b, c = load_dataset("shapes", seed=0), load_dataset("shapes", seed=0), load_dataset("shapes", seed=1)
    assert a.image_shape == (1, 8, 8) and a.n_classes == 10
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1800
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.x_train[:100], c.x_train[:100])
    for y in (a.y_train, a.y_test):
        assert set(y.tolist()) == set(range(10))


def test_make_shapes_directly():
    x, y = make_shapes(n=50, seed=4)
    x2, y2 = make_shapes(n=50, seed=4)
    x3, _ = make_shapes(n=50, seed=5)
    assert x.shape == (50, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert len(SHAPE_NAMES) == 10 and np.bincount(y, minlength=10).tolist() == [5] * 10
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, x3)


# ---------------------------------------------------------------- MNIST-family IDX folders


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_folder_loads_with_labels_round_tripping(tmp_path, gz):
    raw = write_idx_folder(tmp_path / "mnist", gz=gz)
    data = load_dataset(str(tmp_path / "mnist"), seed=0)
    assert data.x_train.shape[1:] == (1, 28, 28) and data.x_train.dtype == torch.float32
    assert len(data.x_train) + len(data.x_val) == 40 and len(data.x_val) == 4
    assert data.x_test.shape == (10, 1, 28, 28)
    assert data.n_classes == 10
    # the test split keeps the order of the t10k files; train and val together hold the train labels
    assert data.y_test.tolist() == raw["test_labels"].tolist()
    assert correlation(data.x_test[:, 0], raw["test_images"]) > 0.9999
    assert sorted(torch.cat([data.y_train, data.y_val]).tolist()) == sorted(raw["train_labels"].tolist())
    assert abs(float(data.x_train.mean())) < 1e-4


def test_idx_folder_accepts_dotted_file_names(tmp_path):
    raw = write_idx_folder(tmp_path / "mnist")
    for path in (tmp_path / "mnist").iterdir():
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))
    data = load_dataset(str(tmp_path / "mnist"))
    assert data.y_test.tolist() == raw["test_labels"].tolist()


# ---------------------------------------------------------------- CIFAR-10 binary folders


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "cifar-10-batches-bin"])
def test_cifar_folder_loads(tmp_path, nested):
    folder = tmp_path / "cifar" / "cifar-10-batches-bin" if nested else tmp_path / "cifar"
    raw = write_cifar_folder(folder)
    data = load_dataset(str(tmp_path / "cifar"), seed=0)
    assert data.x_test.shape == (4, 3, 32, 32) and data.x_train.shape[1:] == (3, 32, 32)
    assert len(data.x_train) + len(data.x_val) == 15
    assert data.y_test.tolist() == raw["test_labels"].tolist()
    assert sorted(torch.cat([data.y_train, data.y_val]).tolist()) == sorted(raw["train_labels"].tolist())
    # each record is 1024 red, then 1024 green, then 1024 blue bytes
    planes = raw["test_pixels"].reshape(-1, 3, 32, 32)
    for channel in range(3):
        assert correlation(data.x_test[:, channel], planes[:, channel]) > 0.9999


# ---------------------------------------------------------------- errors name the file or folder


def raises_naming(fragment: str, name: str) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(name)
    assert fragment in str(info.value)
    return str(info.value)


def test_data_error_is_a_user_error():
    assert issubclass(DataError, UserError)


def test_unknown_dataset_name_and_missing_folder(tmp_path):
    raises_naming("no-such-dataset", "no-such-dataset")
    raises_naming(str(tmp_path / "missing"), str(tmp_path / "missing"))


def test_a_file_is_not_a_dataset_folder(tmp_path):
    path = tmp_path / "images.bin"
    path.write_bytes(b"\0" * 10)
    raises_naming("images.bin", str(path))


def test_folder_without_idx_files(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing here")
    message = raises_naming(str(tmp_path / "empty"), str(tmp_path / "empty"))
    assert "train-images-idx3-ubyte" in message


def test_bad_magic_number(tmp_path):
    write_idx_folder(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[2] = 0x0D  # float32 IDX: not one we read
    path.write_bytes(bytes(data))
    assert "magic" in raises_naming("train-images-idx3-ubyte", str(tmp_path / "mnist"))


def test_truncated_idx_data(tmp_path):
    write_idx_folder(tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    raises_naming("t10k-images-idx3-ubyte", str(tmp_path / "mnist"))


def test_corrupt_gzip(tmp_path):
    write_idx_folder(tmp_path / "mnist", gz=True)
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[:10] + bytes(b ^ 0xFF for b in data[10:-8]) + data[-8:])  # header and trailer intact
    raises_naming("train-labels-idx1-ubyte.gz", str(tmp_path / "mnist"))


def test_label_count_differs_from_image_count(tmp_path):
    raw = write_idx_folder(tmp_path / "mnist")
    write_file(tmp_path / "mnist" / "train-labels-idx1-ubyte", idx_bytes(raw["train_labels"][:-1]))
    raises_naming("train-labels-idx1-ubyte", str(tmp_path / "mnist"))


def test_cifar_batch_size_not_a_multiple_of_the_record(tmp_path):
    write_cifar_folder(tmp_path / "cifar")
    path = tmp_path / "cifar" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes() + b"\0" * 7)
    assert str(CIFAR_RECORD) in raises_naming("data_batch_3.bin", str(tmp_path / "cifar"))


def test_missing_cifar_batch(tmp_path):
    write_cifar_folder(tmp_path / "cifar")
    (tmp_path / "cifar" / "data_batch_4.bin").unlink()
    raises_naming("data_batch_4.bin", str(tmp_path / "cifar"))


@pytest.mark.parametrize("n_train, n_test", [(0, 10), (40, 0)])
def test_an_idx_file_of_no_images_is_one_clear_error(tmp_path, n_train, n_test):
    write_idx_folder(tmp_path / "mnist", n_train=n_train, n_test=n_test)
    raises_naming("holds no images", str(tmp_path / "mnist"))


def test_a_gzip_that_decompresses_beyond_the_cap_is_refused(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "mnist", gz=True)
    blank = np.zeros((40, 28, 28), dtype=np.uint8)  # 31,376 bytes that compress to a few hundred
    write_file(tmp_path / "mnist" / "train-images-idx3-ubyte", idx_bytes(blank), gz=True)
    monkeypatch.setattr("core.zoo.data.MAX_DATASET_FILE_BYTES", 20_000)
    raises_naming("train-images-idx3-ubyte.gz: decompresses to more than 20,000 bytes", str(tmp_path / "mnist"))


def test_a_dataset_file_that_is_a_fifo_is_refused(tmp_path):
    write_idx_folder(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    path.unlink()
    os.mkfifo(path)
    raises_naming("train-labels-idx1-ubyte: not a regular file", str(tmp_path / "mnist"))
