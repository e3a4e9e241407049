"""core/zoo/dataset_cache.py: datasets kept per process, handed out as copies, read again when their files change."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from core.zoo import data as data_module
from core.zoo.data import load_dataset
from core.zoo.dataset_cache import DatasetCache
from tests.zoo.test_data import IDX_NAMES, idx_bytes, write_idx_folder


@dataclass(frozen=True)
class Tiny:
    name: str
    x: torch.Tensor


def test_a_kept_dataset_is_loaded_once_and_handed_out_as_copies():
    cache, loads = DatasetCache(), []

    def load() -> Tiny:
        loads.append(1)
        return Tiny("a", torch.zeros(4))

    first = cache.get(("a",), load)
    first.x.add_(1.0)  # a caller changing its copy in place
    second = cache.get(("a",), load)
    assert len(loads) == 1
    assert torch.equal(second.x, torch.zeros(4)) and second.name == "a"


def test_the_least_recently_used_goes_first_and_one_too_large_is_not_kept():
    cache = DatasetCache(capacity=2 * 400)  # room for two datasets of 100 float32
    loads = []

    def loader(key: str, size: int = 100):
        return lambda: loads.append(key) or Tiny(key, torch.zeros(size))

    cache.get(("a",), loader("a"))
    cache.get(("b",), loader("b"))
    cache.get(("a",), loader("a"))  # a is now the more recent
    cache.get(("c",), loader("c"))  # evicts b
    cache.get(("a",), loader("a"))
    cache.get(("b",), loader("b"))
    assert loads == ["a", "b", "c", "b"]
    cache.get(("big",), loader("big", 1000))
    cache.get(("big",), loader("big", 1000))
    assert loads[-2:] == ["big", "big"]


def test_what_is_kept_follows_the_memory_budget(monkeypatch):
    monkeypatch.setattr("core.store.budget._budget_mb", [64])  # --memory 64: 8 MB kept at most
    cache, loads = DatasetCache(), []
    for _ in range(2):
        cache.get(("big",), lambda: loads.append(1) or Tiny("big", torch.zeros(3 * 2**20)))  # 12 MB
    assert len(loads) == 2


def test_load_dataset_reads_a_folder_again_when_its_files_change(tmp_path, monkeypatch):
    parsed = []
    real = data_module._idx_folder
    monkeypatch.setattr(data_module, "_idx_folder", lambda folder: parsed.append(folder) or real(folder))
    write_idx_folder(tmp_path)
    first = load_dataset(str(tmp_path), seed=1)
    again = load_dataset(str(tmp_path), seed=1)
    assert len(parsed) == 1
    assert torch.equal(first.x_train, again.x_train) and first.x_train.data_ptr() != again.x_train.data_ptr()
    load_dataset(str(tmp_path), seed=2)  # another seed is another split
    assert len(parsed) == 2

    labels = tmp_path / IDX_NAMES[("test", "labels")]
    changed = (np.arange(10) % 10)[::-1].astype(np.uint8)
    labels.write_bytes(idx_bytes(changed))
    stat = labels.stat()
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    reread = load_dataset(str(tmp_path), seed=1)
    assert len(parsed) == 3
    assert reread.y_test.tolist() == changed.tolist()
