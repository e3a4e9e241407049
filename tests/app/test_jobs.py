"""Background jobs: results, progress and ETA, stop requests, errors, and one writer per workspace."""

import errno
import json
import threading
import time

import pytest

from core.errors import Interrupted, UserError
from ui.jobs import Job, JobRegistry, format_seconds, refresh_every
from ui.timings import FILE, MAX_BYTES, MAX_WORKSPACES, Estimate, PhaseTimes
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
    shared = PhaseTimes()  # what a registry gives all its jobs
    first = Job("root/ws", "train", "Training", started=0.0, timings=shared)
    first.progress(0, 1, {"phase": "map"})
    clock["t"] += 30
    first.progress(0, 1, {"phase": "evaluation"})  # the map took 30 s; evaluation is still running
    assert shared.estimate("root/ws", "map", None) == Estimate(30.0, 30.0)
    assert shared.estimate("root/ws", "evaluation", None) is None
    second = Job("root/ws", "train", "Training", started=clock["t"], timings=shared)
    second.progress(0, 1, {"phase": "map"})
    clock["t"] += 10
    assert progress_text(second).endswith("one step, about 0:20 left (it took 0:30 last time)")
    clock["t"] += 30
    assert progress_text(second).endswith("one step, running for 0:40, longer than estimated (it took 0:30 last time)")
    other = Job("root/elsewhere", "train", "Training", started=clock["t"], timings=shared)
    other.progress(0, 1, {"phase": "map"})  # no points known: another workspace's map says nothing
    assert progress_text(other).endswith("no estimate (not timed on this workspace yet)")


def _timed(timings: PhaseTimes, workspace: str, phase: str, seconds: float, points: int | None) -> None:
    """One job on `workspace` whose one-step `phase` of `points` points took `seconds` (a stepped clock)."""
    clock = {"t": 0.0}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "monotonic", lambda: clock["t"])
        job = Job(workspace, "train", "Training", started=0.0, timings=timings)
        job.progress(0, 1, {"phase": phase, "points": points})
        clock["t"] += seconds
        job.progress(1, 1, {"phase": phase, "points": points})
        job.end_phase()


def test_phase_durations_survive_a_restart_in_a_file_beside_the_workspaces(tmp_path, monkeypatch):
    _timed(PhaseTimes(on_disk=True), str(tmp_path / "digits"), "map", 30, 200)
    assert (tmp_path / FILE).exists() and not (tmp_path / "digits").exists()  # beside, not inside, the workspace
    restarted = PhaseTimes(on_disk=True)  # a new server reads it back
    assert restarted.estimate(str(tmp_path / "digits"), "map", 200) == Estimate(30.0, 30.0, 200)
    assert PhaseTimes().estimate(str(tmp_path / "digits"), "map", 200) is None  # memory only: nothing read
    monkeypatch.setattr(time, "monotonic", lambda: 0.0)
    job = Job(str(tmp_path / "digits"), "train", "Training", started=0.0, timings=restarted)
    job.progress(0, 1, {"phase": "map", "points": 400})  # the zoo has grown: the estimate grows with it
    assert progress_text(job).endswith("about 1:00 left (it took 0:30 last time, for 200 points; 400 now)")


def test_a_first_phase_is_estimated_from_the_nearest_other_workspace_scaled_by_its_points(tmp_path):
    timings = PhaseTimes(on_disk=True)
    _timed(timings, str(tmp_path / "small"), "map", 10, 100)
    _timed(timings, str(tmp_path / "large"), "map", 80, 1000)
    _timed(timings, str(tmp_path / "large"), "preparing", 5, None)
    new = str(tmp_path / "new")
    assert timings.estimate(new, "map", 800) == Estimate(64.0, 80.0, 1000, "large")  # 1000 is nearer than 100
    assert timings.estimate(new, "map", 150) == Estimate(15.0, 10.0, 100, "small")
    assert timings.estimate(new, "map", None) is None  # how many points now is unknown: no scale
    assert timings.estimate(new, "preparing", 50) is None  # no points measured there: nothing to scale
    job = Job(new, "train", "Training", timings=timings)
    job.progress(0, 1, {"phase": "map", "points": 150})
    assert "(an estimate from workspace 'small': 0:10 for 100 points there, 150 here)" in progress_text(job)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[1, 2]",
        b'{"digits": {"map": {"seconds": -5, "points": 10, "recorded": 1}}}',
        b'{"digits": {"map": {"seconds": "30", "points": 10, "recorded": 1}}}',
        b'{"digits": {"map": {"seconds": 30, "points": true, "recorded": 1}}}',
        b'{"digits": "map"}',
        b"\xff\xfe",
        b" " * (MAX_BYTES + 1),
    ],
)
def test_a_corrupt_timings_file_is_ignored_and_replaced(tmp_path, content):
    (tmp_path / FILE).write_bytes(content)
    timings = PhaseTimes(on_disk=True)
    assert timings.estimate(str(tmp_path / "digits"), "map", 10) is None  # no crash, no estimate
    _timed(timings, str(tmp_path / "digits"), "map", 30, 10)
    assert PhaseTimes(on_disk=True).estimate(str(tmp_path / "digits"), "map", 10) == Estimate(30.0, 30.0, 10)


def test_a_good_entry_beside_a_bad_one_is_kept_and_the_file_stays_bounded(tmp_path):
    good = {"seconds": 12, "points": 50, "recorded": 1.0}
    (tmp_path / FILE).write_text(json.dumps({"a": {"map": good, "evaluation": {"seconds": None}}}))
    timings = PhaseTimes(on_disk=True)
    assert timings.estimate(str(tmp_path / "a"), "map", 50) == Estimate(12.0, 12.0, 50)
    assert timings.estimate(str(tmp_path / "a"), "evaluation", 50) is None
    for i in range(MAX_WORKSPACES + 5):
        _timed(timings, str(tmp_path / f"ws{i}"), "map", 1, 10)
    kept = json.loads((tmp_path / FILE).read_text())
    assert len(kept) == MAX_WORKSPACES and "ws0" not in kept and f"ws{MAX_WORKSPACES + 4}" in kept


def test_the_registry_remembers_a_finished_jobs_last_one_step_phase():
    registry = JobRegistry()

    def work(on_progress, should_stop):
        on_progress(0, 1, {"phase": "map"})

    job = wait(registry.start("root/ws", "train", "Training", work))
    assert job.timings.estimate("root/ws", "map", None) is not None  # recorded when the job ended in that phase
    assert registry.start("root/ws", "sample", "Sampling", lambda p, s: None).timings is job.timings

    def fails(on_progress, should_stop):
        on_progress(0, 1, {"phase": "evaluation"})
        raise UserError("broken")

    wait(registry.start("root/ws", "train", "Training", fails))
    assert job.timings.estimate("root/ws", "evaluation", None) is None  # a phase cut short is no measure


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


def test_a_watched_job_is_redrawn_less_often_as_it_gets_longer():
    seconds = [0, 9.9, 10, 59.9, 60, 3600]
    assert [refresh_every(s) for s in seconds] == [1.0, 1.0, 2.0, 2.0, 5.0, 5.0]


def test_an_os_error_in_a_job_is_one_line_naming_the_path_and_a_folder_it_made_goes(tmp_path):
    def full_disk(folder):
        def work(on_progress, should_stop):
            folder.mkdir(exist_ok=True)
            (folder / ".lock").write_text("")
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "zoo" / "weights.safetensors"))

        return work

    new = tmp_path / "new"
    job = wait(JobRegistry().start(str(new), "zoo", "Training", full_disk(new)))
    assert job.status == "failed" and "\n" not in job.error
    assert job.error.startswith(f"{new}/zoo/weights.safetensors: No space left on device (the disk is full")
    assert not new.exists()  # the job made it and left only its lock
    kept = tmp_path / "kept"
    kept.mkdir()
    job = wait(JobRegistry().start(str(kept), "zoo", "Training", full_disk(kept)))
    assert job.status == "failed" and kept.exists()  # it was there before the job
