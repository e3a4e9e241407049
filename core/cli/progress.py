"""The engine's on_progress(done, total, info) callback drawn as a tqdm bar with ETA on stderr."""

from __future__ import annotations

import sys

from tqdm import tqdm


class ProgressBar:
    """A new `info["phase"]` (training, then map, then evaluation) starts a new bar."""

    def __init__(self, description: str, quiet: bool):
        self.bar: tqdm | None = None
        self.phase: str | None = None
        self.description, self.quiet = description, quiet

    def __call__(self, done: int, total: int, info: dict) -> None:
        if self.quiet:
            return
        phase = info.get("phase")
        if self.bar is not None and phase != self.phase:
            self.close()
        if self.bar is None:
            description = f"{self.description}: {phase}" if phase else self.description
            self.bar = tqdm(total=total, desc=description, unit="step", file=sys.stderr, dynamic_ncols=True)
            self.phase = phase
        self.bar.update(done - self.bar.n)
        if "warning" in info:  # a line of its own above the bar (the learning check's, core/rep/learning_check.py)
            self.bar.write(f"warning: {info['warning']}", file=sys.stderr)
        shown = {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in info.items()
            if isinstance(v, (int, float, str)) and k not in ("elapsed_s", "phase", "warning")
        }
        self.bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def with_progress(description: str, quiet: bool, work):
    """Run `work(on_progress)` with a progress bar that is closed however the work ends."""
    bar = ProgressBar(description, quiet)
    try:
        return work(bar)
    finally:
        bar.close()
