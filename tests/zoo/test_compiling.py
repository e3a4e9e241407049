"""`zoo generate --compile`: when compiling the stacked forward pass pays, and that the choice reaches the nets."""

import dataclasses

import pytest
import torch

from core.errors import UserError
from core.store.workspace import Workspace
from core.zoo import compiling
from core.zoo.compiling import COMPILE_COST_S, COMPILED_SPEEDUP, CompileWhenItPays, decide
from core.zoo.generate import ZooConfig, generate_zoo


def test_auto_compiles_on_cuda_exactly_when_the_saved_time_exceeds_the_cost():
    # Saved = remaining * (1 - 1/speedup): the break-even remaining eager time is cost / (1 - 1/speedup).
    break_even = COMPILE_COST_S / (1 - 1 / COMPILED_SPEEDUP)
    assert 50 < break_even < 60  # about 54 s with the measured figures
    assert decide("auto", "cuda", break_even / 10 * 1.01, 10).compile
    assert not decide("auto", "cuda", break_even / 10 * 0.99, 10).compile
    assert "pays" in decide("auto", "cuda", 100.0, 10).reason
    assert not decide("auto", "cuda", 100.0, 0).compile  # nothing left to train


def test_auto_never_compiles_on_the_cpu_and_waits_for_a_measured_epoch_on_cuda():
    assert not decide("auto", "cpu", 1e6, 1000).compile
    assert not decide("auto", "cuda", None, 1000).compile
    assert decide("on", "cpu", None, 0).compile and not decide("off", "cuda", 1e6, 1000).compile
    with pytest.raises(ValueError, match="compile mode"):
        decide("sometimes", "cpu", None, 0)


def test_the_decision_is_made_once_after_the_first_epoch(monkeypatch):
    compiled = []
    monkeypatch.setattr(compiling, "compile_forward", compiled.append)
    nets = ["a", "b"]
    policy = CompileWhenItPays("auto", "cuda", nets)
    assert not compiled and not policy.decided
    assert "pays" in policy.after_epoch(30.0, 10)  # 300 s eager to come
    assert compiled == nets
    assert policy.after_epoch(30.0, 10) is None and compiled == nets  # not twice
    on = CompileWhenItPays("on", "cpu", ["c"])
    assert compiled == [*nets, "c"] and on.after_epoch(1.0, 5) is None


def test_compile_mode_is_not_part_of_the_zoo_it_makes():
    config = ZooConfig(models=2, epochs=1)
    assert config.key() == dataclasses.replace(config, compile_mode="off").key()
    with pytest.raises(UserError, match="compile mode"):
        dataclasses.replace(config, compile_mode="sometimes")


def test_generation_with_compile_on_trains_through_the_compiled_forward(tmp_path, monkeypatch):
    """The generator hands its nets to the compiler; a stand-in compiler that counts calls proves the training
    went through what it returned, and gives the same zoo as eager (it only wraps)."""
    calls = []

    def counting(net) -> None:
        eager = net.train_forward

        def wrapped(*args, **kwargs):
            calls.append(1)
            return eager(*args, **kwargs)

        net.train_forward = wrapped

    monkeypatch.setattr(compiling, "compile_forward", counting)
    config = ZooConfig(models=2, epochs=1, save_epochs=(0, 1), compile_mode="on")
    wrapped = generate_zoo(Workspace(tmp_path / "on"), config)[0]
    assert calls
    eager = generate_zoo(Workspace(tmp_path / "off"), dataclasses.replace(config, compile_mode="off"))[0]
    assert torch.equal(wrapped.weights, eager.weights)
