"""Drive the real app: start `streamlit run app.py` on a free localhost port, wait for its health endpoint,
and open it in headless Debian Chromium through Playwright. Shared by the browser test and the app benches."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Without the networking flags Chromium keeps dialling Google's hosts, which this sandbox refuses; WebGL (Plotly
# draws scatter plots of over 1,000 points with it) needs SwiftShader in a headless, GPU-less browser.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
]


def chromium_path() -> str | None:
    found = os.environ.get("CHROMIUM") or next((p for p in CHROMIUM_CANDIDATES if Path(p).exists()), None)
    return found or shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s")


@contextlib.contextmanager
def serve(
    workspaces: Path, log: Path | None = None, timeout: float = 120, script: Path = ROOT / "app.py"
) -> Iterator[str]:
    """The app (or another `script`) serving `workspaces` on a free localhost port; yields its URL once healthy."""
    port = free_port()
    env = {**os.environ, "HYPERREP_WORKSPACES": str(workspaces), "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    sink = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, timeout)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            sink.close()


@contextlib.contextmanager
def browser(height: int = 1000) -> Iterator:
    """A Playwright page in headless Chromium, 1400 pixels wide. Streamlit scrolls inside its own container,
    so a screenshot shows what fits the height: screenshots for the README use a tall one."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": 1400, "height": height}, accept_downloads=True)
        try:
            yield context.new_page()
        finally:
            context.close()
            chromium.close()


def wait_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the app is drawn and its script is not running."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " return app && app.getAttribute('data-test-script-state') !== 'running'; }",
        timeout=timeout_ms,
    )


def block_outside_requests(page) -> list[str]:
    """Refuse every request that leaves the machine and record its address: the app must work offline."""
    refused: list[str] = []

    def refuse(route) -> None:
        refused.append(route.request.url)
        route.abort()

    page.route(lambda url: not url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")), refuse)
    return refused


def choose_workspace(page, name: str) -> None:
    """Pick a workspace in the sidebar's picker, as a user does: open it, click the name."""
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=name, exact=True).click()
    wait_idle(page)


def picked_workspace(page) -> str:
    """The picker's shown value (a combobox input)."""
    picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    return picker.locator('input[role="combobox"]').input_value()


def go_to(page, title: str) -> None:
    """Open a page through the sidebar's navigation (a new address would start a new session)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.locator("h1").get_by_text(title, exact=True).wait_for(timeout=60_000)
    wait_idle(page)


STAR_POSITIONS = """() => {
  const chart = document.querySelector('.js-plotly-plot');
  const area = chart.querySelector('.nsewdrag').getBoundingClientRect();
  const x = chart._fullLayout.xaxis, y = chart._fullLayout.yaxis;
  return chart.data.filter(t => (t.name || '').startsWith('generated')).flatMap(
    t => t.x.map((v, i) => [area.left + x.d2p(v), area.top + y.d2p(t.y[i])]));
}"""


def hover_texts_of_stars(page) -> list[str]:
    """Point at the centre of every generated model on the map and read the hover label that appears."""
    texts = []
    for x, y in page.evaluate(STAR_POSITIONS):
        page.mouse.move(x, y)
        page.wait_for_timeout(200)
        texts.append(page.evaluate("() => document.querySelector('.hoverlayer').textContent"))
    return texts


def click_first_checkpoint(page) -> int:
    """With the pan tool (clicks select only outside the lasso and box tools), click the zoo's leftmost point;
    returns its checkpoint id."""
    page.locator('[data-testid="stPlotlyChart"]').first.hover()
    page.locator('[data-testid="stPlotlyChart"] [data-title="Pan"]').first.click()
    x, y, checkpoint = min(page.evaluate(ZOO_POSITIONS))
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    return checkpoint


ZOO_POSITIONS = """() => {
  const chart = document.querySelector('.js-plotly-plot');
  const area = chart.querySelector('.nsewdrag').getBoundingClientRect();
  const x = chart._fullLayout.xaxis, y = chart._fullLayout.yaxis, zoo = chart.data[0];
  return zoo.x.map((v, i) => [area.left + x.d2p(v), area.top + y.d2p(zoo.y[i]), zoo.customdata[i][0]]);
}"""


def settled_positions(page, tries: int = 20) -> tuple[list, dict]:
    """(ZOO_POSITIONS, the plot area) once two reads half a second apart agree: the chart can still move while
    the page around it is being drawn, and a box placed from stale positions misses its points."""
    last = None
    for _ in range(tries):
        now = (page.evaluate(ZOO_POSITIONS), plot_area(page))
        if now == last:
            return now
        last = now
        page.wait_for_timeout(500)
    raise AssertionError("the map kept moving")


def box_around_two(points: list, area: dict, margin: float = 8.0) -> tuple[tuple[float, ...], set[int]]:
    """A screen box inside the plot `area` that holds exactly two of the map's `points` ([x, y, checkpoint], as
    ZOO_POSITIONS gives them), at two different places, and no other point; and those two checkpoints.

    Boxing a region is how a user selects; a box around two points found by eye often held four, because
    checkpoints with the same weights (epoch-0 models sharing an initialisation) lie on one spot."""
    for i, a in enumerate(points):
        for b in points[i + 1 :]:
            if abs(a[0] - b[0]) + abs(a[1] - b[1]) < 2 * margin:  # too close to tell apart on screen
                continue
            x0, x1 = min(a[0], b[0]) - margin, max(a[0], b[0]) + margin
            y0, y1 = min(a[1], b[1]) - margin, max(a[1], b[1]) + margin
            inside_area = area["x"] < x0 and x1 < area["x"] + area["width"]
            inside_area = inside_area and area["y"] < y0 and y1 < area["y"] + area["height"]
            held = [p for p in points if x0 - margin <= p[0] <= x1 + margin and y0 - margin <= p[1] <= y1 + margin]
            if inside_area and len(held) == 2:
                return (x0, y0, x1, y1), {a[2], b[2]}
    raise AssertionError("no two points of the map can be boxed without a third")


def map_trace_names(page) -> list[str]:
    return page.evaluate("() => document.querySelector('.js-plotly-plot').data.map(t => t.name)")


def wait_for_map(page, timeout_ms: float = 120_000) -> None:
    """Wait for the Explore page's UMAP map: a plotly chart holding points."""
    page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=timeout_ms)


def box_select(page, left: float, top: float, right: float, bottom: float) -> None:
    """Draw a box selection on the page's first plotly chart; corners as fractions of its plot area."""
    area = plot_area(page)
    x0, y0 = area["x"] + left * area["width"], area["y"] + top * area["height"]
    x1, y1 = area["x"] + right * area["width"], area["y"] + bottom * area["height"]
    box_select_pixels(page, x0, y0, x1, y1)


def plot_area(page) -> dict:
    """The screen box (x, y, width, height) of the first plotly chart's plot area."""
    return page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first.bounding_box()


def box_select_pixels(page, x0: float, y0: float, x1: float, y1: float) -> None:
    """Draw a box selection on the page's first plotly chart between two screen points."""
    page.locator('[data-testid="stPlotlyChart"]').first.hover()
    page.locator('[data-testid="stPlotlyChart"] [data-title="Box Select"]').first.click()
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()


def explore_generate_export(
    page, url: str, downloads: Path, shots: Path | None = None, box=(0.02, 0.02, 0.98, 0.98)
) -> dict:
    """The app's main flow in a real browser: the map, a box selection, generation from it (timed from the
    click to the plotted curves), and the export's download (saved into `downloads`). Saves a screenshot of
    each page into `shots`."""

    def shot(name: str) -> None:
        if shots:
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    page.goto(url)
    wait_idle(page)
    wait_for_map(page)
    shot("explore")
    box_select(page, *box)
    page.get_by_role("button", name="Generate from this selection").wait_for(timeout=60_000)
    wait_idle(page)
    selected = int(page.locator('[data-testid="stMetricValue"]').first.inner_text().replace(",", ""))
    shot("explore-selection")
    page.get_by_role("button", name="Generate from this selection").click()
    page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=60_000)
    wait_idle(page)
    clicked = time.monotonic()
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("Fine-tuning curves").wait_for(timeout=60_000)
    page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=60_000)
    generate_s = time.monotonic() - clicked
    wait_idle(page)
    shot("generate")
    page.get_by_role("button", name="Export these models").click()
    download_button = page.locator('[data-testid="stDownloadButton"] button')
    download_button.wait_for(timeout=60_000)
    wait_idle(page)
    shot("export")
    with page.expect_download(timeout=60_000) as download:
        download_button.click()
    bundle = downloads / download.value.suggested_filename
    download.value.save_as(bundle)
    for name in ("zoo", "autoencoder"):
        page.goto(f"{url}/{name}")
        wait_idle(page)
        page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=60_000)
        shot(name)
    return {"selected": selected, "generate_s": generate_s, "bundle": bundle}
