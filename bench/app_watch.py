"""What watching a job in the app costs the job: one 16-model generation on the default digits workspace (the
Generate form's defaults: best 30% as anchors, 3 fine-tuning epochs), run three ways on fresh copies of it:
  cli        `python -m core sample --anchors top:0.3` in its own process;
  unwatched  started from the app's Generate page in headless Chromium, then the tab leaves (about:blank);
  watched    started the same way, the tab watching its progress and live curves until the results are drawn.
Each figure is the generation's own duration as the run records it (core/pipeline.py `generate`: from loading
to the result written), so the CLI's process start-up is left out; the wall time from the start (the CLI's
launch, the click) to the result on disk is printed beside it. The app's server first makes one untimed
generation, so both timed app runs find the engine's lazy imports done, as the CLI pays them inside its run.
With `--busy`, one other CPU-bound process runs throughout. Goal: the three within 1.2x of each other.
Usage: python bench/app_watch.py [--busy]
The last line of stdout is JSON: {"cli_s", "unwatched_s", "watched_s", "busy", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.runtime import sleep_while_waiting  # noqa: E402

sleep_while_waiting()  # before torch loads: the machine may be busy

from bench.app_generate import busy  # noqa: E402
from core.default import ASSET  # noqa: E402
from core.pipeline import unpack_workspace  # noqa: E402
from tests.app.appdriver import ROOT, browser, serve, wait_idle  # noqa: E402

CASES = ("warm-up", "cli", "unwatched", "watched")
ANCHORS = "top:0.3"  # the Generate page's default with nothing selected on the map


def finished_run(workspace: Path, timeout_s: float = 900) -> tuple[dict, float]:
    """The workspace's one samples run's record once written, and when it was seen (monotonic clock)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = list((workspace / "samples").glob("*/result.json"))
        if records:
            return json.loads(records[0].read_text()), time.monotonic()
        time.sleep(0.2)
    raise TimeoutError(f"{workspace}: no samples run after {timeout_s:.0f} s")


def by_cli(workspace: Path) -> dict:
    command = [sys.executable, "-m", "core", "sample", "--workspace", str(workspace), "--anchors", ANCHORS, "--json"]
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    record, _ = finished_run(workspace)
    return {"job_s": record["seconds"], "wall_s": time.monotonic() - started}


def click_generate(page, url: str, name: str) -> float:
    """Open the Generate page on workspace `name` (the address carries it) and start the form's defaults; the
    click's time, once the job's progress shows."""
    page.goto(f"{url}/generate?ws={name}")
    wait_idle(page)
    button = page.get_by_role("button", name="Generate", exact=True)
    button.wait_for(timeout=120_000)
    clicked = time.monotonic()
    button.click()
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=120_000)
    return clicked


def in_app(page, url: str, workspace: Path, watched: bool) -> dict:
    clicked = click_generate(page, url, workspace.name)
    if watched:
        page.get_by_text("Fine-tuning curves").wait_for(timeout=900_000)  # the results drawn: the job is over
    else:
        page.goto("about:blank")  # the tab leaves: no session watches the job
    record, seen = finished_run(workspace)
    return {"job_s": record["seconds"], "wall_s": seen - clicked}


def run_cases(root: Path) -> dict[str, dict]:
    results: dict[str, dict] = {}
    results["cli"] = {"load": os.getloadavg()[0], **by_cli(root / "cli")}
    with serve(root) as url, browser() as page:
        for case in ("warm-up", "unwatched", "watched"):
            load = os.getloadavg()[0]
            results[case] = {"load": load, **in_app(page, url, root / case, watched=case != "unwatched")}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", action="store_true", help="one other CPU-bound process runs throughout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "workspaces"
        for case in CASES:
            unpack_workspace(ASSET, root / case)
        with busy(1 if args.busy else 0):
            results = run_cases(root)
    print(f"{'':10s} {'job s':>7s} {'wall s':>7s} {'load':>5s}   (job: the run's own duration; wall: start to result)")
    for case, row in results.items():
        print(f"{case:10s} {row['job_s']:7.1f} {row['wall_s']:7.1f} {row['load']:5.1f}")
    cli, unwatched, watched = (results[c]["job_s"] for c in ("cli", "unwatched", "watched"))
    ratios = {
        "watched_over_unwatched": round(watched / unwatched, 2),
        "watched_over_cli": round(watched / cli, 2),
        "unwatched_over_cli": round(unwatched / cli, 2),
    }
    print("ratios:", ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()), f"(goal <= 1.2; {os.cpu_count()} cores)")
    summary = {"cli_s": cli, "unwatched_s": unwatched, "watched_s": watched, "busy": args.busy}
    walls = {f"{case}_wall_s": round(results[case]["wall_s"], 2) for case in ("cli", "unwatched", "watched")}
    print(json.dumps({**summary, **walls, **ratios, "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
