"""Datasets kept per process, so that loading one again is a copy, not a parse.

bench/paper.py loaded its MNIST task ten times a seed, 1.4-1.9 s each (decompressing the IDX files and converting
70,000 images to float), and every generation in the app loads its zoo's dataset again. A dataset is kept under
what it is made from (its name, seed and validation share, and the size, times and inode of each file it was read
from, so that a folder changed since is read again) and handed out as a copy: a caller that changes a tensor in
place changes its own copy only. What is kept is bounded by a share of the memory budget (`--memory`, core/store/
budget.py), the least recently used dataset going first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import fields, replace
from typing import TypeVar

import torch

from core.store.budget import share_bytes

# At the default 2,048 MB, 256 MB: full MNIST as a Dataset is 220 MB, the quick bench's tasks about 30 MB each.
CACHE_SHARE = 1 / 8

D = TypeVar("D")


def dataset_bytes(dataset) -> int:
    return sum(t.nbytes for t in _tensors(dataset).values())


def copied(dataset: D) -> D:
    """The dataset with every tensor cloned."""
    return replace(dataset, **{name: t.clone() for name, t in _tensors(dataset).items()})


def _tensors(dataset) -> dict[str, torch.Tensor]:
    return {f.name: v for f in fields(dataset) if isinstance(v := getattr(dataset, f.name), torch.Tensor)}


class DatasetCache:
    """Datasets under their keys, at most `capacity` bytes of them (default: CACHE_SHARE of the memory budget; one
    larger is handed out, not kept). Loading holds a lock: a thread asking for a dataset another is loading waits
    for it instead of loading it again."""

    def __init__(self, capacity: int | None = None) -> None:
        self._capacity = capacity
        self._kept: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, load: Callable[[], D]) -> D:
        with self._lock:
            dataset = self._kept.get(key)
            if dataset is None:
                dataset = load()
                self._keep(key, dataset)
            else:
                self._kept.move_to_end(key)
            return copied(dataset)

    @property
    def capacity(self) -> int:
        return self._capacity if self._capacity is not None else share_bytes(CACHE_SHARE)

    def _keep(self, key: tuple, dataset) -> None:
        size, capacity = dataset_bytes(dataset), self.capacity
        if size > capacity:
            return
        while self._kept and sum(map(dataset_bytes, self._kept.values())) + size > capacity:
            self._kept.popitem(last=False)
        self._kept[key] = dataset

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
