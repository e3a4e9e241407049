"""The workspace on disk: its folder, manifest and writer lock.

Layout (the README's "A workspace on disk"): `workspace.json` (the manifest), `zoo/` (weights and checkpoint
table, core/zoo/model_zoo.py), `ae/<run>/` and `samples/<run>/` (core/store/runs.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from core.errors import ZooError
from core.store.files import read_json, write_json

# 2: one weights tensor per architecture, `architectures` in the manifest, an `architecture` column.
FORMAT_VERSION = 2
MANIFEST = "workspace.json"

# Locks held here, by workspace folder and thread: {(root, thread): (open lock file, depth)}. The lock is re-entrant
# within a thread, so a pipeline can hold it across steps that each take it too; another thread of this process
# opens the lock file anew and is told "busy", like another process.
_held: dict[tuple[Path, int], tuple[object, int]] = {}
_held_guard = threading.Lock()


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def zoo_dir(self) -> Path:
        return self.root / "zoo"

    @property
    def models_table_path(self) -> Path:
        return self.zoo_dir / "models.parquet"

    @property
    def zoo_weights_path(self) -> Path:
        return self.zoo_dir / "weights.safetensors"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def manifest(self) -> dict:
        if not self.root.exists():
            raise ZooError(f"{self.root}: no such workspace")
        manifest = read_json(self.manifest_path)
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ZooError(f"{self.manifest_path}: format version {version!r} is not one this program reads")
        return manifest

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_path, {**manifest, "format_version": FORMAT_VERSION})

    def new_build_dir(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}.build-", dir=self.root))

    @contextlib.contextmanager
    def lock(self, wait_s: float = 0.0) -> Iterator[None]:
        """An exclusive writer lock; a second writer waits up to `wait_s` and is then told who holds it.
        Re-entrant within a thread (a pipeline holds it across its steps)."""
        key = (self.root.resolve(), threading.get_ident())
        with _held_guard:
            if key in _held:
                handle, depth = _held[key]
                _held[key] = (handle, depth + 1)
                nested = True
            else:
                nested = False
        if nested:
            try:
                yield
            finally:
                with _held_guard:
                    handle, depth = _held[key]
                    _held[key] = (handle, depth - 1)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            _acquire(handle, self.root, wait_s)
            with _held_guard:
                _held[key] = (handle, 1)
            try:
                yield
            finally:
                with _held_guard:
                    del _held[key]
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)


def _acquire(handle, root: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise ZooError(f"{root}: busy ({holder} is writing to it); try again when it finishes") from None
            time.sleep(0.2)
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}")
    handle.flush()
