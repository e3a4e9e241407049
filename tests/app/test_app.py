"""Every page under streamlit.testing's AppTest on a tiny workspace: it renders, its main button does its job,
bad input gives an error box. Long work runs in background jobs, so tests rerun the page until it is done."""

import json
import time
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

import core.default as default
from core.gen.config import SampleConfig
from core.pipeline import generate
from core.rep import evaluate
from core.rep.evaluate import evaluate_run
from core.rep.run import load_run
from core.store.workspace import Workspace
from core.zoo.model_zoo import load_zoos
from tests.conftest import copy_workspace
from tests.test_default import tiny_configs
from ui import keys
from ui.session import workspace_id

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_root(tiny_ae_workspace, tmp_path, monkeypatch):
    """A workspaces folder holding a copy of the tiny workspace as the default, for the app to use."""
    root = tmp_path / "workspaces"
    copy_workspace(tiny_ae_workspace, root / "digits")
    monkeypatch.setenv("HYPERREP_WORKSPACES", str(root))
    return root


def page(name: str, workspace: str | None = "digits") -> AppTest:
    at = AppTest.from_file(str(ROOT / "views" / f"{name}.py"), default_timeout=120)
    if workspace:
        at.session_state[keys.WORKSPACE] = workspace
    return at


def run_until(at: AppTest, done, reruns: int = 600) -> AppTest:
    """Rerun the page until `done(at)` holds (background jobs draw their outcome on a rerun), at most `reruns`
    times with a short pause between: a bound on the waiting, counted in reruns, not a check of speed."""
    for _ in range(reruns):
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return at
        time.sleep(0.3)
    raise AssertionError(f"not done after {reruns} reruns; errors: {[e.value for e in at.error]}")


def state(root: Path, name: str, workspace: str = "digits") -> str:
    """The session-state key of `name` (ui/keys.py) on the workspace `root / workspace`."""
    return keys.scoped(name, workspace_id(Workspace(root / workspace)))


def selection(root: Path, workspace: str = "digits") -> str:
    """The key of the selection on the workspace's latest autoencoder run's map."""
    ws = Workspace(root / workspace)
    return keys.selection(workspace_id(ws), load_run(ws).name)


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


# ---------------------------------------------------------------- start-up


def test_first_start_unpacks_the_shipped_workspace_and_opens_on_the_map(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERREP_WORKSPACES", str(tmp_path / "fresh"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert texts(at.title) == ["Explore"] and len(at.get("plotly_chart")) == 1
    assert texts(at.info)[0].startswith("**Start here.**")  # a new user is told what to do first
    assert Workspace(tmp_path / "fresh" / "digits").exists()
    assert at.sidebar.selectbox[0].value == "digits"


def test_without_the_pack_the_default_is_built_with_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERREP_WORKSPACES", str(tmp_path / "fresh"))
    monkeypatch.setattr(default, "ASSET", tmp_path / "missing.zip")
    monkeypatch.setattr(default, "default_configs", tiny_configs)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert "Building the default workspace" in " ".join(texts(at.markdown))
    run_until(at, lambda at: texts(at.title) == ["Explore"])
    assert load_run(Workspace(tmp_path / "fresh" / "digits")).status == "done"


# ---------------------------------------------------------------- zoo


def test_zoo_page_summarises_and_generates_a_new_workspace(app_root):
    at = page("zoo").run()
    assert not at.exception
    assert texts(at.metric)[:2] == ["6", "18"] and len(at.get("plotly_chart")) == 1
    at.text_input(key="zoo-name").set_value("small")
    assert next(t for t in at.text_input if t.label == "Saved epochs").value == ""  # derived from the epochs
    numbers = {n.label: n for n in at.number_input}
    numbers["Models"].set_value(3)
    numbers["Epochs"].set_value(1)
    numbers["Shared initialisations"].set_value(1)
    button(at, "Generate zoo").click().run()
    assert not at.exception and len(at.get("progress")) == 1  # feedback in the same page run as the submit
    assert "Training 3 models on digits" in at.get("progress")[0].proto.text
    run_until(at, lambda at: any("Zoo ready in workspace `small`" in s for s in texts(at.success)))
    table = load_zoos(Workspace(app_root / "small"))[0].table
    assert table["model_id"].n_unique() == 3 and sorted(table["epoch"].unique()) == [0, 1]  # as the CLI derives
    button(at, "Open workspace small").click().run()
    assert at.session_state[keys.WORKSPACE] == "small" and at.query_params[keys.WORKSPACE_PARAM] == "small"


def test_a_new_attempt_on_the_zoo_page_clears_the_last_jobs_outcome(app_root):
    at = page("zoo").run()
    at.text_input(key="zoo-name").set_value("small")
    numbers = {n.label: n for n in at.number_input}
    numbers["Models"].set_value(2)
    numbers["Epochs"].set_value(1)
    button(at, "Generate zoo").click()
    run_until(at, lambda at: any("Zoo ready in workspace `small`" in s for s in texts(at.success)))
    at.text_input(key="zoo-name").set_value("small")  # taken now: this attempt fails
    button(at, "Generate zoo").click().run()
    assert any("already has a zoo" in e for e in texts(at.error))
    assert not at.success and "Open workspace small" not in [b.label for b in at.button]  # not beside the error
    at.run()
    assert not at.success and not at.error  # and it does not come back


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("Saved epochs", "0,x", "saved epochs: expected comma-separated integers"),
        ("zoo-name", "digits", "already has a zoo"),
        ("zoo-name", "../up", "not a usable workspace name"),
        ("zoo-name", "x" * 300, "not a usable workspace name"),
        ("zoo-name", "x\ny", "not a usable workspace name"),
        ("zoo-name", "my zoo", "not a usable workspace name"),
        ("Learning rates", "-1", "learning rates must be finite and positive"),
        ("Learning rates", "1e9", "learning rates must be finite and positive, at most 1; got [1000000000.0]"),
        ("Ray cluster", "nowhere", "'nowhere': expected local (start one on this machine), auto"),
        ("Models", 0, "a zoo needs 1 to"),
        ("Models", 200_000, "a zoo needs 1 to 100000 models, got 200000"),  # an error box, not a red field
    ],
)
def test_zoo_form_rejects_bad_input_with_an_error_box(app_root, field, value, message):
    at = page("zoo").run()
    fields = [*at.text_input, *at.number_input]
    next(t for t in fields if field in (t.label, t.key)).set_value(value)
    button(at, "Generate zoo").click().run()
    assert not at.exception and any(message in e for e in texts(at.error)), texts(at.error)
    assert sorted(p.name for p in app_root.iterdir()) == ["digits"]  # nothing was written


def test_import_of_a_missing_folder_is_an_error_box(app_root, tmp_path):
    at = page("zoo").run()
    next(t for t in at.text_input if t.label.startswith("Folder holding")).set_value(str(tmp_path / "nope"))
    button(at, "Import zoo").click().run()
    assert any("nope: not a folder" in e for e in texts(at.error))


@pytest.mark.parametrize(
    "folder, dataset, name, message",
    [
        ("x" * 5_000, "", "imported", "a path of 5,000 bytes"),
        ("/tmp/" + "x" * 100_000, "", "imported", "100,005 characters"),
        ("FOLDER", "y" * 100_000, "imported", "dataset 'yyyy"),
        ("FOLDER", "", "z" * 300, "not a usable workspace name"),
    ],
)
def test_import_form_fields_beyond_their_bounds_are_error_boxes(app_root, tmp_path, folder, dataset, name, message):
    at = page("zoo").run()
    next(t for t in at.text_input if t.label.startswith("Folder holding")).set_value(
        folder.replace("FOLDER", str(tmp_path))
    )
    next(t for t in at.text_input if t.label.startswith("Dataset the zoo")).set_value(dataset)
    at.text_input(key="import-name").set_value(name)
    button(at, "Import zoo").click().run()
    assert not at.exception and any(message in e for e in texts(at.error)), texts(at.error)
    assert all(len(e) < 400 for e in texts(at.error))
    assert sorted(p.name for p in app_root.iterdir()) == ["digits"]


def test_a_100000_character_dataset_folder_is_an_error_box(app_root):
    at = page("zoo").run()
    next(s for s in at.selectbox if s.label == "Dataset").set_value("local folder")
    next(t for t in at.text_input if t.label.startswith("Local folder")).set_value("/d/" + "x" * 100_000)
    button(at, "Generate zoo").click().run()
    assert not at.exception and any("dataset '/d/xxx" in e and "100,003 characters" in e for e in texts(at.error))
    assert sorted(p.name for p in app_root.iterdir()) == ["digits"]


def test_import_of_a_folder_that_is_no_zoo_shows_its_progress_then_why(app_root, tmp_path):
    (tmp_path / "not-a-zoo").mkdir()
    (tmp_path / "not-a-zoo" / "notes.txt").write_text("hello")
    at = page("zoo").run()
    next(t for t in at.text_input if t.label.startswith("Folder holding")).set_value(str(tmp_path / "not-a-zoo"))
    button(at, "Import zoo").click().run()
    assert not at.exception and (at.get("progress") or at.error)  # never a silent page after a valid submit
    run_until(at, lambda at: any("no model folders" in e for e in texts(at.error)))


# ---------------------------------------------------------------- autoencoder


def test_autoencoder_page_evaluates_and_trains_while_a_second_tab_is_told_to_wait(app_root):
    at = page("autoencoder").run()
    assert not at.exception and len(at.get("plotly_chart")) == 1  # the finished run's loss curves
    button(at, "Evaluate this run").click()
    run_until(at, lambda at: len(at.dataframe) >= 3)  # runs, reconstruction figures, probes
    assert "On 1 held-out model (3 checkpoints)." in texts(at.caption)  # the tiny zoo holds out one model
    assert any("Only 1 model held out" in w for w in texts(at.warning))
    assert any(c.startswith("Total = ") and "behavioural" in c for c in texts(at.caption))  # the loss chart's terms
    probes = at.dataframe[2].value
    assert "embedding (ours, by latent+layerstd)" in probes["features"].to_list() and {
        "test_acc",
        "epoch",
        "ggap",
    } <= set(probes.columns)

    next(n for n in at.number_input if n.label == "Epochs").set_value(300)
    button(at, "Train autoencoder").click().run()
    other_tab = page("autoencoder").run()
    assert any(b.label == "Stop" for b in other_tab.button)  # the second tab watches the running job
    assert not any(b.label == "Train autoencoder" for b in other_tab.button)  # and cannot start another
    button(other_tab, "Stop").click().run()
    run_until(at, lambda at: any("stopped after epoch" in w for w in texts(at.warning)))
    stopped = next(w for w in texts(at.warning) if "stopped after epoch" in w)
    assert "start it again with the same settings" in stopped and "command" not in stopped  # the app's words

    next(n for n in at.number_input if n.label == "Epochs").set_value(2)
    button(at, "Train autoencoder").click()
    run_until(at, lambda at: any(s.startswith("Trained `hyperrep-") for s in texts(at.success)))
    at.run()
    assert not at.success  # said once: it would stand beside the messages of what the user does next


def test_autoencoder_page_shows_the_runs_learning_warning(app_root):
    files = load_run(Workspace(app_root / "digits")).files
    files.write_config({**files.read_config(), "warnings": ["the autoencoder is not learning: try --lr 0.01"]})
    at = page("autoencoder").run()
    assert not at.exception and "the autoencoder is not learning: try --lr 0.01" in texts(at.warning)


def test_autoencoder_page_says_why_the_flat_weights_probe_is_empty(app_root, monkeypatch):
    monkeypatch.setattr(evaluate, "fits", lambda n_bytes: False)  # as if the zoo's flat weights did not fit
    evaluate_run(Workspace(app_root / "digits"))
    at = page("autoencoder").run()
    notes = [c for c in texts(at.caption) if c.startswith("Flat weights W: left out")]
    assert not at.exception and len(notes) == 1 and "--memory" in notes[0]


def test_autoencoder_page_says_why_the_accuracy_kept_is_empty(app_root, monkeypatch):
    monkeypatch.setattr(evaluate, "_test_accuracies", lambda *args: None)  # as if the zoo's dataset were gone
    evaluate_run(Workspace(app_root / "digits"), refresh=True)
    at = page("autoencoder").run()
    notes = [c for c in texts(at.caption) if c.startswith("Accuracy kept by reconstructions: not measured")]
    assert not at.exception and notes == ["Accuracy kept by reconstructions: not measured (dataset not available)"]


def test_autoencoder_page_on_a_workspace_without_a_zoo_says_so(app_root):
    (app_root / "empty").mkdir()
    at = page("autoencoder", "empty").run()
    assert not at.exception and at.error and "Generate or import a zoo" in texts(at.info)[0]


# ---------------------------------------------------------------- explore


def test_explore_page_draws_the_map_and_summarises_a_selection(app_root):
    at = page("explore").run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    assert "Nothing selected yet" in " ".join(texts(at.markdown))
    at.session_state[selection(app_root)] = [0, 1, 2]
    at.selectbox(key="map-colour").set_value("init").run()
    assert not at.exception
    assert texts(at.metric)[:2] == ["3", "1"]  # checkpoints 0-2 are one model's three epochs
    at.toggle(key=state(app_root, keys.ZOOM)).set_value(True).run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert not at.exception and spec["layout"]["xaxis"]["title"]["text"].startswith("selection's PCA 1")
    assert sorted(p[0] for trace in spec["data"] for p in trace["customdata"]) == [0, 1, 2]  # the selection alone
    button(at, "Clear selection").click().run()
    assert "Nothing selected yet" in " ".join(texts(at.markdown))


def test_two_checkpoints_picked_by_model_and_epoch_offer_the_latent_path(app_root):
    chosen = selection(app_root)
    at = page("explore").run()
    pick = at.multiselect(key=keys.picked(chosen))
    assert pick.options[5].startswith("model 1 / epoch 3 (")  # checkpoints 3-5 are model 1's epochs 0, 1, 3
    assert "Latent path between these two" not in [b.label for b in at.button]
    pick.select(5).select(14).run()
    assert not at.exception and at.session_state[chosen] == [5, 14]
    assert texts(at.metric)[:2] == ["2", "2"] and "Latent path between these two" in [b.label for b in at.button]
    at.session_state[chosen] = [0, 1, 2]  # as a small box on the map would
    at.run()
    assert at.multiselect(key=keys.picked(chosen)).value == [0, 1, 2]


def test_one_checkpoint_clicked_on_the_map_is_decoded_on_the_generate_page(app_root):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # the whole app: the button changes page
    at.session_state[selection(app_root)] = [5]
    at.run()
    button(at, "Decode this checkpoint").click().run()
    assert not at.exception
    run_until(at, lambda at: "Results" in texts(at.header))
    assert texts(at.title) == ["Generate"] and "1 model by neighbour from 1 anchor " in " ".join(texts(at.caption))
    assert all(not m.proto.delta for m in at.metric[:3])  # not fine-tuned: no "+0.0 points after 0 epochs"
    assert len(at.get("plotly_chart")) == 1 and "Not fine-tuned" in " ".join(texts(at.markdown))  # no one-dot curve
    result = json.loads(next((app_root / "digits" / "samples").glob("*/result.json")).read_text())
    assert result["anchors"]["ids"] == [5] and result["config"]["spread"] == 0.0 and result["n"] == 1


def test_opening_a_workspace_computes_the_zoos_error_sets_once_and_the_first_generation_reuses_them(
    app_root, zoo_error_computations
):
    computed = zoo_error_computations
    workspace = Workspace(app_root / "digits")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state[selection(app_root)] = [5]
    at.run()  # opens the default workspace on the map
    zoo_size = len(load_zoos(workspace)[0].table)
    for _ in range(600):  # the background thread starts after the page; a bound on the waiting, not a speed check
        if computed:
            break
        time.sleep(0.1)
    assert computed == [zoo_size]  # started by opening the workspace, before any generation
    at.run()  # another page run: not started again
    button(at, "Decode this checkpoint").click().run()
    run_until(at, lambda at: "Results" in texts(at.header))
    assert computed == [zoo_size]  # the generation waited for them or found them: computed once


def test_two_selected_checkpoints_give_a_latent_path_beside_the_weight_space_line(app_root):
    at = page("explore")
    at.session_state[selection(app_root)] = [5, 14]
    at.run()
    button(at, "Latent path between these two").click().run()
    assert not at.exception and "Latent path: checkpoint 5 to checkpoint 14" in texts(at.subheader)
    spec = json.loads(at.get("plotly_chart")[1].proto.spec)
    latent, weights = spec["data"]
    assert len(latent["y"]) == len(weights["y"]) == 11 and all(0 <= a <= 1 for a in latent["y"] + weights["y"])
    table = load_zoos(Workspace(app_root / "digits"))[0].table
    assert weights["y"][0] == pytest.approx(table.filter(pl.col("checkpoint") == 5)["test_acc"][0], abs=1e-4)


def test_a_point_of_the_latent_path_is_decoded_on_the_generate_page(app_root):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # the whole app: the button changes page
    at.session_state[selection(app_root)] = [5, 14]
    at.run()
    button(at, "Latent path between these two").click().run()
    slider = at.select_slider(key=state(app_root, keys.PATH_T))
    assert slider.value == 0.5 and len(slider.options) == 11
    assert slider.options[0].startswith("0 (decoded: ") and slider.options[-1].startswith("1 (decoded: ")
    slider.set_value(0.3).run()
    marked = json.loads(at.get("plotly_chart")[1].proto.spec)["layout"]["shapes"]
    assert [shape["x0"] for shape in marked] == [0.3]  # the chart marks the chosen point
    button(at, "Decode the point at t").click().run()
    assert not at.exception
    run_until(at, lambda at: "Results" in texts(at.header))
    caption = " ".join(texts(at.caption))
    assert texts(at.title) == ["Generate"]
    assert "the point t = 0.3 of the latent path from checkpoint 5 to checkpoint 14" in caption
    result = json.loads(next((app_root / "digits" / "samples").glob("*/result.json")).read_text())
    assert result["config"]["path_t"] == 0.3 and result["anchors"]["ids"] == [5, 14] and result["n"] == 1


def test_a_checkpoint_and_a_generated_model_give_a_latent_path_and_a_point_of_it_is_decoded(app_root):
    workspace = Workspace(app_root / "digits")
    config = SampleConfig(anchors="ids:5,14", n=2, finetune_epochs=0, baselines=False, selection="none")
    samples = generate(workspace, config)
    ref = f"{samples.name}:1"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # the whole app: decoding changes page
    at.session_state[selection(app_root)] = [3]
    at.run()
    at.selectbox(key=state(app_root, keys.PATH_TO)).set_value(ref).run()
    button(at, "Latent path to this generated model").click().run()
    assert not at.exception and f"Latent path: checkpoint 3 to generated model 1 of {samples.name}" in texts(
        at.subheader
    )
    latent, weights = json.loads(at.get("plotly_chart")[1].proto.spec)["data"]
    assert len(latent["y"]) == len(weights["y"]) == 11
    table = load_zoos(workspace)[0].table
    assert weights["y"][0] == pytest.approx(table.filter(pl.col("checkpoint") == 3)["test_acc"][0], abs=1e-4)
    assert weights["y"][-1] == pytest.approx(samples.samples_table()["acc_epoch0"][1], abs=1e-4)  # the model
    button(at, "Decode the point at t").click().run()
    assert not at.exception
    run_until(at, lambda at: "Results" in texts(at.header))
    caption = " ".join(texts(at.caption))
    assert f"the point t = 0.5 of the latent path from checkpoint 3 to generated model 1 of {samples.name}" in caption
    records = [json.loads(p.read_text()) for p in (workspace.root / "samples").glob("*/result.json")]
    decoded = next(r for r in records if r["config"]["path_to"] == ref)
    assert decoded["config"]["path_t"] == 0.5 and decoded["anchors"]["ids"] == [3] and decoded["n"] == 1


def test_explore_page_without_an_autoencoder_points_to_training(tiny_zoo_workspace, tmp_path, monkeypatch):
    copy_workspace(tiny_zoo_workspace, tmp_path / "digits")
    monkeypatch.setenv("HYPERREP_WORKSPACES", str(tmp_path))
    at = page("explore").run()
    assert not at.exception and "train one on the Autoencoder page" in texts(at.info)[0]


# ---------------------------------------------------------------- generate and export


def test_generate_page_generates_from_the_map_selection_and_shows_curves_and_novelty(app_root):
    at = page("generate").run()
    assert not at.exception and at.radio[0].value == "best checkpoints"  # nothing selected on the map yet
    at.session_state[selection(app_root)] = [3, 4, 5, 6]
    at.session_state[state(app_root, keys.ANCHOR_SOURCE)] = None
    at.run()
    assert at.radio[0].value == "map selection" and "4 checkpoints selected" in " ".join(texts(at.caption))
    next(n for n in at.number_input if n.label == "Models to generate").set_value(4)
    next(n for n in at.number_input if n.label == "Fine-tuning epochs").set_value(1)
    button(at, "Generate").click()
    run_until(at, lambda at: "Results" in texts(at.header))
    assert len(at.get("plotly_chart")) == 2  # curves and the novelty plane
    assert texts(at.header) == ["Results", "Generate again"]  # the outcome in view, not below the form
    assert all(" points after 1 epoch" in str(m.proto.delta) for m in at.metric[:3])  # not "+32.7%"
    assert "from 4 anchors (a map selection)" in " ".join(texts(at.caption))
    assert "mean validation accuracy out of draws" in " ".join(texts(at.caption))  # subsampling scores on data
    # each metric with its 95% interval over the models, and what the intervals measure
    captions = " ".join(texts(at.caption))
    assert "as is: 95% interval " in captions and " over 4 models" in captions
    assert "95% interval" in at.metric[0].proto.help and "95% interval" in at.metric[3].proto.help
    assert "95% bootstrap intervals over models" in captions and "Generated models as generated: " in captions
    assert "noise line's draws were kept as the generated models were (best of 4 draws on validation)" in captions
    assert "Dashed: the upper envelope of anchor + noise at 5 noise scales" in captions  # which line it is
    assert "source anchors, one per generated model" in at.metric[1].proto.help  # what "Anchors, as is" averages
    assert "Chosen for this zoo: spread " in captions and "kept at each spread tried: 0.25: " in captions
    assert "Anchors: every anchor kept: none's decode keeps 97% of its validation accuracy (best " in captions
    results = list((app_root / "digits" / "samples").glob("*/result.json"))
    assert len(results) == 1 and json.loads(results[0].read_text())["anchors"]["ids"] == [3, 4, 5, 6]
    assert json.loads(results[0].read_text())["config"]["spread"] is None  # chosen for the zoo, as the box said
    # a run made before intervals were recorded: the figures alone, and no error
    record = json.loads(results[0].read_text())
    del record["intervals"], record["novelty_intervals"]
    results[0].write_text(json.dumps(record))
    at.run()
    assert not at.exception and not at.error and "Results" in texts(at.header)
    assert "95% interval" not in " ".join(texts(at.caption)) and "95% interval" not in at.metric[0].proto.help


def test_generate_page_generates_with_ensembles_and_shows_them(app_root):
    at = page("generate").run()
    selection = next(s for s in at.selectbox if s.label == "Selection")
    assert "Diverse" in selection.options and "keep the draws that lower the ensemble's validation NLL" in (
        selection.proto.help
    )
    next(n for n in at.number_input if n.label == "Models to generate").set_value(4)
    next(n for n in at.number_input if n.label == "Fine-tuning epochs").set_value(1)
    next(c for c in at.checkbox if c.label == "Also evaluate as an ensemble").check()
    next(c for c in at.checkbox if c.label == "Choose the spread for this zoo").uncheck()
    next(c for c in at.checkbox if c.label == "Only anchors the autoencoder reproduces").uncheck()
    next(s for s in at.slider if s.label.startswith("Spread")).set_value(0.5)
    button(at, "Generate").click()
    run_until(at, lambda at: "Results" in texts(at.header))
    assert "As an ensemble" in texts(at.subheader) and not at.error
    assert "Chosen for this zoo" not in " ".join(texts(at.caption)) and "Anchors: " not in " ".join(texts(at.caption))
    (record,) = (json.loads(p.read_text()) for p in (app_root / "digits" / "samples").glob("*/result.json"))
    assert record["config"]["spread"] == 0.5  # the spread set by hand, not chosen
    assert record["config"]["anchor_fidelity"] == 0 and "anchor_fidelity" not in record["selection"]  # box off
    metric = next(m for m in at.metric if m.label == "Ensemble of 4")
    assert " points vs anchors" in str(metric.proto.delta) and "NLL " in " ".join(texts(at.caption))
    assert " points vs anchors fine-tuned alike" in " ".join(texts(at.caption))  # fine-tuned 1 epoch: both kept
    assert "Evaluate as an ensemble" not in [b.label for b in at.button]
    assert len(at.get("plotly_chart")) == 3  # curves, novelty plane, ensembles
    next(r for r in at.radio if r.label == "Ensemble figure").set_value("nll").run()
    assert not at.exception and len(at.get("plotly_chart")) == 3
    # beside a run without ensembles in the comparison: its ensemble cells are empty
    generate(Workspace(app_root / "digits"), SampleConfig(n=2, finetune_epochs=0, baselines=False, seed=1))
    at.run()
    assert not at.exception and "Compare runs" in texts(at.header)
    table = at.dataframe[-1].value.set_index("figure")  # one column per run: one of the two is empty
    assert sorted(table.loc["ensemble acc"] == "") == [False, True]
    assert sorted(table.loc["ensemble NLL"] == "") == [False, True]


def test_a_run_without_ensembles_is_evaluated_as_one_from_its_button(app_root):
    generate(Workspace(app_root / "digits"), SampleConfig(n=2, finetune_epochs=0, baselines=False))
    at = page("generate").run()
    assert "As an ensemble" in texts(at.subheader)
    assert not [m for m in at.metric if m.label.startswith("Ensemble of")]
    button(at, "Evaluate as an ensemble").click().run()
    assert not at.exception and not at.error
    progress = [p.proto.text for p in at.get("progress")]  # feedback in the same page run as the click
    assert any("as an ensemble" in p for p in progress) or any(m.label == "Ensemble of 2" for m in at.metric)
    run_until(at, lambda at: any(m.label == "Ensemble of 2" for m in at.metric))
    assert "Evaluate as an ensemble" not in [b.label for b in at.button] and not at.error
    record = json.loads(next((app_root / "digits" / "samples").glob("*/result.json")).read_text())
    assert set(record["ensembles"]) >= {"generated", "anchors", "noise", "deep"}


def test_generate_page_warns_about_degenerate_anchors_before_generating(app_root):
    at = page("generate")
    at.session_state[selection(app_root)] = [2]
    at.session_state[state(app_root, keys.ANCHOR_SOURCE)] = "map selection"
    at.run()
    assert not at.exception and any("only 1 anchor(s)" in w for w in texts(at.warning))
    at.session_state[selection(app_root)] = [0, 3, 6, 9, 12, 15]  # every model's initialisation
    at.run()
    assert any("every anchor is at chance level" in w for w in texts(at.warning))
    at.radio[0].set_value("best checkpoints").run()
    assert not at.warning


def test_generate_from_an_empty_map_selection_is_an_error_box(app_root):
    at = page("generate")
    at.session_state[state(app_root, keys.ANCHOR_SOURCE)] = "map selection"
    at.run()
    button(at, "Generate").click().run()
    assert any("map selection is empty" in e for e in texts(at.error))
    assert not (app_root / "digits" / "samples").exists()


def test_export_page_offers_the_bundle(app_root):
    at = page("export").run()
    assert "No generated models yet" in texts(at.info)[0]
    from core.gen.config import SampleConfig
    from core.pipeline import generate

    generate(Workspace(app_root / "digits"), SampleConfig(n=2, finetune_epochs=1, baselines=False))
    at.run()
    assert not at.exception and len(at.get("download_button")) == 1
    assert "models" in at.json[0].value


def test_a_sane_run_is_trained_from_the_page_mapped_on_explore_and_generates_on_generate(app_root):
    at = page("autoencoder").run()
    at.radio(key=state(app_root, keys.AE_KIND)).set_value("sane").run()
    at.radio(key=state(app_root, keys.AE_OBJECTIVE)).set_value("probe").run()
    assert next(s for s in at.slider if s.label == "Contrastive weight γ").value == 0.5  # the objective's
    numbers = {n.label: n for n in at.number_input}
    for label, value in (
        ("Epochs", 2),
        ("Token width (entries per token)", 16),
        ("Window (tokens per training step)", 8),
        ("Halo (context tokens each side)", 2),
        ("Transformer width", 16),
        ("Embedding size per token", 4),
    ):
        numbers[label].set_value(value)
    button(at, "Train autoencoder").click()
    run_until(at, lambda at: any(s.startswith("Trained `sane-") for s in texts(at.success)))
    assert "sane" in at.dataframe[0].value["kind"].to_list()
    run_key = keys.chosen_run(workspace_id(Workspace(app_root / "digits")))
    trained = json.loads((app_root / "digits" / "ae" / at.session_state[run_key] / "config.json").read_text())
    assert (trained["train"]["objective"], trained["train"]["gamma"]) == ("probe", 0.5)

    explore = page("explore")
    explore.session_state[run_key] = at.session_state[run_key]
    explore.run()
    assert not explore.exception and len(explore.get("plotly_chart")) == 1
    generate = page("generate")
    generate.session_state[run_key] = at.session_state[run_key]
    generate.run()
    assert not generate.exception and "a SANE run" in " ".join(texts(generate.caption))
    next(n for n in generate.number_input if n.label == "Models to generate").set_value(2)
    next(n for n in generate.number_input if n.label == "Fine-tuning epochs").set_value(1)
    next(n for n in generate.number_input if n.label == "Candidates per kept model").set_value(2)
    next(s for s in generate.selectbox if s.label == "Selection").set_value("subsample")
    button(generate, "Generate").click()
    run_until(generate, lambda at: "Results" in texts(at.header))
    assert "subsample selection kept models" in " ".join(texts(generate.caption))
    result = json.loads(next((app_root / "digits" / "samples").glob("*/result.json")).read_text())
    assert result["ae_kind"] == "sane" and result["selection"]["candidates"] == 2


def test_the_workspace_picker_keeps_its_choice_on_every_page(app_root, tiny_zoo_workspace):
    # A pages/ folder beside app.py made Streamlit run its first script run in the legacy multipage mode: the
    # picker changed identity after it, and the first choice snapped back to the default workspace.
    copy_workspace(tiny_zoo_workspace, app_root / "other")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.sidebar.selectbox(key=keys.WORKSPACE_PICKER).select("other").run()
    assert not at.exception and texts(at.title) == ["Explore"]
    assert "no trained autoencoder" in " ".join(texts(at.info))  # the map of `other`, not of digits
    for name in ("zoo", "autoencoder", "explore", "generate", "export", "zoo"):
        at.switch_page(f"views/{name}.py").run()
        assert not at.exception
        assert at.sidebar.selectbox(key=keys.WORKSPACE_PICKER).value == "other", name
