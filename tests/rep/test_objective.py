"""`ae train --objective`: what a run is for sets its contrastive weight where none is given, and runs trained
before the option existed are found again under their names."""

from __future__ import annotations

import json

import pytest

from core.cli import build_parser, commands
from core.errors import UserError
from core.pipeline import train_and_map
from core.rep.autoencoder import AEConfig
from core.rep.loop import OBJECTIVES, TrainConfig
from core.rep.methods import with_kind_defaults
from core.rep.run import load_run, run_name
from tests.conftest import TINY_AE, TINY_TRAIN, copy_workspace


def settings(*options) -> TrainConfig:
    _, train, _ = commands._ae_settings(build_parser().parse_args(["ae", "train", "--workspace", "w", *options]))
    return with_kind_defaults(AEConfig(), train)


def test_the_objective_sets_gamma_unless_gamma_is_given():
    assert OBJECTIVES == {"generate": 0.05, "probe": 0.5}
    assert settings().gamma == 0.05 and settings().objective == "generate"
    assert settings("--objective", "probe").gamma == 0.5
    assert settings("--objective", "probe", "--gamma", "0.2").gamma == 0.2
    assert settings("--gamma", "0.3").gamma == 0.3
    assert run_name(AEConfig(), TrainConfig(objective="probe")) != run_name(AEConfig(), TrainConfig())
    with pytest.raises(UserError, match="objective 'other'"):
        TrainConfig(objective="other")


def test_an_unknown_objective_is_refused_by_the_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["ae", "train", "--workspace", str(tmp_path), "--objective", "other"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--objective" in err and "probe" in err


def test_a_run_trained_probe_first_records_its_objective_and_gamma(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    train = TrainConfig(**{**TINY_TRAIN.__dict__, "objective": "probe"})
    run = train_and_map(workspace, TINY_AE, train, evaluate=False)
    stored = run.files.read_config()["train"]
    assert (stored["objective"], stored["gamma"]) == ("probe", 0.5)


def test_a_run_stored_before_objectives_existed_is_found_again(tiny_ae_workspace, tmp_path):
    """A finished run whose record has no `objective` nor `lr_floor` (written before they existed, as the shipped
    digits workspace's run was) is the run the same settings name: asked for again it is loaded, not refused as a
    run of other settings (the shipped workspace's `ae train` with the defaults was refused before)."""
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    files = load_run(workspace).files
    record = json.loads(files.config.read_text())
    del record["train"]["objective"], record["train"]["lr_floor"]
    files.config.write_text(json.dumps(record))
    again = train_and_map(workspace, TINY_AE, TINY_TRAIN, evaluate=False)
    assert again.name == files.name == run_name(TINY_AE, TINY_TRAIN)
