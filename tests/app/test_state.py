"""The workspace as the root of page state (ui/session.py, ui/keys.py): the URL's query string opens it, every
in-page navigation keeps it, and what was chosen or built on one workspace never shows on another, even where the
two have runs of the same name (here: two copies of one workspace, so their runs are named alike)."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.rep.run import load_run
from core.store.files import read_json, write_json
from core.store.workspace import Workspace
from tests.conftest import copy_workspace
from ui import keys
from ui.session import pick_workspace, workspace_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_workspaces(tiny_ae_workspace, tmp_path, monkeypatch) -> Path:
    """The app's workspaces folder: `digits` and `second`, copies of one tiny workspace (same run names)."""
    root = tmp_path / "workspaces"
    for name in ("digits", "second"):
        copy_workspace(tiny_ae_workspace, root / name)
    monkeypatch.setenv("HYPERREP_WORKSPACES", str(root))
    return root


def app(workspace: str | None = None) -> AppTest:
    """The whole app, opened at `?ws=workspace` (as a reload, a bookmark or a shared link would)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if workspace:
        at.query_params[keys.WORKSPACE_PARAM] = workspace
    return at


def selection_key(root: Path, name: str) -> str:
    workspace = Workspace(root / name)
    return keys.selection(workspace_id(workspace), load_run(workspace).name)


def shown_workspace(at: AppTest) -> tuple[str, str]:
    """(the sidebar picker's value, the URL's ?ws=)."""
    return at.sidebar.selectbox(key=keys.WORKSPACE_PICKER).value, at.query_params.get(keys.WORKSPACE_PARAM)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def test_the_url_wins_then_the_session_then_the_default_and_unknown_names_are_passed_over():
    names = ["digits", "other", "third"]
    assert pick_workspace(names, "third", "other") == "third"
    assert pick_workspace(names, None, "other") == "other"
    assert pick_workspace(names, "gone", "other") == "other"
    assert pick_workspace(names, "gone", "deleted") == "digits"
    assert pick_workspace(names, None, None) == "digits"
    assert pick_workspace([], "digits", "digits") is None


def test_the_id_of_a_workspace_tells_copies_apart_and_changes_with_a_new_zoo(tiny_ae_workspace, tmp_path):
    one = copy_workspace(tiny_ae_workspace, tmp_path / "one")
    two = copy_workspace(tiny_ae_workspace, tmp_path / "two")
    assert one.zoo_stamp() == two.zoo_stamp()  # the same zoo: only the folder tells them apart
    assert workspace_id(one) != workspace_id(two) and workspace_id(one).startswith("one@")
    before = workspace_id(one)
    manifest = read_json(one.manifest_path)
    write_json(one.manifest_path, {**manifest, "zoo": {**manifest["zoo"], "id": "a-new-zoo"}})
    assert workspace_id(one) == "one@a-new-zoo" != before  # a new zoo in the folder starts from a clean state


def test_the_url_opens_its_workspace_and_a_choice_in_the_picker_goes_into_the_url(two_workspaces):
    at = app("second").run()
    assert not at.exception and shown_workspace(at) == ("second", "second")
    at.sidebar.selectbox(key=keys.WORKSPACE_PICKER).select("digits").run()
    assert not at.exception and shown_workspace(at) == ("digits", "digits")
    at.switch_page("views/zoo.py").run()  # the sidebar's navigation: the choice stays
    assert shown_workspace(at) == ("digits", "digits")
    assert shown_workspace(app("no-such-workspace").run()) == ("digits", "digits")


def test_generate_from_this_selection_on_the_second_workspace_keeps_it(two_workspaces):
    at = app("second")
    at.session_state[selection_key(two_workspaces, "second")] = [3, 4, 5, 6]
    at.run()
    assert texts(at.metric)[0] == "4"
    button(at, "Generate from this selection").click().run()
    assert not at.exception and texts(at.title) == ["Generate"]
    assert shown_workspace(at) == ("second", "second")
    assert at.radio[0].value == "map selection" and "4 checkpoints selected" in " ".join(texts(at.caption))


def test_a_latent_path_stays_on_its_workspace_and_decoding_a_point_of_it_keeps_the_workspace(two_workspaces):
    at = app("second")
    at.session_state[selection_key(two_workspaces, "second")] = [5, 14]
    at.run()
    button(at, "Latent path between these two").click().run()
    path = "Latent path: checkpoint 5 to checkpoint 14"
    assert not at.exception and path in texts(at.subheader)
    at.sidebar.selectbox(key=keys.WORKSPACE_PICKER).select("digits").run()
    assert not at.exception and texts(at.title) == ["Explore"] and path not in texts(at.subheader)
    assert "Nothing selected yet" in " ".join(texts(at.markdown))  # nor the other workspace's selection
    at.sidebar.selectbox(key=keys.WORKSPACE_PICKER).select("second").run()
    assert path in texts(at.subheader)  # still there on its own workspace
    button(at, "Decode the point at t").click().run()
    assert not at.exception and texts(at.title) == ["Generate"] and shown_workspace(at) == ("second", "second")
    for _ in range(600):  # a bound on the waiting, counted in reruns, not a check of speed
        if "Results" in texts(at.header):
            break
        time.sleep(0.3)
        at.run()
    assert shown_workspace(at) == ("second", "second")
    records = list((two_workspaces / "second" / "samples").glob("*/result.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["config"]["path_t"] == 0.5
    assert not (two_workspaces / "digits" / "samples").exists()
