"""From the Generate click to the plotted curves, in the real app on the default digits workspace.

The app is served with `streamlit run app.py` on the shipped default workspace (256 models), and headless
Chromium does what a user does: a box selection on the Explore map, "Generate from this selection", then
"Generate" (16 models, 3 fine-tuning epochs: the form's defaults). Timed from the click until the results'
curves are drawn. As the baseline in the same run, the same engine call (`generate_samples`, same anchors and
settings, a new seed so nothing is cached) runs in-process on an engine already loaded: the app's overhead
is the difference. Goal: under 10 s on a 2-core CPU.
Usage: python bench/app_generate.py [--repeats 3] [--screenshots DIR]   (DIR: keep each page's screenshot)
The last line of stdout is JSON with the medians in seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

from core.default import ASSET, NAME  # noqa: E402
from core.gen.config import SampleConfig  # noqa: E402
from core.pipeline import generate, unpack_workspace  # noqa: E402
from core.runtime import tune_cpu_allocator  # noqa: E402
from core.store.workspace import Workspace  # noqa: E402
from tests.app.appdriver import browser, explore_generate_export, serve  # noqa: E402

# The box drawn on the map, as fractions of its plot area (left, top, right, bottom): a central region.
BOX = (0.3, 0.25, 0.7, 0.75)


def engine_seconds(root: Path, anchors: str, seed: int) -> float:
    tune_cpu_allocator()
    workspace = Workspace(root / NAME)
    generate(workspace, SampleConfig(anchors=anchors, seed=seed + 1000))  # load and warm the engine
    started = time.monotonic()
    generate(workspace, SampleConfig(anchors=anchors, seed=seed + 2000))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshots", type=Path, default=None, help="keep a screenshot of each page here")
    args = parser.parse_args()
    app, engine, selected = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            root = Path(tmp) / f"workspaces-{repeat}"
            unpack_workspace(ASSET, root / NAME)
            shots = args.screenshots if repeat == 0 else None
            with serve(root) as url, browser(height=2000 if shots else 1000) as page:
                flow = explore_generate_export(page, url, Path(tmp), shots, box=BOX)
            app.append(flow["generate_s"])
            selected.append(flow["selected"])
            result = json.loads(next((root / NAME / "samples").glob("*/result.json")).read_text())
            engine.append(engine_seconds(root, result["anchors"]["rule"], repeat))
    print(f"{'':34s} {'median s':>9s}  runs")
    print(f"{'app: click -> curves drawn':34s} {statistics.median(app):9.1f}  {[round(t, 1) for t in app]}")
    print(f"{'engine call alone (warm process)':34s} {statistics.median(engine):9.1f}  {[round(t, 1) for t in engine]}")
    print(f"selected checkpoints: {selected}; 16 models, 3 fine-tuning epochs, digits")
    print(
        json.dumps(
            {
                "app_click_to_curves_s": round(statistics.median(app), 2),
                "engine_generate_s": round(statistics.median(engine), 2),
                "app_overhead_s": round(statistics.median(app) - statistics.median(engine), 2),
                "selected_checkpoints": selected,
                "models": 16,
                "finetune_epochs": 3,
                "goal_s": 10,
            }
        )
    )


if __name__ == "__main__":
    main()
