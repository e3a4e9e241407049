"""Latent paths: decoded models along the line between two embeddings, beside the weight-space line."""

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from core.errors import UserError
from core.gen.anchors import resolve_anchors
from core.gen.config import SampleConfig
from core.gen.draw import draw_models
from core.gen.path import latent_path
from core.pipeline import generate
from core.rep.run import load_run
from core.store.runs import SamplesRun
from core.zoo.data import load_dataset
from core.zoo.model_zoo import combined_table, load_zoos
from core.zoo.population import evaluate_models, recalibrate_norm_statistics
from tests.conftest import copy_workspace


def test_the_weight_line_ends_at_the_checkpoints_and_the_latent_line_is_decoded(tiny_ae_workspace):
    path = latent_path(tiny_ae_workspace, None, (5, 14), steps=5)
    assert path["t"].to_list() == [0.0, 0.25, 0.5, 0.75, 1.0]
    table = load_zoos(tiny_ae_workspace)[0].table
    accuracy = {c: table.filter(pl.col("checkpoint") == c)["test_acc"][0] for c in (5, 14)}
    assert path["weights"][0] == pytest.approx(accuracy[5], abs=1e-4)
    assert path["weights"][-1] == pytest.approx(accuracy[14], abs=1e-4)
    assert path["latent"].is_between(0, 1).all() and path["latent"].n_unique() > 1


def test_a_path_needs_two_different_checkpoints(tiny_ae_workspace):
    with pytest.raises(UserError, match="two different models"):
        latent_path(tiny_ae_workspace, None, (5, 5))


def _draw_at(workspace, t: float, ends=(5, 14)) -> tuple[torch.Tensor, torch.Tensor]:
    """(the model drawn at t on the path between `ends`, the ends' reconstructions), both recalibrated."""
    run, zoos = load_run(workspace), load_zoos(workspace)
    table = combined_table(zoos)
    anchors = resolve_anchors(zoos, table, f"ids:{ends[0]},{ends[1]}")
    prepared, data = run.prepare(anchors.zoo), load_dataset("digits")
    config = SampleConfig(anchors=f"ids:{ends[0]},{ends[1]}", n=1, spread=0.0, selection="none", path_t=t)
    drawn, _, _, _ = draw_models(run, prepared, anchors, config, data, np.random.default_rng(0), "cpu", table)
    ends_decoded = recalibrate_norm_statistics(anchors.spec, run.reconstruct(prepared, anchors.rows), data.x_train)
    return drawn, ends_decoded


def test_the_path_point_at_0_and_1_is_the_ends_reconstruction(tiny_ae_workspace):
    at_a, ends = _draw_at(tiny_ae_workspace, 0.0)
    at_b, _ = _draw_at(tiny_ae_workspace, 1.0)
    assert at_a.shape == (1, ends.shape[1])
    assert torch.allclose(at_a[0], ends[0], atol=1e-5) and torch.allclose(at_b[0], ends[1], atol=1e-5)
    middle, _ = _draw_at(tiny_ae_workspace, 0.5)
    assert torch.cdist(middle, ends).min() > 1e-3  # inside the line: neither end


def test_a_samples_run_of_a_path_point_records_t_and_matches_the_path(tiny_ae_workspace, tmp_path):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    config = SampleConfig(
        anchors="ids:5,14", n=1, spread=0.0, finetune_epochs=0, baselines=False, selection="none", path_t=0.5
    )
    record = generate(workspace, config).to_json()
    assert record["config"]["path_t"] == 0.5 and record["anchors"]["ids"] == [5, 14] and record["n"] == 1
    assert SamplesRun.load(workspace, record["samples_run"]).config["path_t"] == 0.5  # read back from disk
    path = latent_path(workspace, None, (5, 14), steps=3)  # t = 0, 0.5, 1
    assert record["curves"]["generated"][0] == pytest.approx(path["latent"][1], abs=0.01)  # the chart's point
    # its source anchors are the two checkpoints it decodes: the weight-space line's ends
    ends_acc = (path["weights"][0] + path["weights"][2]) / 2
    assert record["curves"]["anchors"][0] == pytest.approx(ends_acc, abs=1e-6)
    assert record["source_ratio"]["as_generated"] == pytest.approx(record["curves"]["generated"][0] / ends_acc)
    again = generate(workspace, replace(config, path_t=0.0)).to_json()
    assert again["samples_run"] != record["samples_run"]  # another point is another run
    assert again["novelty"]["decoded_min_l2_median"] == pytest.approx(0.0, abs=1e-3)  # t = 0: the first end's decode


def test_a_path_point_needs_two_anchors_and_t_in_0_to_1(tiny_ae_workspace, tmp_path, run_cli):
    with pytest.raises(UserError, match="must lie in 0..1"):
        SampleConfig(path_t=1.5)
    with pytest.raises(UserError, match="needs two checkpoints"):
        generate(tiny_ae_workspace, SampleConfig(anchors="ids:5", n=1, path_t=0.5))
    base = ("sample", "--workspace", tiny_ae_workspace.root, "--n", 1, "--json", "--quiet")
    assert run_cli(*base, "--path-t", "nan").code == 2
    refused = run_cli(*base, "--anchors", "top:0.5", "--path-t", "0.5")
    assert refused.code == 2 and "needs two checkpoints" in refused.err
    copy = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    argv = ("sample", "--workspace", copy.root, "--anchors", "ids:5,14", "--path-t", "0.25", "--spread", 0, "--n", 1)
    done = run_cli(*argv, "--selection", "none", "--finetune-epochs", 0, "--no-baselines", "--quiet")
    assert done.code == 0 and "(ids:5,14) at t = 0.25 of the latent path between them" in done.out


# ---------------------------------------------------------------- a checkpoint and a generated model


@pytest.fixture(scope="module")
def with_generated(tiny_ae_workspace, tmp_path_factory):
    """(a copy of the tiny workspace holding one samples run of two generated models, that run's name)."""
    workspace = copy_workspace(tiny_ae_workspace, tmp_path_factory.mktemp("generated") / "ws")
    config = SampleConfig(anchors="ids:5,14", n=2, finetune_epochs=0, baselines=False, selection="none")
    return workspace, generate(workspace, config).name


def _reconstruction_accuracy(workspace, weights: torch.Tensor) -> float:
    """Test accuracy of the run's reconstruction of aligned `weights` [1, params], recalibrated as a path is."""
    run, zoo = load_run(workspace), load_zoos(workspace)[0]
    prepared, data = run.prepare(zoo), load_dataset("digits")
    decoded = run.decode(prepared, run.encode(prepared, weights))
    decoded = recalibrate_norm_statistics(zoo.spec, decoded, data.x_train)
    return float(evaluate_models(zoo.spec, decoded, data.x_test, data.y_test)[1][0])


def test_a_path_to_a_generated_model_ends_at_it_and_at_its_reconstruction(with_generated):
    workspace, name = with_generated
    path = latent_path(workspace, None, (3, f"{name}:1"), steps=3)
    samples = SamplesRun.load(workspace, name)
    generated = samples.weights()["generated"][1:2]
    zoo = load_zoos(workspace)[0]
    row = zoo.table["checkpoint"].to_list().index(3)
    assert path["weights"][0] == pytest.approx(zoo.table["test_acc"][row], abs=1e-4)  # the checkpoint itself
    assert path["weights"][-1] == pytest.approx(samples.samples_table()["acc_epoch0"][1], abs=1e-4)  # the model
    aligned = load_run(workspace).prepare(zoo).aligned[row : row + 1]
    assert path["latent"][0] == pytest.approx(_reconstruction_accuracy(workspace, aligned), abs=1e-4)
    assert path["latent"][-1] == pytest.approx(_reconstruction_accuracy(workspace, generated), abs=1e-4)
    other = latent_path(workspace, None, (3, f"{name}:0"), steps=3)
    assert other["weights"][-1] == pytest.approx(samples.samples_table()["acc_epoch0"][0], abs=1e-4)


def test_a_path_to_a_generated_model_refuses_what_it_cannot_join(with_generated, tmp_path):
    workspace, name = with_generated
    for ref, message in (
        (f"{name}:2", "holds models 0 to 1"),
        (f"{name}:x", "does not name a generated model"),
        ("no-such-run:0", "no such samples run"),
    ):
        with pytest.raises(UserError, match=message):
            latent_path(workspace, None, (3, ref))
    copy = copy_workspace(workspace, tmp_path / "ws")
    record = json.loads((copy.root / "samples" / name / "result.json").read_text())
    (copy.root / "samples" / name / "result.json").write_text(json.dumps({**record, "ae_run": "another"}))
    with pytest.raises(UserError, match="decoded by autoencoder run another"):  # another run's aligned frame
        latent_path(copy, None, (3, f"{name}:0"))


def test_a_point_of_a_path_to_a_generated_model_is_decoded_into_a_run(with_generated, tmp_path):
    workspace = copy_workspace(with_generated[0], tmp_path / "ws")
    to = f"{with_generated[1]}:1"
    path = latent_path(workspace, None, (3, to), steps=3)  # t = 0, 0.5, 1
    config = SampleConfig(
        anchors="ids:3", n=1, spread=0.0, finetune_epochs=0, baselines=False, selection="none", path_t=1.0, path_to=to
    )
    for t, point in ((1.0, 2), (0.5, 1), (0.0, 0)):
        record = generate(workspace, replace(config, path_t=t)).to_json()
        assert record["config"]["path_to"] == to and record["anchors"]["ids"] == [3]
        assert record["curves"]["generated"][0] == pytest.approx(path["latent"][point], abs=0.01)
        assert record["curves"]["anchors"][0] == pytest.approx(path["weights"][0], abs=1e-6)  # its one checkpoint
    with pytest.raises(UserError, match="starts at one checkpoint"):
        generate(workspace, replace(config, anchors="ids:3,5"))
    with pytest.raises(UserError, match="needs a position on the path"):
        SampleConfig(anchors="ids:3", path_to=to)


def test_the_command_line_decodes_a_point_of_a_path_to_a_generated_model(with_generated, tmp_path, run_cli):
    workspace = copy_workspace(with_generated[0], tmp_path / "ws")
    to = f"{with_generated[1]}:0"
    base = ("sample", "--workspace", workspace.root, "--anchors", "ids:3", "--spread", 0, "--n", 1, "--quiet")
    base += ("--selection", "none", "--finetune-epochs", 0, "--no-baselines")
    done = run_cli(*base, "--path-t", "0.5", "--path-to", to)
    assert done.code == 0 and f"at t = 0.5 of the latent path from it to generated model {to}" in done.out
    assert run_cli(*base, "--path-to", to).code == 2  # no position on the path
    assert run_cli(*base, "--path-t", "0.5", "--path-to", "nonsense").code == 2
    refused = run_cli(*base, "--path-t", "0.5", "--path-to", f"{with_generated[1]}:9")
    assert refused.code == 2 and "holds models 0 to 1" in refused.err
