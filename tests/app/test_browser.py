"""The real thing: `streamlit run app.py` on a free localhost port against a tiny workspace, driven in headless
Debian Chromium through Playwright: a first request to a page's own address, the map, a box selection,
generation, the curves, the export's download, and the downloaded bundle loading in plain torch.

Skipped when no Chromium is installed, unless HYPERREP_REQUIRE_BROWSER=1 (CI sets it, so there it must run).
HYPERREP_SCREENSHOTS=folder keeps the screenshots there."""

import json
import os
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from core.gen.config import SampleConfig
from core.pipeline import generate
from tests.app.appdriver import (
    block_outside_requests,
    box_around_two,
    box_select,
    box_select_pixels,
    browser,
    choose_workspace,
    chromium_path,
    click_first_checkpoint,
    explore_generate_export,
    go_to,
    hover_texts_of_stars,
    map_trace_names,
    picked_workspace,
    serve,
    settled_positions,
    wait_for_map,
    wait_idle,
)
from tests.conftest import copy_workspace
from tests.gen.bundle_check import run_in_bundle

pytestmark = pytest.mark.skipif(
    chromium_path() is None and os.environ.get("HYPERREP_REQUIRE_BROWSER") != "1",
    reason="no Chromium (apt-get install chromium)",
)


def test_the_workspace_choice_sticks_on_every_page_and_nothing_is_fetched_from_outside(
    tiny_ae_workspace, tiny_zoo_workspace, tmp_path
):
    root = tmp_path / "workspaces"
    copy_workspace(tiny_ae_workspace, root / "digits")
    copy_workspace(tiny_zoo_workspace, root / "other")
    with serve(root, log=tmp_path / "server.log") as url, browser() as page:
        refused = block_outside_requests(page)
        page.goto(url)
        wait_idle(page)
        wait_for_map(page)
        for title in ("Explore", "Zoo", "Autoencoder", "Generate", "Export"):
            if title != "Explore":  # the first choice comes on the first page drawn, with no navigation before it
                go_to(page, title)
            choose_workspace(page, "other")
            page.wait_for_timeout(1500)  # the snap back came with the rerun after the choice
            wait_idle(page)
            assert picked_workspace(page) == "other", title
            go_to(page, "Zoo")  # and it stays when the user moves on
            assert picked_workspace(page) == "other", title
            choose_workspace(page, "digits")
            assert picked_workspace(page) == "digits", title
    assert refused == []
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_the_map_draws_the_selection_back_and_each_generated_model_hovers_on_its_own(tiny_ae_workspace, tmp_path):
    root = tmp_path / "workspaces"
    workspace = copy_workspace(tiny_ae_workspace, root / "digits")
    for method in ("kde", "gauss"):
        generate(workspace, SampleConfig(method=method, n=8, finetune_epochs=0, baselines=False))
    with serve(root, log=tmp_path / "server.log") as url, browser() as page:
        page.goto(url)
        wait_idle(page)
        wait_for_map(page)
        runs = sorted(n.split("-")[0] for n in map_trace_names(page) if n.startswith("generated: "))
        assert runs == ["generated: gauss", "generated: kde"]  # one legend entry per run
        hovers = hover_texts_of_stars(page)
        assert len(hovers) == 16 and all(h.startswith("generated: ") for h in hovers), hovers
        click_first_checkpoint(page)  # one checkpoint clicked: it can be decoded
        page.get_by_role("button", name="Decode this checkpoint").wait_for(timeout=60_000)
        wait_idle(page)
        assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "1"
        box_select(page, 0.02, 0.02, 0.98, 0.98)
        page.get_by_role("button", name="Generate from this selection").wait_for(timeout=60_000)
        page.wait_for_function(
            "() => document.querySelector('.js-plotly-plot').data.some(t => t.name === 'selected (18)')",
            timeout=60_000,
        )
        wait_idle(page)
        go_to(page, "Generate")
        go_to(page, "Explore")
        wait_for_map(page)
        assert "selected (18)" in map_trace_names(page)  # the box is gone; the rings are not
        assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "18"

        go_to(page, "Generate")  # the comparison view: both runs in one table, one curve chart, one plane
        page.get_by_role("heading", name="Compare runs").wait_for(timeout=60_000)
        # novelty plane, comparison curves and plane (runs not fine-tuned draw no curve chart of their own)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)
        charts = page.evaluate(
            "() => [...document.querySelectorAll('.js-plotly-plot')].map(c => c.data.map(t => t.name))"
        )
        compared = [sorted(n.split("-")[0] for n in names) for names in charts[-2:]]
        assert compared == [["gauss", "kde", "random init"], ["gauss", "kde"]]


PATH_LINES = """() => [...document.querySelectorAll('.js-plotly-plot')]
  .map(chart => chart.data.map(t => [t.name, t.y]))
  .find(traces => traces.some(([name]) => name === 'latent line, decoded'))"""


def test_two_boxed_checkpoints_give_the_latent_path_and_a_point_of_it_decodes(tiny_ae_workspace, tmp_path):
    root = tmp_path / "workspaces"
    copy_workspace(tiny_ae_workspace, root / "digits")
    with serve(root, log=tmp_path / "server.log") as url, browser() as page:
        page.goto(url)
        wait_idle(page)
        wait_for_map(page)
        box, pair = box_around_two(*settled_positions(page))
        box_select_pixels(page, *box)
        page.get_by_role("button", name="Latent path between these two").wait_for(timeout=60_000)
        wait_idle(page)
        assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "2"  # the two boxed, no more
        page.get_by_role("button", name="Latent path between these two").click()
        heading = page.get_by_role("heading", name="Latent path: checkpoint")
        heading.wait_for(timeout=60_000)
        page.wait_for_function(f"() => ({PATH_LINES})() !== undefined", timeout=60_000)
        wait_idle(page)
        words = heading.inner_text().split()
        assert {int(words[3]), int(words[6])} == pair  # "Latent path: checkpoint A to checkpoint B"
        lines = dict(page.evaluate(PATH_LINES))
        assert set(lines) == {"latent line, decoded", "weight-space line (aligned weights)"}
        assert all(len(y) == 11 and all(0 <= a <= 1 for a in y) for y in lines.values())

        page.get_by_role("button", name="Decode the point at t").click()  # the slider's default: the middle
        page.get_by_text("the point t = 0.5 of the latent path from checkpoint").wait_for(timeout=120_000)
    result = json.loads(next((root / "digits" / "samples").glob("*/result.json")).read_text())
    assert result["config"]["path_t"] == 0.5 and set(result["anchors"]["ids"]) == pair
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def shown_workspace(page) -> tuple[str, str | None]:
    """(the sidebar picker's value, the address's ?ws=) a moment after the page settled: the snap back to the
    default workspace came within 2 s of a page-changing button."""
    page.wait_for_timeout(2500)
    wait_idle(page)
    return picked_workspace(page), parse_qs(urlparse(page.url).query).get("ws", [None])[0]


def test_the_second_workspace_stays_through_page_buttons_and_a_reload_and_its_path_stays_on_it(
    tiny_ae_workspace, tmp_path
):
    root = tmp_path / "workspaces"
    for name in ("digits", "second"):  # copies: their autoencoder runs have the same name
        copy_workspace(tiny_ae_workspace, root / name)
    with serve(root, log=tmp_path / "server.log") as url, browser() as page:
        page.goto(url)
        wait_idle(page)
        wait_for_map(page)
        choose_workspace(page, "second")
        wait_for_map(page)
        assert shown_workspace(page) == ("second", "second")
        page.reload()  # a new session: the address brings the workspace back
        wait_idle(page)
        wait_for_map(page)
        assert shown_workspace(page) == ("second", "second")

        box, pair = box_around_two(*settled_positions(page))
        box_select_pixels(page, *box)
        page.get_by_role("button", name="Latent path between these two").wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_role("button", name="Latent path between these two").click()
        page.get_by_role("heading", name="Latent path: checkpoint").wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_role("button", name="Decode the point at t").click()
        page.get_by_text("the point t = 0.5 of the latent path from checkpoint").wait_for(timeout=120_000)
        assert page.locator("h1").first.inner_text() == "Generate"
        assert shown_workspace(page) == ("second", "second")

        go_to(page, "Explore")
        wait_for_map(page)
        assert page.get_by_role("heading", name="Latent path: checkpoint").count() == 1  # kept on its workspace
        page.get_by_role("button", name="Generate from this selection").click()
        page.get_by_text("2 checkpoints selected on the Explore page").wait_for(timeout=60_000)
        assert shown_workspace(page) == ("second", "second")

        choose_workspace(page, "digits")
        go_to(page, "Explore")
        wait_for_map(page)
        assert shown_workspace(page) == ("digits", "digits")
        assert page.get_by_text("Nothing selected yet").count() == 1  # neither the selection
        assert page.get_by_role("heading", name="Latent path: checkpoint").count() == 0  # nor the path
    results = [json.loads(p.read_text()) for p in (root / "second" / "samples").glob("*/result.json")]
    assert len(results) == 1 and set(results[0]["anchors"]["ids"]) == pair
    assert not (root / "digits" / "samples").exists()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_select_generate_and_export_in_a_real_browser(tiny_ae_workspace, tmp_path):
    root = tmp_path / "workspaces"
    copy_workspace(tiny_ae_workspace, root / "digits")
    shots = Path(os.environ.get("HYPERREP_SCREENSHOTS") or tmp_path / "screenshots")
    with serve(root, log=tmp_path / "server.log") as url, browser() as page:
        # The server's first request is a page's own address (a reload or a bookmark after a restart): Streamlit
        # would run that page alone, without app.py's navigation and workspace picker; the page hands over.
        page.goto(f"{url}/autoencoder")
        page.locator('[data-testid="stSidebar"]').get_by_text("Workspace", exact=True).wait_for(timeout=60_000)
        wait_idle(page)
        assert "Explore" in page.locator('[data-testid="stSidebar"]').inner_text()
        flow = explore_generate_export(page, url, tmp_path, shots)

    assert flow["selected"] == 18  # the box spans the whole map: all 6 models x 3 checkpoints
    results = list((root / "digits" / "samples").glob("*/result.json"))
    assert len(results) == 1
    result = json.loads(results[0].read_text())
    assert result["anchors"]["rule"].startswith("ids:") and result["anchors"]["count"] == 18
    assert flow["bundle"].name == f"{result['samples_run']}-safetensors.zip"

    unpacked = tmp_path / "bundle"
    with zipfile.ZipFile(flow["bundle"]) as archive:
        archive.extractall(unpacked)
    card = json.loads((unpacked / "card.json").read_text())
    measured = run_in_bundle(unpacked, "digits")
    assert len(measured) == result["n"] == 16
    assert measured == pytest.approx([m["test_acc_as_generated"] for m in card["models"]], abs=1e-6)
    for name in ("explore", "explore-selection", "generate", "export", "zoo", "autoencoder"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    assert "Traceback" not in (tmp_path / "server.log").read_text()
