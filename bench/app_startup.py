"""Start-up time of the app, measured the way a user meets it: `streamlit run app.py` as a real server, its
health endpoint polled, and headless Chromium waiting until the Explore page has drawn the map.

Rows: the first start on an empty workspaces folder (the app unpacks the shipped default workspace), a later
start (the workspace is on disk), and, as the floor these sit on, a bare one-line Streamlit page served and
opened the same way. Each is repeated and the median reported. Goals: first start under 60 s, later under 5 s.
Usage: python bench/app_startup.py [--repeats 3]
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

from tests.app.appdriver import browser, serve, wait_for_map, wait_idle  # noqa: E402


def time_start(root: Path, script: Path | None, page, wait_map: bool) -> tuple[float, float]:
    """(seconds to a healthy server, seconds to the drawn page), both from launching the process."""
    started = time.monotonic()
    kwargs = {"script": script} if script else {}
    with serve(root, **kwargs) as url:
        healthy = time.monotonic() - started
        page.goto(url)
        wait_idle(page, 120_000)
        if wait_map:
            wait_for_map(page)
        else:
            page.get_by_text("bare page").wait_for()
        return healthy, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {"first start": [], "later start": [], "bare streamlit page": []}
    with tempfile.TemporaryDirectory() as tmp, browser() as page:
        bare = Path(tmp) / "bare.py"
        bare.write_text("import streamlit as st\nst.write('bare page')\n")
        for repeat in range(args.repeats):
            root = Path(tmp) / f"workspaces-{repeat}"
            rows["first start"].append(time_start(root, None, page, True))
            rows["later start"].append(time_start(root, None, page, True))
            rows["bare streamlit page"].append(time_start(root, bare, page, False))

    print(f"{'start':22s} {'healthy s':>10s} {'page drawn s':>13s}   (median of {args.repeats})")
    result = {}
    for name, times in rows.items():
        healthy, drawn = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        print(f"{name:22s} {healthy:10.1f} {drawn:13.1f}")
        result[name.replace(" ", "_") + "_s"] = round(drawn, 2)
        result[name.replace(" ", "_") + "_healthy_s"] = round(healthy, 2)
    result.update(goal_first_s=60, goal_later_s=5, repeats=args.repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
