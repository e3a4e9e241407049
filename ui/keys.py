"""Every key the app keeps in `st.session_state`, in one place: the pages share several, and a typo in a literal
would silently start a second, empty state."""

from __future__ import annotations

# Widgets whose value is read elsewhere.
WORKSPACE = "workspace"  # the sidebar's workspace picker
MAP = "map"  # the Explore page's chart (its selection)
MAP_COLOUR = "map-colour"
PATH = "latent-path"  # Explore: (run, ends, accuracies) of the latent path shown
PATH_CHART = "latent-path-chart"
PATH_T = "latent-path-t"  # Explore: the point of the latent path to decode
PATH_TO = "latent-path-to"  # Explore: the generated model (RUN:I) a path from one checkpoint runs to
ZOOM = "map-zoom"  # Explore: the map shows the selection alone, re-projected
AE_KIND = "ae-kind"
ZOO_NAME = "zoo-name"
ZOO_PAGE = "zoo-page"  # Zoo: the page of the checkpoint table shown
IMPORT_NAME = "import-name"
LIVE_CURVES = "live-curves"
LIVE_LOSSES = "live-losses"
COMPARE_RUNS = "compare-runs"
COMPARE_CURVES = "compare-curves"
COMPARE_NOVELTY = "compare-novelty"

# State the pages hand to each other.
SWITCH_WORKSPACE = "switch-workspace"  # set by a page, applied by the picker before it is drawn
ANCHOR_SOURCE = "anchor-source"  # Generate: where the anchors come from
SAMPLES_RUN = "samples-run"  # Generate: the samples run shown
EXPORT_RUN = "export-run"  # Export: the samples run to bundle
ZOO_TARGET = "zoo-target"  # Zoo: the workspace a zoo job is filling
AE_JOB_APPLIED = "ae-job-applied"  # Autoencoder: the finished job whose run was selected once
GENERATE_JOB_SEEN = "generate-job-seen"  # Generate: the finished job whose run was shown once
RESULTS_FIRST = "results-first"  # Generate: a job just finished, so its results go above the form


def chosen_run(workspace_name: str) -> str:
    """The autoencoder run the user picked for a workspace."""
    return f"run:{workspace_name}"


def selection(workspace_name: str, run: str) -> str:
    """The checkpoints selected on a run's map."""
    return f"selection:{workspace_name}:{run}"


def job_seen_running(workspace_root: str, kind: str) -> str:
    """Whether this session saw a job of this kind running (to rerun the page once when it ends)."""
    return f"running:{workspace_root}:{kind}"


def stop_button(kind: str) -> str:
    return f"stop:{kind}"
