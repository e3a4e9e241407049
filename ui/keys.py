"""Every key the app keeps in `st.session_state`, in one place: the pages share several, and a typo in a literal
would silently start a second, empty state.

The workspace is the root of all page state: everything a user chose or built on one workspace (selection,
latent path, run choice, form settings) lives under a key that holds the workspace's id (`session.workspace_id`:
its folder's name and its zoo's stamp). Two workspaces, or one whose zoo was replaced, never see each other's
state, even where their autoencoder runs have the same name (runs are named by their settings)."""

from __future__ import annotations

# The workspace the user is on: a plain key of its own, which pages and the picker set and read. The sidebar's
# widget has another key (WORKSPACE_PICKER): Streamlit drops a widget's state on some page changes, and the choice
# must never go with it.
WORKSPACE = "workspace"
WORKSPACE_PICKER = "workspace-picker"
WORKSPACE_PARAM = "ws"  # the URL's query-string parameter: a reload, a bookmark or a shared link opens the same one

# Widgets whose value is read elsewhere, or state shared by every workspace.
MAP_COLOUR = "map-colour"  # a way of looking, the same on every workspace
PATH_CHART = "latent-path-chart"
ZOO_NAME = "zoo-name"
ZOO_PAGE = "zoo-page"  # Zoo: the page of the checkpoint table shown
IMPORT_NAME = "import-name"
LIVE_CURVES = "live-curves"
LIVE_LOSSES = "live-losses"
COMPARE_CURVES = "compare-curves"
COMPARE_NOVELTY = "compare-novelty"
ZOO_TARGET = "zoo-target"  # Zoo: the workspace a zoo job is filling (a name: the zoo is not there yet)

# State of one workspace: names for `scoped`.
MAP = "map"  # Explore: the chart (its selection, copied into `selection`)
AE_KIND = "ae-kind"  # Autoencoder: the kind to train
AE_OBJECTIVE = "ae-objective"  # Autoencoder: what the run to train is for (its contrastive weight)
COMPARE_RUNS = "compare-runs"  # Generate: the samples runs compared
PATH = "latent-path"  # Explore: (run, ends, accuracies) of the latent path shown
PATH_T = "latent-path-t"  # Explore: the point of the latent path to decode
PATH_TO = "latent-path-to"  # Explore: the generated model (RUN:I) a path from one checkpoint runs to
ZOOM = "map-zoom"  # Explore: the map shows the selection alone, re-projected
RUN_PICKER = "run-picker"  # Explore, Autoencoder: the run selectbox (its value is copied to `chosen_run`)
ANCHOR_SOURCE = "anchor-source"  # Generate: where the anchors come from
SAMPLES_RUN = "samples-run"  # Generate: the samples run shown
EXPORT_RUN = "export-run"  # Export: the samples run to bundle
AE_JOB_APPLIED = "ae-job-applied"  # Autoencoder: the finished job whose run was selected once
GENERATE_JOB_SEEN = "generate-job-seen"  # Generate: the finished job whose run was shown once
RESULTS_FIRST = "results-first"  # Generate: a job just finished, so its results go above the form
FORM = "form"  # a page's settings form (st.form's key: it scopes every widget inside it)


def scoped(name: str, workspace_id: str) -> str:
    """The key of `name` on one workspace."""
    return f"{name}:{workspace_id}"


def chosen_run(workspace_id: str) -> str:
    """The autoencoder run the user picked for a workspace."""
    return scoped("run", workspace_id)


def selection(workspace_id: str, run: str) -> str:
    """The checkpoints selected on a run's map."""
    return f"selection:{workspace_id}:{run}"


def form(workspace_id: str, name: str) -> str:
    """A settings form of one workspace: its widgets keep their values per workspace."""
    return f"{FORM}:{name}:{workspace_id}"


def picked(selection_key: str) -> str:
    """Explore's pick list of checkpoints by model and epoch, beside the map's selection that it sets."""
    return f"pick:{selection_key}"


def job_seen_running(workspace_root: str, kind: str) -> str:
    """Whether this session saw a job of this kind running (to rerun the page once when it ends)."""
    return f"running:{workspace_root}:{kind}"


def stop_button(kind: str) -> str:
    return f"stop:{kind}"
