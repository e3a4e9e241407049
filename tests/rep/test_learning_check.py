"""The learning-rate schedule (warm-up, cosine decay to a floor), the presets' training settings, and the check
after the first epochs that a run learns (core/rep/learning_check.py)."""

from __future__ import annotations

import pytest

from core.cli import build_parser, commands
from core.errors import UserError
from core.rep.learning_check import check_epoch, learning_warning
from core.rep.loop import TrainConfig, schedule
from core.rep.run import load_run
from core.rep.sane import PRESETS
from tests.conftest import copy_workspace


def test_schedule_warms_up_then_decays_by_cosine_to_its_floor():
    factor = schedule(warmup_steps=2, total_steps=6, floor=0.1)
    # warm-up: 1/2, 2/2; then progress (step - 2) / 4 through a cosine from 1 down to the floor 0.1:
    # 0.1 + 0.9 * (1 + cos(pi * progress)) / 2 = 1, 0.1 + 0.45 * (1 + 0.70711) = 0.86820, 0.55, 0.23180, 0.1
    expected = [0.5, 1.0, 1.0, 0.868198, 0.55, 0.231802, 0.1, 0.1]
    assert [factor(step) for step in range(8)] == pytest.approx(expected, abs=1e-6)
    assert schedule(2, 6)(4) == pytest.approx(0.5)  # without a floor, half way is half the rate


def test_a_floor_outside_zero_to_one_is_refused():
    with pytest.raises(UserError, match="floor"):
        TrainConfig(lr_floor=1.5)


def rows(values):
    return [{"epoch": epoch, "val_reconstruction": value} for epoch, value in enumerate(values, start=1)]


def test_the_check_waits_twice_the_warm_up_and_skips_runs_too_short_to_judge():
    assert check_epoch(TrainConfig(epochs=60, warmup_epochs=5)) == 10
    assert check_epoch(TrainConfig(epochs=20, warmup_epochs=1)) == 5  # at least 5 epochs
    assert check_epoch(TrainConfig(epochs=9, warmup_epochs=1)) is None  # 5 is past half of 9
    assert learning_warning(rows([1.0] * 4), TrainConfig(epochs=4, warmup_epochs=1, structure_weight=1.0)) is None


def test_the_check_fires_only_for_a_run_stuck_at_the_mean():
    config = TrainConfig(epochs=20, warmup_epochs=1, lr=1e-4, structure_weight=1.0)
    stuck = learning_warning(rows([1.05, 1.03, 1.02, 1.02, 1.01, 0.5]), config)  # learns only after the check
    assert "after 5 epochs" in stuck and "1.01" in stuck and "try --lr 0.001" in stuck
    assert learning_warning(rows([1.05, 0.95, 0.89, 0.95, 1.0]), config) is None  # reached 0.89 < 0.9 once
    assert learning_warning(rows([1.05, 1.03, 1.02, 1.02]), config) is None  # not at the check epoch yet
    behaviour_only = TrainConfig(epochs=20, warmup_epochs=1, structure_weight=0.0)
    assert learning_warning(rows([1.0] * 6), behaviour_only) is None


def test_a_run_that_does_not_learn_says_so_in_its_record_and_on_the_command_line(tiny_zoo_workspace, tmp_path, run_cli):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    sizes = ("--token-width", 16, "--window", 8, "--halo", 2, "--d-model", 16, "--latent-dim", 4)
    result = run_cli("ae", "train", "--workspace", workspace.root, "--kind", "sane", *sizes, "--epochs", 10,
                     "--warmup-epochs", 1, "--batch-size", 8, "--lr", 1e-9, "--json")  # fmt: skip
    assert result.code == 0, result.err  # a warning, not a failure
    (warning,) = result.json["warnings"]
    assert "not learning: after 5 epochs" in warning and "try --lr 1e-08" in warning
    assert result.err.count(f"warning: {warning}") == 2  # while training, at epoch 5, and with the result
    assert load_run(workspace).files.read_config()["warnings"] == [warning]


@pytest.fixture
def on_a_gpu(monkeypatch):
    """`ae train` believing it runs on CUDA (the presets are GPU only); nothing is trained."""
    monkeypatch.setattr(commands, "resolve_device", lambda device: "cuda")


def settings(*options):
    return commands._ae_settings(build_parser().parse_args(["ae", "train", "--workspace", "w", *options]))


def test_a_preset_brings_its_schedule_unless_an_option_is_given_even_at_the_default_value(on_a_gpu):
    ae, train, _ = settings("--kind", "sane", "--preset", "paper")
    assert (ae.d_model, train.lr, train.lr_floor, train.warmup_epochs) == (2048, 1e-4, 0.1, 5)
    assert PRESETS["paper"]["lr"] == 1e-4
    _, train, _ = settings("--kind", "sane", "--preset", "paper", "--lr", "1e-3", "--lr-floor", "0")
    assert (train.lr, train.lr_floor) == (1e-3, 0.0)  # 1e-3 is TrainConfig's default, given on purpose
    _, train, _ = settings("--kind", "sane")
    assert train == TrainConfig()  # without a preset, the options left out are the defaults
