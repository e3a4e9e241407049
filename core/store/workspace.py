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
import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from core.errors import UserError, ZooError
from core.names import checked_path_text
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
LOCK = ".lock"
# The holder's record at the start of the lock file: "process <pid>", padded to this width.
_HOLDER_WIDTH = 32

# Locks held here, by workspace folder and thread: {(root, thread): (open lock file, depth)}. The lock is re-entrant
# within a thread, so a pipeline can hold it across steps that each take it too; another thread of this process
# opens the lock file anew and is told "busy", like another process.
_held: dict[tuple[Path, int], tuple[int, int]] = {}
_held_guard = threading.Lock()


class Workspace:
    def __init__(self, root: str | Path):
        if not str(root).strip():
            raise UserError("no workspace folder given (an empty name)")
        self.root = Path(checked_path_text(str(root), "workspace folder")).expanduser()
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
        fd = _open_lock(self.root / LOCK)
        try:
            _acquire(fd, self.root, wait_s)
            with _held_guard:
                _held[key] = (fd, 1)
            try:
                _finish_interrupted_writes(self.root)
                yield
            finally:
                with _held_guard:
                    del _held[key]
        finally:
            os.close(fd)  # releases the lock


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


def _open_lock(path: Path) -> int:
    """The lock file's descriptor. A copied or unpacked workspace is untrusted: its `.lock` could be a link to
    any file, a hard link to one, a FIFO (an open would block) or a device. The file is opened without following
    a link and without blocking, and then must be a regular file with one name; it is never truncated."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    remedy = "a workspace's lock is a plain file it makes itself: remove this one and try again"
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        problem = {errno.ELOOP: "is a symbolic link", errno.EISDIR: "is a folder"}.get(exc.errno)
        if problem:
            raise ZooError(f"{path}: {problem}; {remedy}") from None
        raise ZooError(f"{path}: cannot be opened for writing ({exc.strerror}); is the workspace writable?") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file (a FIFO, device or socket)"
    elif info.st_nlink != 1:
        problem = f"has {info.st_nlink} names (hard links), so writing it would change another file"
    if problem:
        os.close(fd)
        raise ZooError(f"{path}: {problem}; {remedy}")
    return fd


def _acquire(fd: int, root: Path, wait_s: float) -> None:
    """flock the lock file, then write who holds it over its first bytes (a fixed width: never truncated)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise ZooError(f"{root}: busy ({_holder(fd)} is writing to it); try again when it finishes") from None
            time.sleep(0.2)
    os.pwrite(fd, f"process {os.getpid()}".ljust(_HOLDER_WIDTH).encode(), 0)


def _holder(fd: int) -> str:
    text = os.pread(fd, _HOLDER_WIDTH, 0).decode(errors="replace").strip()
    return text if re.fullmatch(r"process \d+", text) else "another process"
