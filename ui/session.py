"""Which workspace the user is on, and cached reads of it.

Caches are `st.cache_resource` (no copy per hit: zoos and models are big and read-only here) keyed by the
workspace, the run, and the modification time of the file that changes when the data does, so a new zoo or
a finished run is picked up without a manual refresh.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path

import polars as pl
import streamlit as st

from core.default import NAME as DEFAULT_NAME
from core.errors import ZooError
from core.names import checked_name
from core.runtime import resolve_device
from core.store.runs import AERunFiles, SamplesRun, finished_ae_runs
from core.store.workspace import Workspace
from core.zoo.table import read_checkpoint_table
from ui import keys
from ui.jobs import JobRegistry
from ui.timings import PhaseTimes

log = logging.getLogger(__name__)

ROOT_ENV = "HYPERREP_WORKSPACES"
APP_DIR = Path(__file__).resolve().parent.parent


def workspaces_root() -> Path:
    """Where the app keeps its workspaces: $HYPERREP_WORKSPACES, or `workspaces/` beside app.py."""
    return Path(os.environ.get(ROOT_ENV) or APP_DIR / "workspaces").expanduser().resolve()


@st.cache_resource(show_spinner=False)
def registry() -> JobRegistry:
    """The server's jobs; their one-step phase durations are kept beside the workspaces (ui/timings.py)."""
    return JobRegistry(PhaseTimes(on_disk=True))


@functools.cache
def device() -> str:
    """Where jobs compute: the GPU when torch sees one. Imports torch (once), so jobs call it, not the pages."""
    return resolve_device("auto")


@st.cache_resource(show_spinner=False)
def warm_up() -> dict:
    """Import the engine (torch, scikit-learn) in a background thread at the first page view.

    The first page (the map) needs none of it, so it draws ~1.5 s sooner, and by the time the user asks for
    a generation the imports are done. Returns a dict that holds "device" once known."""
    state: dict = {}

    def work() -> None:
        state["device"] = device()
        import core.pipeline  # noqa: F401  (lazy on purpose: this thread imports the engine)

    threading.Thread(target=work, name="warm-up", daemon=True).start()
    return state


_ERROR_SETS_LOCK = threading.Lock()


def zoo_error_sets():
    """The zoos' error sets (core/gen/novelty.py), one per server process: generations reuse them. It imports the
    engine (torch, scikit-learn: 4.5 s of a first page's 6.7 s when a page called it), so only jobs and background
    threads call it; a plain cache with a lock, because a background thread has no script context for
    `st.cache_resource`."""
    with _ERROR_SETS_LOCK:
        return _error_sets()


@functools.cache
def _error_sets():
    from core.gen.novelty import ZooErrorSets  # lazy: the engine imports torch; the first page needs none

    return ZooErrorSets()


@st.cache_resource(max_entries=8, show_spinner=False)  # starts a thread; Streamlit's own spinner named it
def _zoo_errors_started(root: str, stamp: int) -> threading.Thread:
    """The background computation of one zoo's error sets (`stamp`: its weight file's time): started once per zoo
    and server, however many tabs open the workspace. Everything that imports the engine happens in the thread."""

    def work() -> None:
        from core.pipeline import precompute_zoo_errors  # lazy: the engine imports torch; the first page needs none

        try:
            precompute_zoo_errors(Workspace(root), zoo_error_sets())
        except Exception as exc:  # a hint only: the generation computes them itself, and reports what is wrong
            log.warning("could not compute the error sets of %s ahead: %s", root, exc)

    thread = threading.Thread(target=work, name="zoo-errors", daemon=True)
    thread.start()
    return thread


def precompute_zoo_errors(workspace: Workspace) -> threading.Thread | None:
    """Start computing the zoo's error sets (for novelty) in the background when a workspace is opened, so the
    first generation does not wait for them (a few seconds on 2 cores); None when it has no zoo."""
    if not workspace.zoo_weights_path.exists():
        return None
    return _zoo_errors_started(key(workspace), _mtime(workspace.zoo_weights_path))


def workspace_names(root: Path) -> list[str]:
    if not root.exists():
        return []
    names = sorted(p.name for p in root.iterdir() if (p / "workspace.json").exists() and not p.name.startswith("."))
    return sorted(names, key=lambda n: n != DEFAULT_NAME)


def valid_workspace_name(name: str) -> str:
    """The name typed, without the spaces around it, if it may name a workspace folder (core/names.py, the rule
    the command line applies to run names)."""
    return checked_name(name.strip(), "workspace name")


def pick_workspace(names: list[str], asked: str | None, kept: str | None) -> str | None:
    """The workspace to open: the URL's (a reload, a bookmark, a shared link, or an in-page navigation that carried
    it), else the one this session is on, else the first (the default). A name that is not there is passed over."""
    return next((name for name in (asked, kept) if name in names), names[0] if names else None)


def open_workspace(name: str | None) -> None:
    """Make `name` the session's workspace and the URL's, so that a reload opens it again."""
    st.session_state[keys.WORKSPACE] = name
    if name is None:
        st.query_params.pop(keys.WORKSPACE_PARAM, None)
    elif st.query_params.get(keys.WORKSPACE_PARAM) != name:
        st.query_params[keys.WORKSPACE_PARAM] = name


def switch_page(page: str) -> None:
    """`st.switch_page` that keeps the workspace: a page switch clears the query string unless told what to set."""
    name = st.session_state.get(keys.WORKSPACE)
    st.switch_page(page, query_params={keys.WORKSPACE_PARAM: name} if name else None)


def current() -> Workspace | None:
    name = st.session_state.get(keys.WORKSPACE)
    return Workspace(workspaces_root() / name) if name else None


def key(workspace: Workspace) -> str:
    return str(workspace.root)


def workspace_id(workspace: Workspace) -> str:
    """What the session state of a workspace is kept under: its folder's name and its zoo's stamp, so that neither
    another workspace (whose runs may have the same names) nor a new zoo in the same folder inherits it."""
    return f"{workspace.root.name}@{_zoo_stamp(key(workspace), _mtime(workspace.manifest_path))}"


@functools.lru_cache(maxsize=64)
def _zoo_stamp(root: str, stamp: int) -> str:
    """The zoo's id (its creation time for zoos from before ids), read once per manifest version."""
    zoo = Workspace(root).zoo_stamp()
    return str(zoo.get("zoo_id") or zoo.get("zoo_created") or "no-zoo")


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


@st.cache_resource(max_entries=8, show_spinner="Loading the zoo...")
def _zoos(root: str, stamp: int):
    from core.zoo.model_zoo import load_zoos  # lazy: loading weights imports torch; the first page needs none

    return load_zoos(Workspace(root))


def zoos(workspace: Workspace):
    """The workspace's zoo, one per architecture (raises ZooError when it has none or it is broken)."""
    return _zoos(key(workspace), _mtime(workspace.zoo_weights_path))


@st.cache_resource(max_entries=8, show_spinner="Reading the checkpoint table...")
def _table(root: str, stamp: int):
    workspace = Workspace(root)
    table = read_checkpoint_table(workspace.models_table_path)
    if "architecture" not in table.columns:  # format 1: one architecture, named in the manifest
        name = workspace.manifest().get("architecture", {}).get("name", "?")
        table = table.with_columns(pl.lit(name).alias("architecture"))
    return table


def zoo_table(workspace: Workspace):
    """The zoo's checkpoint table alone (models.parquet), for pages that need no weights."""
    return _table(key(workspace), _mtime(workspace.models_table_path))


def finished_runs(workspace: Workspace) -> list[str]:
    """Finished autoencoder runs, newest first."""
    return finished_ae_runs(workspace)[::-1]


@st.cache_resource(max_entries=8, show_spinner="Loading the autoencoder...")
def _run(root: str, name: str, stamp: int):
    from core.rep.run import load_run  # lazy: loading a model imports torch; the first page needs none

    return load_run(Workspace(root), name)


def ae_run(workspace: Workspace, name: str):
    return _run(key(workspace), name, _mtime(AERunFiles.of(workspace, name).config))


@st.cache_resource(max_entries=8, show_spinner="Reading the map...")
def _embeddings(root: str, name: str, stamp: int, zoo_stamp: int) -> pl.DataFrame:
    workspace = Workspace(root)
    files = AERunFiles.of(workspace, name)
    files.check_zoo(workspace.zoo_stamp())
    return files.read_map()


def embeddings(workspace: Workspace, run: str) -> pl.DataFrame:
    """The run's map, refused if the run was made from another zoo than the workspace's."""
    path = AERunFiles.of(workspace, run).embeddings
    if not path.exists():
        raise ZooError(f"{path}: the run has no map yet")
    return _embeddings(key(workspace), run, _mtime(path), _mtime(workspace.manifest_path))


def chosen_run(workspace: Workspace, runs: list[str] | None = None) -> str | None:
    """The autoencoder run the pages work with: the user's choice if still there, else the newest finished. A page
    that already listed the finished runs passes its list (a run may finish in between)."""
    runs = finished_runs(workspace) if runs is None else runs
    wanted = st.session_state.get(keys.chosen_run(workspace_id(workspace)))
    return wanted if wanted in runs else (runs[0] if runs else None)


def choose_run(workspace: Workspace, name: str) -> None:
    st.session_state[keys.chosen_run(workspace_id(workspace))] = name


def samples_runs(workspace: Workspace, ae_run_name: str | None = None) -> list[SamplesRun]:
    """Finished samples runs, newest first; only those of `ae_run_name` if given."""
    return SamplesRun.list(workspace, ae_run_name)


def samples_points(workspace: Workspace, ae_run_name: str) -> pl.DataFrame | None:
    """Map positions of every generated model of the run's samples runs (for the map overlay)."""
    tables = [
        run.samples_table().with_columns(pl.lit(run.name).alias("samples_run"))
        for run in samples_runs(workspace, ae_run_name)
    ]
    return pl.concat(tables, how="diagonal_relaxed") if tables else None


def selection(workspace: Workspace, run: str) -> list[int]:
    return st.session_state.get(keys.selection(workspace_id(workspace), run), [])


def state(workspace: Workspace, name: str) -> str:
    """The session-state key of `name` (one of keys.py's workspace-scoped names) on this workspace."""
    return keys.scoped(name, workspace_id(workspace))
