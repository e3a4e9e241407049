"""Ensembles: the figures on hand-made probabilities, the greedy selection, and ensembles of a samples run (groups,
provenance, the record, the CLI and the exported ensemble)."""

import json
import math
import zipfile
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from core import pipeline
from core.cli.describe import describe_ensembles
from core.errors import UserError
from core.gen.anchors import resolve_anchors
from core.gen.config import SampleConfig
from core.gen.ensemble import (
    FIGURES,
    brier_score,
    ensemble_figures,
    ensemble_sizes,
    ensemble_table,
    expected_calibration_error,
    greedy_ensemble,
    negative_log_likelihood,
)
from core.gen.ensemble_groups import deep_rows, ensemble_groups
from core.gen.selection import Selection
from core.pipeline import ensembles, generate
from core.rep.run import load_run
from core.store.runs import SamplesRun
from core.zoo.data import load_dataset
from core.zoo.model_zoo import combined_table, load_zoos
from core.zoo.population import model_probabilities
from tests.conftest import copy_workspace
from tests.gen.bundle_check import run_in_bundle

LABELS = torch.tensor([0, 0, 1, 1])


def member(right: list[bool], sure: float = 0.9, unsure: float = 0.6) -> torch.Tensor:
    """Probabilities [4, 2] for LABELS: confidently right (sure) where `right`, else wrong but less sure."""
    rows = []
    for label, ok in zip(LABELS.tolist(), right):
        p_true = sure if ok else 1 - unsure
        rows.append([p_true, 1 - p_true] if label == 0 else [1 - p_true, p_true])
    return torch.tensor(rows, dtype=torch.float64)


def test_identical_members_have_no_disagreement_and_no_gain():
    one = member([True, False, True, True])
    figures = ensemble_figures(torch.stack([one, one, one]), LABELS)
    assert figures["disagreement"] == 0 and figures["gain"] == pytest.approx(0)
    assert figures["acc"] == figures["vote_acc"] == 0.75
    assert figures["nll"] == pytest.approx(ensemble_figures(one[None], LABELS)["nll"])


def test_complementary_members_are_right_everywhere_together():
    first, second = member([True, True, False, False]), member([False, False, True, True])
    figures = ensemble_figures(torch.stack([first, second]), LABELS)
    assert figures["acc"] == 1.0 and figures["gain"] == pytest.approx(0.5) and figures["disagreement"] == 1.0
    # The average gives the true class (0.9 + 0.4) / 2 = 0.65 on every input.
    assert figures["nll"] == pytest.approx(-math.log(0.65))


def test_a_majority_vote_counts_members_and_breaks_ties_by_the_averaged_probabilities():
    right, wrong_sure = member([True] * 4, sure=0.55), member([False] * 4, unsure=0.99)
    figures = ensemble_figures(torch.stack([right, right, wrong_sure]), LABELS)
    assert figures["vote_acc"] == 1.0 and figures["acc"] == 0.0  # two votes beat one; the average is swayed
    tie = ensemble_figures(torch.stack([right, wrong_sure]), LABELS)
    assert tie["vote_acc"] == 0.0  # one vote each: the class with the higher average (0.72 wrong) wins


def test_nll_is_that_of_the_averaged_probabilities_not_the_mean_of_the_members():
    a = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    b = torch.tensor([[0.5, 0.5], [0.6, 0.4]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    expected = -(math.log(0.7) + math.log(0.6)) / 2
    assert negative_log_likelihood((a + b) / 2, labels) == pytest.approx(expected)
    assert ensemble_figures(torch.stack([a, b]), labels)["nll"] == pytest.approx(expected)


def test_ece_and_brier_on_a_hand_computed_case():
    probs = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.3, 0.7]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 0])
    # Bins of width 1/15: 0.95 (two inputs, one right: |0.5 - 0.95| x 2/4), 0.65 (right: 0.35 x 1/4), 0.7 (wrong:
    # 0.7 x 1/4).
    assert expected_calibration_error(probs, labels) == pytest.approx(0.45 * 0.5 + 0.35 * 0.25 + 0.7 * 0.25)
    # Brier: sum over classes of squared errors: 2 x 0.05^2, 2 x 0.95^2, 2 x 0.35^2, 2 x 0.7^2, averaged.
    assert brier_score(probs, labels) == pytest.approx(2 * (0.05**2 + 0.95**2 + 0.35**2 + 0.7**2) / 4)
    sure = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert expected_calibration_error(sure, torch.tensor([0, 1])) == 0 and brier_score(sure, torch.tensor([0, 1])) == 0


def test_the_table_covers_the_sizes_with_an_interval_over_subsets():
    rng = torch.Generator().manual_seed(0)
    members = torch.softmax(3 * torch.randn(12, 50, 3, generator=rng), -1)
    labels = torch.randint(0, 3, (50,), generator=rng)
    table = ensemble_table(members, labels, draws=12, seed=1)
    assert ensemble_sizes(12) == [1, 2, 4, 8, 12] and list(table) == ["1", "2", "4", "8", "12"]
    assert all(set(row) == set(FIGURES) for row in table.values())
    single = [ensemble_figures(members[[i]], labels)["acc"] for i in range(12)]
    assert table["1"]["acc"]["mean"] == pytest.approx(np.mean(single))  # size 1: every member once
    assert table["1"]["acc"]["lo"] >= min(single) and table["1"]["acc"]["hi"] <= max(single)
    whole = table["12"]
    assert whole["acc"]["lo"] == whole["acc"]["mean"] == whole["acc"]["hi"]  # one subset: the whole group
    assert whole["nll"]["mean"] == pytest.approx(ensemble_figures(members, labels)["nll"])
    assert table == ensemble_table(members, labels, draws=12, seed=1)  # seeded


def test_greedy_selection_prefers_a_complement_to_a_copy_and_may_repeat():
    true = np.array([[0.95, 0.95, 0.95, 0.1], [0.95, 0.95, 0.95, 0.1], [0.1, 0.6, 0.6, 0.95]])
    picks, path = greedy_ensemble(true, 2)
    assert picks.tolist() == [0, 2] and path[1] < path[0]
    alone, _ = greedy_ensemble(np.array([[0.9, 0.9], [0.5, 0.5]]), 3)
    assert alone.tolist() == [0, 0, 0]  # nothing complements the best: it is kept three times


def test_the_deep_ensemble_takes_final_epochs_from_distinct_inits_first():
    table = pl.DataFrame(
        {
            "model_id": [m for m in range(6) for _ in range(2)],
            "epoch": [0, 5] * 6,
            "init_seed": [s for s in (1, 1, 1, 2, 2, 3) for _ in range(2)],
            "activation": ["relu"] * 10 + ["tanh"] * 2,
        }
    )
    rows = deep_rows(table, "relu", 3, np.random.default_rng(0))
    picked = table[rows.tolist()]
    assert picked["epoch"].to_list() == [5, 5, 5] and picked["init_seed"].n_unique() == 2  # only 2 relu inits
    assert picked["model_id"].n_unique() == 3
    assert len(deep_rows(table, "relu", 10, np.random.default_rng(0))) == 5  # every relu model, no more


# ---------------------------------------------------------------- a samples run's ensembles


def flat(tree: dict, prefix: str = "") -> dict[str, float]:
    """{"generated/4/acc/mean": x, ...} of a nested record."""
    out = {}
    for key, value in tree.items():
        out |= flat(value, f"{prefix}{key}/") if isinstance(value, dict) else {prefix + key: value}
    return out


@pytest.fixture(scope="module")
def with_ensembles(tiny_ae_workspace, tmp_path_factory):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path_factory.mktemp("ensembles") / "ws")
    config = SampleConfig(n=4, finetune_epochs=1, baselines=False, anchors="top:0.5", ensemble=True)
    return workspace, generate(workspace, config)


def test_a_samples_run_records_its_ensembles_and_reloads(with_ensembles):
    workspace, run = with_ensembles
    assert set(run.ensembles) == {"generated", "finetuned", "anchors", "anchors_finetuned", "noise", "average", "deep"}
    assert list(run.ensembles["generated"]) == ["1", "2", "4"]
    reloaded = SamplesRun.load(workspace, run.name)
    assert reloaded.ensembles == json.loads(json.dumps(run.ensembles))
    assert reloaded.ensemble_settings["anchors"] == "source anchors"
    assert reloaded.ensemble_settings["noise_selection"] == "subsample"


def test_the_average_group_is_means_of_three_anchors(tiny_ae_workspace):
    run, zoos = load_run(tiny_ae_workspace), load_zoos(tiny_ae_workspace)
    anchors = resolve_anchors(zoos, combined_table(zoos), "top:0.5")
    prepared = run.prepare(anchors.zoo)
    aligned = prepared.aligned[torch.from_numpy(anchors.rows)]
    sources = np.array(anchors.ids[:3])
    groups, _ = ensemble_groups(
        anchors, prepared, aligned[:3], {}, sources, Selection("none"), load_dataset("digits"), seed=2
    )
    triples = torch.stack([aligned[[a, b, c]].mean(0) for a in range(len(aligned)) for b in range(len(aligned))
                           for c in range(len(aligned))])  # fmt: skip
    assert len(groups["average"]) == 3
    for member in groups["average"]:
        assert (triples - member).abs().amax(1).min() < 1e-5  # the mean of some three anchors
    assert not torch.equal(groups["average"], groups["noise"])


def test_the_fine_tuned_anchors_are_the_source_anchors_after_the_runs_own_fine_tuning(with_ensembles):
    workspace, run = with_ensembles
    kept = SamplesRun.load(workspace, run.name).weights()
    zoo, data = load_zoos(workspace)[0], load_dataset("digits")
    spec = zoo.spec.with_activation(run.activation)
    accuracy = (model_probabilities(spec, kept["anchors_finetuned"], data.x_test).argmax(-1) == data.y_test).double()
    assert accuracy.mean(1).mean().item() == pytest.approx(run.curves["anchors"][-1], abs=1e-6)  # the curve's end
    row_of = {c: r for r, c in enumerate(zoo.table["checkpoint"].to_list())}
    sources = SamplesRun.load(workspace, run.name).source_anchors()
    before = load_run(workspace).prepare(zoo).aligned[torch.tensor([row_of[c] for c in sources])]
    assert before.shape == kept["anchors_finetuned"].shape and not torch.allclose(before, kept["anchors_finetuned"])


def test_a_run_fine_tuned_without_ensembles_gains_them_later_without_fine_tuned_anchors(
    tiny_ae_workspace, tmp_path, run_cli
):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    run = generate(workspace, SampleConfig(n=2, finetune_epochs=1, baselines=False, anchors="top:0.5"))
    assert set(SamplesRun.load(workspace, run.name).weights()) == {"generated", "finetuned"}  # nothing more kept
    text = run_cli("ensemble", "--workspace", workspace.root, "--samples", run.name)
    assert text.code == 0 and "source anchors, fine-tuned: not kept" in text.out
    later = SamplesRun.load(workspace, run.name)
    assert "finetuned" in later.ensembles and "anchors_finetuned" not in later.ensembles
    assert later.ensemble_settings["anchors_finetuned"].startswith("not kept")


def test_a_point_of_a_latent_path_keeps_no_fine_tuned_anchors_and_reads_back(tiny_ae_workspace, tmp_path):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    config = SampleConfig(anchors="ids:5,14", n=1, spread=0.0, selection="none", path_t=0.5, baselines=False)
    run = generate(workspace, replace(config, finetune_epochs=1, ensemble=True))  # its anchors group: both ends
    assert set(SamplesRun.load(workspace, run.name).weights()) == {"generated", "finetuned"}
    assert "finetuned" in run.ensembles and "anchors_finetuned" not in run.ensembles


def test_every_generated_model_names_its_source_anchor(with_ensembles):
    workspace, run = with_ensembles
    sources = SamplesRun.load(workspace, run.name).source_anchors()
    assert len(sources) == 4 and set(sources) <= set(run.anchors["ids"])


def test_the_deep_group_holds_final_epoch_models_of_distinct_inits(with_ensembles):
    workspace, run = with_ensembles
    zoo = load_zoos(workspace)[0]
    rows = deep_rows(zoo.table, run.activation, 4, np.random.default_rng(0))
    chosen = zoo.table[rows.tolist()]
    assert (chosen["epoch"] == zoo.table["epoch"].max()).all() and chosen["model_id"].n_unique() == 4
    assert chosen["init_seed"].n_unique() == min(4, zoo.table["init_seed"].n_unique())
    assert run.ensemble_settings["deep_inits"] == min(4, zoo.table["init_seed"].n_unique())


def test_the_ensemble_command_reads_or_recomputes_the_same_figures(with_ensembles, run_cli):
    workspace, run = with_ensembles
    result = run_cli("ensemble", "--workspace", workspace.root, "--samples", run.name, "--json")
    assert result.code == 0 and result.json["ensembles"] == json.loads(json.dumps(run.ensembles))
    refreshed = ensembles(workspace, run.name, refresh=True)  # from the files: the same groups, the same figures
    assert flat(refreshed.ensembles) == pytest.approx(flat(run.ensembles), abs=1e-6)
    text = run_cli("ensemble", "--workspace", workspace.root, "--samples", run.name)
    assert text.code == 0 and "deep" in text.out and "generated" in text.out
    bad = run_cli("ensemble", "--workspace", workspace.root, "--samples", "nope", "--json")
    assert bad.code == 2 and "no such samples run" in bad.err and len(bad.err.strip().splitlines()) == 1


def test_ensembles_of_a_run_rewritten_meanwhile_are_not_written_into_it(with_ensembles, tmp_path, monkeypatch):
    workspace, run = with_ensembles
    copy = copy_workspace(workspace, tmp_path / "ws")
    record = SamplesRun.load(copy, run.name).result_path
    computing = pipeline.ensemble_section

    def rewritten_meanwhile(*args):
        section = computing(*args)
        other = json.loads(record.read_text()) | {"ensembles": None, "ensemble_settings": None}
        record.unlink()  # another generation of the same name swaps in its own record
        record.write_text(json.dumps(other))
        return section

    monkeypatch.setattr(pipeline, "ensemble_section", rewritten_meanwhile)
    with pytest.raises(UserError, match="another command rewrote this run"):
        ensembles(copy, run.name, refresh=True)
    assert SamplesRun.load(copy, run.name).ensembles is None  # the other command's record stays as it wrote it


def test_an_old_run_gains_its_ensembles_on_request(tiny_ae_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    run = generate(workspace, SampleConfig(n=2, finetune_epochs=0, baselines=False, anchors="top:0.5"))
    assert run.ensembles is None and SamplesRun.load(workspace, run.name).ensembles is None
    table = pl.read_parquet(run.samples_path).drop("source_anchor")  # as a run from before provenance
    table.write_parquet(run.samples_path)
    record = json.loads(run.result_path.read_text())
    for key in ("ensembles", "ensemble_settings"):
        del record[key]
    run.result_path.write_text(json.dumps(record))
    result = run_cli("ensemble", "--workspace", workspace.root, "--samples", run.name, "--json")
    assert result.code == 0 and set(result.json["ensembles"]) == {"generated", "anchors", "noise", "average", "deep"}
    assert result.json["ensemble_settings"]["anchors"].startswith("drawn at random")
    assert SamplesRun.load(workspace, run.name).ensembles is not None  # written into the record


def test_a_malformed_ensemble_section_is_refused_naming_the_file(with_ensembles, tmp_path):
    workspace, run = with_ensembles
    copy = copy_workspace(workspace, tmp_path / "ws")
    path = SamplesRun.folder_of(copy, run.name) / "result.json"
    record = json.loads(path.read_text())
    del record["ensembles"]["generated"]["2"]["nll"]
    path.write_text(json.dumps(record))
    with pytest.raises(Exception, match="ensembles"):
        SamplesRun.load(copy, run.name)


def test_spread_zero_decodes_the_source_anchor(tiny_ae_workspace, tmp_path):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    config = SampleConfig(n=6, finetune_epochs=0, baselines=False, anchors="top:0.5", spread=0.0, selection="none")
    run = generate(workspace, config)
    ae, zoo = load_run(workspace), load_zoos(workspace)[0]
    row_of = {c: r for r, c in enumerate(zoo.table["checkpoint"].to_list())}
    rows = np.array([row_of[s] for s in run.source_anchors()])
    assert len(set(run.source_anchors())) > 1  # six draws from three anchors: not all from one
    assert torch.allclose(run.weights()["generated"], ae.reconstruct(ae.prepare(zoo), rows), atol=1e-5)


def test_the_exported_ensemble_predicts_the_engines_averaged_probabilities(with_ensembles, tmp_path, run_cli):
    workspace, run = with_ensembles
    bundle = tmp_path / "ensemble.zip"
    result = run_cli(
        "export", "--workspace", workspace.root, "--samples", run.name, "--ensemble", "--out", bundle, "--json"
    )
    assert result.code == 0 and result.json["models"] == 4
    unpacked = tmp_path / "fresh"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
        text = b"".join(archive.read(n) for n in archive.namelist() if n.endswith((".json", ".md", ".py"))).decode()
    assert str(workspace.root) not in text and str(tmp_path) not in text  # no paths of this machine
    card = json.loads((unpacked / "card.json").read_text())
    assert [m["sample"] for m in card["ensemble"]["members"]] == [0, 1, 2, 3]
    assert [m["source_anchor"] for m in card["ensemble"]["members"]] == run.source_anchors()
    assert card["ensemble"]["figures"] == json.loads(json.dumps(run.ensembles["generated"]["4"]))
    script = """
import json, sys
import numpy as np, torch
import model
nets = model.load_ensemble()
print(json.dumps(model.predict(nets, torch.from_numpy(np.load(sys.argv[1]))).tolist()))
"""
    predicted = torch.tensor(run_in_bundle(unpacked, "digits", script))
    data = load_dataset("digits")
    spec = load_zoos(workspace)[0].spec.with_activation(run.activation)
    engine = model_probabilities(spec, run.weights()["generated"], data.x_test).mean(0)
    assert torch.allclose(predicted, engine, atol=1e-5)


def test_sample_with_ensemble_prints_the_table_and_puts_it_in_the_json(tiny_ae_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    args = ("sample", "--workspace", workspace.root, "--n", 2, "--finetune-epochs", 0, "--no-baselines", "--quiet")
    args += ("--anchors", "top:0.5", "--selection", "diverse", "--ensemble")
    text = run_cli(*args)
    assert text.code == 0 and "ensembles on digits test (359 images)" in text.out
    assert all(f"  {group}" in text.out for group in ("generated", "anchors", "noise", "deep"))
    result = run_cli(*args, "--json").json
    assert set(result["ensembles"]) == {
        "generated",
        "anchors",
        "noise",
        "average",
        "deep",
    }  # no fine-tuning: no finetuned
    assert result["selection"]["mode"] == "diverse" and 1 <= result["selection"]["distinct"] <= 2
    assert result["ensemble_settings"]["noise_selection"] == "diverse"
    plain = run_cli(*args[:-1], "--json").json  # the same run without --ensemble: same name, same models
    assert plain["samples_run"] == result["samples_run"] and plain["ensembles"] is None


def test_the_ensemble_table_lists_sizes_in_numeric_order():
    figure = {"mean": 0.5, "lo": 0.4, "hi": 0.6}
    row = dict.fromkeys(("acc", "vote_acc", "nll", "ece", "brier", "disagreement", "gain"), figure)
    result = {"ensembles": {"generated": {"1": row, "16": row, "2": row}}}  # as sorted JSON keys read back
    sizes = [line.split()[1] for line in describe_ensembles(result) if line.strip().startswith("generated")]
    assert sizes == ["1", "2", "16"]
