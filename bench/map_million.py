"""The Explore map's first draw at scale: the app's own map figure (ui/figures.py `map_figure`) of a synthetic map
of N checkpoints, served by `streamlit run` and drawn in headless Chromium, timed from navigation until the chart's
traces are drawn.

Rows: 1,000,000 checkpoints (a density image of all and one representative point per region, ui/map_scale.py);
for comparison every point drawn as a WebGL marker, the map's only way before, at the size where the app switches
(MAX_DRAWN_POINTS) and at 100,000 (1,000,000 that way is 100 MB of figure JSON: not run); and a 1,000-point chart,
the floor: the Streamlit page and plotly.js loading in a fresh tab, as in every row. The server is warmed up on a
small map first, so imports are not counted; each row is the median of --repeats page loads, and the server's share
(reading the table, building the figure) is reported beside it. Goal: 1,000,000 points in 5 s.
Usage: python bench/map_million.py [--points 1000000] [--repeats 3]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from tests.app.appdriver import browser, serve, wait_idle  # noqa: E402
from ui.map_scale import MAX_DRAWN_POINTS  # noqa: E402

GOAL_S = 5.0
# The page the server runs: the map table of the first n rows, drawn by the app's figure code; all=1 draws every
# point as a marker (the limit raised for this page load only).
PAGE = """
import sys, time
sys.path.insert(0, {root!r})
import polars as pl
import streamlit as st
import ui.figures as figures
from ui.map_scale import MAX_DRAWN_POINTS

started = time.perf_counter()
st.caption(f"load {{st.query_params.get('load', '')}}")  # which page load the chart below belongs to
n = int(st.query_params.get("n", "1000"))
figures.MAX_DRAWN_POINTS = 10**12 if st.query_params.get("all") == "1" else MAX_DRAWN_POINTS
table = pl.read_parquet({data!r}, n_rows=n)
figure = figures.map_figure(table, "test accuracy")
st.plotly_chart(figure, key="map", on_select="rerun", selection_mode=("points", "lasso", "box"))
st.caption(f"server {{time.perf_counter() - started:.3f}} s")
"""
# Drawn: this load's chart (its caption above it) with every trace of the figure laid out; then two animation frames
# (WebGL paints on the next frame). A plain predicate: a Promise returned to wait_for_function counts as true at once.
DRAWN = """([load, traces]) => {
  if (!document.body.innerText.includes('load ' + load)) return false;
  const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  return Boolean(plot && plot._fullData && plot._fullData.length === traces);
}"""
FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def synthetic_map(n: int, seed: int = 0) -> pl.DataFrame:
    """A UMAP-like map: 40 Gaussian clusters of uneven size and spread, accuracy rising with the cluster index."""
    rng = np.random.default_rng(seed)
    cluster = rng.choice(40, size=n, p=rng.dirichlet(np.ones(40)))
    centres, spread = rng.uniform(-10, 10, size=(40, 2)), rng.uniform(0.2, 1.5, size=40)
    xy = centres[cluster] + rng.normal(size=(n, 2)) * spread[cluster, None]
    return pl.DataFrame(
        {
            "checkpoint": np.arange(n),
            "split": np.where(np.arange(n) % 7 == 0, "test", "train"),
            "umap_x": xy[:, 0],
            "umap_y": xy[:, 1],
            "model_id": np.arange(n) // 5,
            "epoch": (np.arange(n) % 5) * 5,
            "seed": np.arange(n) // 5,
            "init_seed": (np.arange(n) // 5) % 8,
            "architecture": ["resnet"] * n,
            "test_acc": np.clip(0.1 + 0.02 * cluster + rng.normal(0, 0.03, n), 0, 1),
            "ggap": rng.uniform(0, 0.1, n),
        }
    )


def first_draw(page, url: str, n: int, every_point: bool, traces: int) -> tuple[float, float]:
    """(seconds from navigation to the drawn chart, the server's seconds for table and figure)."""
    load = f"{time.time_ns()}"
    page.goto("about:blank")
    started = time.monotonic()
    page.goto(f"{url}/?n={n}&all={int(every_point)}&load={load}")
    page.wait_for_function(DRAWN, arg=[load, traces], timeout=300_000, polling=50)
    page.evaluate(FRAMES)
    drawn = time.monotonic() - started
    wait_idle(page, 300_000)
    server = float(page.get_by_text("server ").inner_text().split()[1])
    return drawn, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshot", type=Path, default=None, help="a PNG of the large map as drawn")
    args = parser.parse_args()
    cases = {  # label -> (points, every point drawn, traces: density + points, or points alone)
        f"{args.points:,} points (density + representatives)": (args.points, False, 2),
        f"{MAX_DRAWN_POINTS:,} points, every one drawn": (MAX_DRAWN_POINTS, True, 1),
        "100,000 points, every one drawn (before)": (100_000, True, 1),
        "1,000 points (the floor: Streamlit and plotly.js)": (1000, True, 1),
    }
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
    with tempfile.TemporaryDirectory() as tmp:
        data, script = Path(tmp) / "map.parquet", Path(tmp) / "map_page.py"
        synthetic_map(max(args.points, 100_000)).write_parquet(data)
        script.write_text(PAGE.format(root=str(ROOT), data=str(data)))
        with serve(Path(tmp) / "workspaces", script=script) as url, browser() as page:
            first_draw(page, url, 1000, True, 1)  # warm-up: the server's imports, the browser's plotly
            for _ in range(args.repeats):
                for label, (n, every, traces) in cases.items():
                    times[label].append(first_draw(page, url, n, every, traces))
            if args.screenshot:
                first_draw(page, url, args.points, False, 2)
                page.screenshot(path=str(args.screenshot))
    report(times, args)


def report(times: dict[str, list[tuple[float, float]]], args) -> None:
    print(f"{'map':48s} {'first draw s':>12s} {'server s':>9s}   (median of {args.repeats}; goal {GOAL_S:g} s)")
    medians = {}
    for label, runs in times.items():
        drawn, server = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        medians[label] = (drawn, server)
        print(f"{label:48s} {drawn:12.2f} {server:9.2f}")
    (large, server), (switch, _), (before, _), (floor, _) = medians.values()
    print(f"1M with decimation / 100k every point: {large / before:.2f}x the time for 10x the points")
    print(f"above the floor of a page with a 1,000-point chart: {large - floor:.2f} s")
    print(
        json.dumps(
            {
                "points": args.points,
                "first_draw_s": round(large, 2),
                "server_s": round(server, 2),
                "every_point_at_switch_s": round(switch, 2),
                "every_point_100k_s": round(before, 2),
                "floor_1000_points_s": round(floor, 2),
                "max_drawn_points": MAX_DRAWN_POINTS,
                "goal_s": GOAL_S,
                "meets_goal": large <= GOAL_S,
                "repeats": args.repeats,
            }
        )
    )


if __name__ == "__main__":
    main()
