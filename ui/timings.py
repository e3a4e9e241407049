"""How long the one-step phases of jobs took (the map, the evaluation: phases with no steps to measure a rate
from), kept in a small JSON file beside the workspaces, so the progress text can estimate them after a server
restart, and the first time on a workspace from the same phase on another workspace of the same root.

The file is a hint, never trusted: it is read bounded, entries that are not what this module writes are dropped,
and a file that does not read at all is ignored (the next measurement replaces it). Several servers may share a
root: each reads the file again when it changed, and the last write wins.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import ZooError
from core.store.files import read_json, write_json

log = logging.getLogger(__name__)

FILE = ".phase-seconds.json"  # in the workspaces' folder; hidden, so no workspace list shows it
MAX_BYTES = 256 * 1024
MAX_WORKSPACES = 64  # the most recently timed are kept
MAX_PHASES = 16  # per workspace; the engine has a handful
MAX_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Estimate:
    """How long a phase should take now: `took` seconds measured for `points` (None: not known), scaled to the
    points it has now; `source` names the other workspace it was measured on (None: this one)."""

    seconds: float
    took: float
    points: int | None = None
    source: str | None = None

    @property
    def scaled(self) -> bool:
        return self.seconds != self.took


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**53


def _is_seconds(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_SECONDS


def _valid(entry) -> bool:
    """An entry as `PhaseTimes.record` writes it: seconds, points (a count or null) and when it was recorded."""
    if not isinstance(entry, dict):
        return False
    when = entry.get("recorded")
    points_ok = entry.get("points") is None or _is_count(entry.get("points"))
    return _is_seconds(entry.get("seconds")) and points_ok and isinstance(when, int | float) and math.isfinite(when)


def read_table(path: Path) -> dict[str, dict[str, dict]]:
    """{workspace name: {phase: entry}} from `path`, bounded; what does not read, or is not an entry, is left out."""
    if not path.exists():
        return {}
    try:
        data = read_json(path, MAX_BYTES)
    except ZooError as exc:
        log.warning("ignoring the phase timings: %s", exc)
        return {}
    table = {}
    for name, phases in list(data.items())[:MAX_WORKSPACES]:
        if isinstance(phases, dict):
            kept = {phase: e for phase, e in list(phases.items())[:MAX_PHASES] if _valid(e)}
            if kept:
                table[name] = kept
    return table


def _latest(phases: dict) -> float:
    return max(e["recorded"] for e in phases.values())


def _scaled(entry: dict, points: int | None, source: str | None = None) -> Estimate:
    """The entry's duration, in proportion to the points where both are known (the map and the evaluation grow
    about linearly with the checkpoints)."""
    then = entry["points"]
    seconds = entry["seconds"] * points / then if points and then else entry["seconds"]
    return Estimate(seconds, entry["seconds"], then, source)


class PhaseTimes:
    """The measured phases of every workspace a registry's jobs ran on, one table per workspaces folder. With
    `on_disk` off (tests, a job outside the app), it keeps them in memory only."""

    def __init__(self, on_disk: bool = False) -> None:
        self.on_disk = on_disk
        self._lock = threading.Lock()
        self._tables: dict[Path, dict] = {}
        self._stamps: dict[Path, int | None] = {}

    def record(self, workspace: str, phase: str, seconds: float, points: int | None) -> None:
        """Keep how long `phase` took on `workspace` (a workspace folder), for `points` things (None: unknown)."""
        root, name = Path(workspace).parent, Path(workspace).name
        entry = {"seconds": round(seconds, 3), "points": points if _is_count(points) else None}
        with self._lock:
            table = self._table(root)
            table.setdefault(name, {})[phase] = {**entry, "recorded": time.time()}
            for old in sorted(table, key=lambda n: _latest(table[n]))[: max(0, len(table) - MAX_WORKSPACES)]:
                del table[old]
            if self.on_disk:
                self._write(root, table)

    def estimate(self, workspace: str, phase: str, points: int | None) -> Estimate | None:
        """This workspace's last duration of the phase; else, where the points are known, that of the workspace
        whose count is nearest, scaled; else None."""
        root, name = Path(workspace).parent, Path(workspace).name
        with self._lock:
            table = self._table(root)
            own = table.get(name, {}).get(phase)
            others = [(n, p[phase]) for n, p in table.items() if n != name and phase in p]
        if own:
            return _scaled(own, points)
        others = [(n, e) for n, e in others if e["points"] and _is_count(points)]
        if not others:
            return None
        source, entry = min(others, key=lambda o: (abs(math.log(o[1]["points"] / points)), o[0]))
        return _scaled(entry, points, source)

    def _table(self, root: Path) -> dict:
        """The root's table, read again when its file changed since (another server wrote it)."""
        if self.on_disk:
            path = root / FILE
            stamp = path.stat().st_mtime_ns if path.exists() else None
            if root not in self._tables or stamp != self._stamps.get(root):
                self._tables[root], self._stamps[root] = read_table(path), stamp
        return self._tables.setdefault(root, {})

    def _write(self, root: Path, table: dict) -> None:
        try:
            write_json(root / FILE, table)
            self._stamps[root] = (root / FILE).stat().st_mtime_ns
        except OSError as exc:  # a read-only folder: the estimate lives on in memory
            log.warning("could not keep the phase timings in %s: %s", root, exc)
