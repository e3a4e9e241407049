"""Long work (zoo generation, autoencoder training, sampling) in background threads that outlive reruns.

Streamlit reruns the page script on every interaction, so work started from a button must not live in the
script. A Job runs a core function in a thread and keeps its progress in plain attributes; pages draw it from
an `st.fragment(run_every=...)`. The registry is process-wide (one per server), keyed by workspace: a second
browser tab on the same workspace finds the running job and watches it instead of starting a competing writer
(the workspace's file lock then guards against the CLI and other processes).

Streamlit calls are not thread-safe, so the thread never touches `st`.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import Interrupted, UserError, os_error_message
from core.store.leftovers import may_exist, remove_unused_workspace
from ui.timings import Estimate, PhaseTimes

log = logging.getLogger(__name__)

Work = Callable[[Callable[[int, int, dict], None], Callable[[], bool]], Any]


@dataclass
class Job:
    workspace: str
    kind: str
    label: str
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0
    info: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    status: str = "running"  # running | done | failed | stopped
    result: Any = None
    error: str | None = None
    stop_requested: bool = False
    finished: float | None = None
    # How long one-step phases took (the registry shares one among its jobs, kept on disk in the app): a step with
    # no rate to measure is estimated by its last duration instead.
    timings: PhaseTimes = field(default_factory=PhaseTimes)
    _rate_start: tuple[float, int] | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    def progress(self, done: int, total: int, info: dict) -> None:
        """The core's on_progress callback. A new phase (info["phase"]) restarts the ETA estimate."""
        if info.get("phase") != self.info.get("phase") or self._rate_start is None:
            self.end_phase()
            self._rate_start = (time.monotonic(), done)
        self.done, self.total, self.info = done, total, info
        self.history.append({"done": done, "total": total, **{k: v for k, v in info.items() if _is_scalar(v)}})

    def should_stop(self) -> bool:
        return self.stop_requested

    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def eta_seconds(self) -> float | None:
        """Seconds left at the rate seen since this phase began; None until two progress points are known."""
        if not self._rate_start or not self.total:
            return None
        since, first = self._rate_start
        steps = self.done - first
        if steps <= 0:
            return None
        return (time.monotonic() - since) / steps * (self.total - self.done)

    def end_phase(self) -> None:
        """Remember how long the current phase took, and for how many points (info["points"], where the engine
        says), if it was one indivisible step (a new phase begins, or the job ends done)."""
        if self._rate_start and self.total == 1 and self.info.get("phase"):
            self.timings.record(self.workspace, self.info["phase"], self.phase_elapsed(), self.info.get("points"))

    def one_step_estimate(self) -> Estimate | None:
        """How long this one-step phase should take: its last duration on this workspace, else on another
        workspace of the same folder, scaled by points (ui/timings.py)."""
        return self.timings.estimate(self.workspace, self.info.get("phase"), self.info.get("points"))

    def phase_elapsed(self) -> float:
        """Seconds since the current phase began (since the start before the first progress report)."""
        since = self._rate_start[0] if self._rate_start else self.started
        return (self.finished or time.monotonic()) - since

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started


def _is_scalar(value: Any) -> bool:
    return isinstance(value, int | float | str | bool) or value is None


# How often a watching page redraws a running job's progress, by how long the job has run: (until s, every s).
# Each redraw is a fragment rerun in the page's script thread, which competes with the job for the 2 cores and the
# GIL; a long job gains nothing from a bar that moves every second.
REFRESH = ((10.0, 1.0), (60.0, 2.0), (float("inf"), 5.0))


def refresh_every(elapsed: float) -> float:
    """Seconds between progress redraws for a job that has run `elapsed` seconds."""
    return next(every for until, every in REFRESH if elapsed < until)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class JobRegistry:
    """The jobs of one server process. At most one running job per workspace: they all write to it."""

    def __init__(self, timings: PhaseTimes | None = None) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], Job] = {}
        self.timings = timings or PhaseTimes()  # shared by its jobs (Job.timings)

    def get(self, workspace: str, kind: str) -> Job | None:
        with self._lock:
            return self._jobs.get((workspace, kind))

    def running(self, workspace: str) -> Job | None:
        with self._lock:
            return next((j for (w, _), j in self._jobs.items() if w == workspace and j.running), None)

    def start(self, workspace: str, kind: str, label: str, work: Work) -> Job:
        """Start `work(on_progress, should_stop)`; refuses (UserError) while any job runs on the workspace. A
        workspace folder the job creates and leaves without a zoo or a run, failing, is removed again."""
        with self._lock:
            busy = next((j for (w, _), j in self._jobs.items() if w == workspace and j.running), None)
            if busy:
                raise UserError(f"{workspace}: busy with '{busy.label}'; wait for it to finish or stop it first")
            job = Job(workspace, kind, label, timings=self.timings)
            self._jobs[(workspace, kind)] = job
        existed = may_exist(workspace)
        threading.Thread(target=self._run, args=(job, work, existed), name=f"job-{kind}", daemon=True).start()
        return job

    @staticmethod
    def _run(job: Job, work: Work, existed: bool = True) -> None:
        try:
            job.result = work(job.progress, job.should_stop)
            status = "done"
        except Interrupted as exc:
            job.error, status = str(exc), "stopped"
        except UserError as exc:
            job.error, status = str(exc), "failed"
        except OSError as exc:  # a full disk, a read-only folder: the user's to fix, said as the CLI says it
            job.error, status = os_error_message(exc, f"{job.workspace} (the workspace)"), "failed"
        except Exception as exc:  # a bug, not a user mistake: say what happened in the page, log the traceback
            log.error("job %s on %s failed:\n%s", job.kind, job.workspace, traceback.format_exc())
            job.error = f"unexpected error ({type(exc).__name__}: {exc}); details are in the server log"
            status = "failed"
        if status == "done":  # a phase cut short by an error or a stop says nothing of its length
            job.end_phase()
        elif status == "failed" and not existed:
            remove_unused_workspace(job.workspace)
        job.finished = time.monotonic()
        job.status = status
