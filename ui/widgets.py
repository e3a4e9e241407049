"""Streamlit pieces the pages share: running a job from a button, drawing its progress, turning user errors
into error boxes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from core.errors import UserError
from core.store.workspace import Workspace
from ui import keys, session
from ui.jobs import Job, Work, format_seconds, refresh_every
from ui.texts import app_wording
from ui.timings import Estimate


def or_stop(load: Callable[..., Any], *args, hint: str | None = None) -> Any:
    """`load(*args)`, or an error box (plus an optional hint) and the end of this page's run."""
    try:
        return load(*args)
    except UserError as exc:
        st.error(str(exc))
        if hint:
            st.info(hint)
        st.stop()


def page_start(title: str, caption: str) -> Workspace:
    """The page's title and one-line explanation, and its workspace (or a pointer to the Zoo page and stop)."""
    st.title(title)
    st.caption(caption)
    workspace = session.current()
    if workspace is None:
        st.info("No workspace yet: make one on the Zoo page.")
        st.stop()
    return workspace


def require_zoo_table(workspace: Workspace):
    return or_stop(session.zoo_table, workspace, hint="Generate or import a zoo on the Zoo page first.")


def require_run(workspace: Workspace) -> str:
    """The autoencoder run the pages work with, or a pointer to the Autoencoder page and stop."""
    run = session.chosen_run(workspace)
    if run is None:
        st.info("This workspace has no trained autoencoder yet: train one on the Autoencoder page.")
        st.stop()
    return run


def run_picker(workspace: Workspace, label: str, runs: list[str], chosen: str) -> str:
    """A selectbox over the workspace's finished autoencoder runs that shows and changes the pages' run choice
    (session.chosen_run). Its own state is set from the choice on every run: a widget keeps its value and ignores
    a new default, so a run chosen elsewhere (a training that just finished) would be switched back."""
    picker = session.state(workspace, keys.RUN_PICKER)
    st.session_state[picker] = chosen
    st.selectbox(label, runs, key=picker, on_change=lambda: session.choose_run(workspace, st.session_state[picker]))
    return chosen


def start_generation(workspace: Workspace, run: str, config, label: str) -> Job | None:
    """Start a generation (core/pipeline.py `generate`) from the autoencoder run as the workspace's "generate"
    job, which the Generate page watches; the zoo's error sets are kept for the server's lifetime."""
    zoo_errors = session.zoo_error_sets()

    def work(on_progress, should_stop):
        from core.pipeline import generate  # lazy: the engine loads in the background (session.warm_up)

        return generate(workspace, config, run, session.device(), on_progress, zoo_errors)

    return start(workspace, "generate", label, work)


def ensemble_job(run: str) -> str:
    """The kind of the job that evaluates one samples run as an ensemble: one per run, so that its progress and
    its outcome show under that run alone."""
    return f"ensemble:{run}"


def start_ensembles(workspace: Workspace, run: str, models: int) -> Job | None:
    """Evaluate a finished samples run as an ensemble beside its baselines (core/pipeline.py `ensembles`, which
    writes the figures into the run's record) as a background job; one indivisible step, estimated from its last
    duration for as many models."""

    def work(on_progress, should_stop):
        from core.pipeline import ensembles  # lazy: the engine loads in the background (session.warm_up)

        on_progress(0, 1, {"phase": "ensembles", "points": models})
        result = ensembles(workspace, run, session.device())
        on_progress(1, 1, {"phase": "ensembles", "points": models})
        return result

    return start(workspace, ensemble_job(run), f"Evaluating `{run}` as an ensemble", work)


def start(workspace: Workspace, kind: str, label: str, work: Work) -> Job | None:
    """Start a background job on the workspace, or say why not in an error box."""
    try:
        return session.registry().start(session.key(workspace), kind, label, work)
    except UserError as exc:
        st.error(str(exc))
        return None


# What the engine's phases (info["phase"]) are doing, in the words of the progress bar.
PHASES = {
    "zoo": "training the zoo",
    "training": "training the autoencoder",
    "map": "placing the checkpoints on the map (UMAP)",
    "evaluation": "evaluating reconstructions and probes",
    "preparing": "loading, sampling and decoding",
    "fine-tuning": "evaluating and fine-tuning, epoch by epoch",
    "novelty": "comparing the models' errors with the zoo's",
    "placing": "placing the generated models on the map",
    "ensembles": "every group's models on the test split",
}


def progress_text(job: Job) -> str:
    """The job, its phase, how far the phase is and how long it has left: an estimate only once the phase has
    completed a step (it is the rate seen so far), and a plain statement where a phase is one indivisible step."""
    phase = job.info.get("phase")
    text = job.label + (f": {PHASES.get(phase, phase)}" if phase else "")
    if job.total == 0:
        return f"{text} · starting · {format_seconds(job.elapsed())} elapsed"
    if job.total > 1:
        text += f" · step {min(job.done + 1, job.total)} of {job.total}"
    text += f" · {format_seconds(job.elapsed())} elapsed"
    eta = job.eta_seconds()
    if eta is not None:
        return text + f" · about {format_seconds(eta)} left in this phase"
    if job.total == 1:
        return text + " · one step, " + _one_step_estimate(job)
    return text + " · estimating the time left after the first step"


def _one_step_estimate(job: Job) -> str:
    """A one-step phase has no rate to measure: its last duration on this workspace is the estimate, else the
    same phase on another workspace beside it, scaled by the number of points (ui/timings.py), saying so."""
    running, estimate = job.phase_elapsed(), job.one_step_estimate()
    if estimate is None:
        return f"running for {format_seconds(running)}, no estimate (not timed on this workspace yet)"
    basis = _basis(estimate, job.info.get("points"))
    if running <= estimate.seconds:
        return f"about {format_seconds(estimate.seconds - running)} left ({basis})"
    return f"running for {format_seconds(running)}, longer than estimated ({basis})"


def _basis(estimate: Estimate, points: int | None) -> str:
    """Where an estimate comes from, in words."""
    took = format_seconds(estimate.took)
    if estimate.source is not None:
        return (
            f"an estimate from workspace '{estimate.source}': {took} for {estimate.points:,} points there, "
            f"{points:,} here"
        )
    if estimate.scaled:
        return f"it took {took} last time, for {estimate.points:,} points; {points:,} now"
    return f"it took {took} last time"


def watch(
    workspace: Workspace, kind: str, live: Callable[[Job], None] | None = None, stoppable: bool = True
) -> tuple[Job | None, bool]:
    """Draw the workspace's `kind` job: a progress bar with ETA, `live(job)` (e.g. partial curves) and a stop
    button while it runs; when it ends, rerun the whole page once so it shows the new data; after that, its
    outcome (the caller shows a successful result).

    While it runs only this panel redraws (a fragment), less often as the job gets longer (ui/jobs.py REFRESH):
    a fragment's interval is fixed when the page draws it, so the panel reruns the page once when the interval
    should change.

    Returns the job and whether it was running when this page run looked: the thread may finish at any moment,
    so the page decides what else to draw from that one reading, never from a second look."""
    registry = session.registry()
    job = registry.get(session.key(workspace), kind)
    if job is None:
        return None, False
    was_running = job.running
    seen = keys.job_seen_running(session.key(workspace), kind)
    every = refresh_every(job.elapsed()) if was_running else None

    @st.fragment(run_every=every)
    def panel() -> None:
        current = registry.get(session.key(workspace), kind)
        if current is None:
            return
        if current.running:
            if every is not None and refresh_every(current.elapsed()) != every:
                st.rerun()  # the page draws the panel again at the new interval
            st.session_state[seen] = True
            st.progress(current.fraction(), text=progress_text(current))
            if live:
                live(current)
            if stoppable and st.button(
                "Stop", key=keys.stop_button(kind), help="stops after the current epoch; starting again resumes"
            ):
                current.stop_requested = True
                st.toast("Stopping after the current epoch...")
        elif st.session_state.pop(seen, False) or was_running:
            st.rerun()
        elif current.status == "failed":
            st.error(current.error)
        elif current.status == "stopped":
            st.warning(f"{current.label}: {app_wording(current.error)}")

    panel()
    return job, was_running
