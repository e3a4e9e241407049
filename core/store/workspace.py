"""The workspace on disk: its folder, manifest and writer lock, and the stamp that ties runs to their zoo.

Layout (the README's "A workspace on disk"): `workspace.json` (the manifest), `zoo/` (weights in `zoo/shards/`
and the checkpoint table, core/zoo/model_zoo.py), `ae/<run>/` and `samples/<run>/` (core/store/runs.py).

A new zoo is written to a hidden folder holding its weights, its table and the new manifest, swapped in for
`zoo/` (two renames), and then the manifest is moved into place. Readers never repair: between the two renames
they read the old folder (`zoo.old`), and until the manifest is moved they read the new folder's copy, so they
always see a zoo and the manifest that describes it. The next writer to take the lock finishes or undoes
whatever a crash left (`_finish_interrupted_writes`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from core.errors import UserError, ZooError
from core.store.files import give_umask_mode, read_json, recover_dir

# 2: one weights tensor per architecture, `architectures` in the manifest, an `architecture` column.
FORMAT_VERSION = 2
MANIFEST = "workspace.json"
ZOO = "zoo"
# The zoo's weights: a shard set (core/store/shards.py) in this folder of zoo/, with its manifest.
SHARDS = "shards"
SHARD_SET_MANIFEST = "manifest.json"
# The manifest of a zoo being written, inside its folder until the swap is done (hidden: never packed).
PENDING_MANIFEST = ".workspace.json.pending"

# Locks held here, by workspace folder and thread: {(root, thread): (open lock file, depth)}. The lock is re-entrant
# within a thread, so a pipeline can hold it across steps that each take it too; another thread of this process
# opens the lock file anew and is told "busy", like another process.
_held: dict[tuple[Path, int], tuple[object, int]] = {}
_held_guard = threading.Lock()


class Workspace:
    def __init__(self, root: str | Path):
        if not str(root).strip():
            raise UserError("no workspace folder given (an empty name)")
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise ZooError(f"{self.root}: not a folder; a workspace is a folder")

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def zoo_dir(self) -> Path:
        """The zoo's folder: `zoo/`, or while a swap is under way (or was cut short), the old one, still whole."""
        zoo, old = self.root / ZOO, self.root / f"{ZOO}.old"
        return old if not zoo.exists() and old.exists() else zoo

    def _manifest_to_read(self) -> Path:
        pending = self.root / ZOO / PENDING_MANIFEST
        return pending if pending.exists() else self.manifest_path

    @property
    def models_table_path(self) -> Path:
        return self.zoo_dir / "models.parquet"

    @property
    def zoo_weights_path(self) -> Path:
        """The file that names the zoo's weights: the shard set's manifest (replaced whenever the weights change),
        or, in a workspace written before shards, the single `weights.safetensors`."""
        shards = self.zoo_dir / SHARDS / SHARD_SET_MANIFEST
        legacy = self.zoo_dir / "weights.safetensors"
        return legacy if legacy.exists() and not shards.exists() else shards

    def exists(self) -> bool:
        return self._manifest_to_read().exists()

    def manifest(self) -> dict:
        if not self.root.exists():
            raise ZooError(f"{self.root}: no such workspace")
        path = self._manifest_to_read()
        manifest = read_json(path)
        version = manifest.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
            raise ZooError(f"{path}: format version {version!r} is not one this program reads")
        _check_sections(manifest, path)
        return manifest

    def has_zoo(self) -> bool:
        """Whether a zoo was written here (a manifest naming its architectures)."""
        if not self.exists():
            return False
        manifest = self.manifest()
        return "architectures" in manifest or "architecture" in manifest

    def zoo_stamp(self) -> dict:
        """What identifies the workspace's zoo ({} without a manifest); runs made from it store the same (see
        core/store/runs.py)."""
        return zoo_stamp(self.manifest()) if self.exists() else {}

    def new_build_dir(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{name}.build-", dir=self.root))
        give_umask_mode(build)
        return build

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
                _finish_interrupted_writes(self.root)
                yield
            finally:
                with _held_guard:
                    del _held[key]
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)


def _check_sections(manifest: dict, path: Path) -> None:
    """The parts of a manifest that readers index: `dataset` {name, seed} and `zoo` {id, created}."""
    dataset, zoo = manifest.get("dataset", {}), manifest.get("zoo", {})
    if not isinstance(dataset, dict) or not isinstance(zoo, dict):
        raise ZooError(f"{path}: 'dataset' and 'zoo' must be JSON objects")
    seed = dataset.get("seed", 0)
    if not isinstance(dataset.get("name", ""), str) or not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ZooError(f"{path}: 'dataset' must hold a name (text) and a seed (an integer >= 0)")
    if not all(isinstance(zoo.get(k, ""), str) for k in ("id", "created")):
        raise ZooError(f"{path}: the zoo's 'id' and 'created' must be text")


def checked_output(out: str | Path) -> Path:
    """A file path to write a zip to: not empty, not a folder, and outside every workspace (a pack or a bundle
    written over a workspace's file would destroy it; written anywhere inside one, it would be packed with it).
    Links are resolved before the check."""
    text = str(out)
    if not text.strip():
        raise UserError("--out is empty: name the zip file to write")
    path = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise UserError(f"{path}: is a folder; name the zip file to write")
    resolved = path.resolve()
    for folder in resolved.parents:
        if (folder / MANIFEST).exists() or (folder / ZOO / PENDING_MANIFEST).exists():
            raise UserError(f"{path}: inside the workspace {folder}; write it outside any workspace")
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{path}: {folder} is a file, not a folder")
    return path


def versioned(manifest: dict) -> dict:
    return {**manifest, "format_version": FORMAT_VERSION}


def zoo_stamp(manifest: dict) -> dict:
    """{zoo_id, zoo_created} of the zoo a manifest describes. Every zoo written gets a fresh id (zoos from
    before ids existed have only their creation time)."""
    zoo = manifest.get("zoo", {})
    return {"zoo_id": zoo.get("id"), "zoo_created": zoo.get("created")}


def _finish_interrupted_writes(root: Path) -> None:
    """Run by each writer as it takes the lock: complete or undo what a crashed writer left. A zoo swap cut
    between its renames goes back to the old zoo; a swapped zoo gets its manifest; build folders and the
    temporary files of the zoo's writes go (only those: samples and evaluations are written without the lock,
    and their temporary files, hidden and never read, may belong to a write under way)."""
    zoo, old = root / ZOO, root / f"{ZOO}.old"
    recover_dir(zoo)
    if zoo.exists() and old.exists():
        shutil.rmtree(old)
    if (zoo / PENDING_MANIFEST).exists():
        os.replace(zoo / PENDING_MANIFEST, root / MANIFEST)
    for build in root.glob(".*.build-*"):
        shutil.rmtree(build, ignore_errors=True)
    for folder in (root, zoo, root / f"{ZOO}.partial"):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


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
