"""Background jobs: results, progress and ETA, stop requests, errors, and one writer per workspace."""

import threading
import time

import pytest

from core.errors import Interrupted, UserError
from ui.jobs import Job, JobRegistry, format_seconds
from ui.widgets import progress_text


def wait(job: Job, timeout: float = 10) -> Job:
    deadline = time.monotonic() + timeout
    while job.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not job.running
    return job


def test_a_job_returns_its_result_and_keeps_its_progress():
    def work(on_progress, should_stop):
        for step in range(1, 4):
            on_progress(step, 3, {"loss": 1.0 / step, "curves": object()})
        return "finished"

    job = wait(JobRegistry().start("ws", "zoo", "Training", work))
    assert job.status == "done" and job.result == "finished" and job.error is None
    assert (job.done, job.total, job.fraction()) == (3, 3, 1.0)
    assert [h["loss"] for h in job.history] == [1.0, 0.5, 1.0 / 3]
    assert "curves" not in job.history[0]  # only plain values go into the history; the latest info keeps all


def test_eta_follows_the_rate_of_the_current_phase(monkeypatch):
    clock = {"t": 100.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["t"])
    job = Job("ws", "zoo", "x")
    job.progress(0, 10, {"phase": "zoo"})
    assert job.eta_seconds() is None
    clock["t"] += 4
    job.progress(2, 10, {"phase": "zoo"})
    assert job.eta_seconds() == pytest.approx(16.0)  # 2 s per step, 8 steps left
    job.progress(0, 5, {"phase": "autoencoder"})  # a new phase starts a new estimate
    assert job.eta_seconds() is None


def test_progress_text_names_the_phase_and_never_shows_an_empty_count(monkeypatch):
    clock = {"t": 100.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["t"])
    job = Job("ws", "generate", "Generating 16 models", started=100.0)
    assert progress_text(job) == "Generating 16 models · starting · 0:00 elapsed"  # not "0/0"
    job.progress(0, 1, {"phase": "map"})
    clock["t"] += 30
    assert progress_text(job) == (
        "Generating 16 models: placing the checkpoints on the map (UMAP) · 0:30 elapsed · one step, running for "
        "0:30, no estimate (not timed on this workspace yet)"
    )
    job.progress(0, 4, {"phase": "fine-tuning"})
    assert progress_text(job).endswith("step 1 of 4 · 0:30 elapsed · estimating the time left after the first step")
    clock["t"] += 5
    job.progress(1, 4, {"phase": "fine-tuning"})
    assert progress_text(job).endswith("step 2 of 4 · 0:35 elapsed · about 0:15 left in this phase")


def test_a_one_step_phase_is_estimated_by_its_last_duration_on_the_workspace(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["t"])
    shared: dict = {}  # what a registry gives all its jobs
    first = Job("ws", "train", "Training", started=0.0, one_step_seconds=shared)
    first.progress(0, 1, {"phase": "map"})
    clock["t"] += 30
    first.progress(0, 1, {"phase": "evaluation"})  # the map took 30 s; evaluation is still running
    assert shared == {("ws", "map"): 30.0}
    second = Job("ws", "train", "Training", started=clock["t"], one_step_seconds=shared)
    second.progress(0, 1, {"phase": "map"})
    clock["t"] += 10
    assert progress_text(second).endswith("one step, about 0:20 left (it took 0:30 last time)")
    clock["t"] += 30
    assert progress_text(second).endswith("one step, running for 0:40, longer than last time (0:30)")
    other = Job("elsewhere", "train", "Training", started=clock["t"], one_step_seconds=shared)
    other.progress(0, 1, {"phase": "map"})
    assert progress_text(other).endswith("no estimate (not timed on this workspace yet)")  # maps of its own


def test_the_registry_remembers_a_finished_jobs_last_one_step_phase():
    registry = JobRegistry()

    def work(on_progress, should_stop):
        on_progress(0, 1, {"phase": "map"})

    job = wait(registry.start("ws", "train", "Training", work))
    assert ("ws", "map") in job.one_step_seconds  # recorded when the job ended in that phase
    assert registry.start("ws", "sample", "Sampling", lambda p, s: None).one_step_seconds is job.one_step_seconds


def test_stop_request_ends_the_job_as_stopped():
    started = threading.Event()

    def work(on_progress, should_stop):
        started.set()
        while not should_stop():
            time.sleep(0.01)
        raise Interrupted("stopped after epoch 2; run again to resume")

    registry = JobRegistry()
    job = registry.start("ws", "ae", "Training", work)
    started.wait(5)
    job.stop_requested = True
    assert wait(job).status == "stopped" and "resume" in job.error


def test_user_errors_and_bugs_become_messages_not_tracebacks():
    registry = JobRegistry()

    def user_mistake(on_progress, should_stop):
        raise UserError("data/x: not a folder")

    def bug(on_progress, should_stop):
        return 1 / 0

    assert wait(registry.start("a", "zoo", "x", user_mistake)).error == "data/x: not a folder"
    job = wait(registry.start("b", "zoo", "x", bug))
    assert job.status == "failed" and "ZeroDivisionError" in job.error and "Traceback" not in job.error


def test_one_running_job_per_workspace():
    release = threading.Event()
    registry = JobRegistry()
    first = registry.start("ws", "zoo", "Training the zoo", lambda p, s: release.wait(5))
    with pytest.raises(UserError, match="busy with 'Training the zoo'"):
        registry.start("ws", "ae", "Training the autoencoder", lambda p, s: None)
    other = wait(registry.start("elsewhere", "ae", "x", lambda p, s: "ok"))  # another workspace is free
    assert registry.running("ws") is first and other.result == "ok"
    release.set()
    wait(first)
    assert registry.running("ws") is None
    assert wait(registry.start("ws", "ae", "again", lambda p, s: 2)).result == 2


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 59.6, 61, 3600)] == ["0:00", "1:00", "1:01", "60:00"]
