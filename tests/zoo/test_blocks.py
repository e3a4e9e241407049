"""Zoo generation in blocks of models that fit the memory budget (core/zoo/blocks.py): how the models are split,
that a zoo trained in several blocks is the zoo one block makes, that an interrupted generation resumes without
training its finished blocks again, even under another budget, and that a model too large for any block is
refused naming --memory.

"The zoo one block makes" is exact in everything drawn (plan, inits, data orders, dropout masks: each model's own
seed) and equal up to float32 rounding in what is computed: oneDNN picks its convolution kernel by the number of
groups (models in a population), even at one thread, and on our AMD EPYC a model's weights after two epochs in
populations of 1 to 3 models differed from the 6-model population's by 3.6e-7 to 7.3e-6 (bit for bit equal at
other sizes). The backend's chunks of a large population (core/zoo/backend.py) differ the same way."""

import dataclasses
import json

import pytest
import torch

from core.errors import Interrupted
from core.store import budget
from core.store.files import read_tensor_metadata, read_tensors, write_tensors
from core.store.workspace import Workspace
from core.zoo import blocks
from core.zoo.arch import cnn_small
from core.zoo.blocks import model_blocks, training_bytes
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.model_zoo import load_zoos
from core.zoo.table import METRICS
from tests.conftest import one_torch_thread
from tests.faults import Crash, crash_at_commit

# Two populations a block (two activations), three saved epochs of six models.
CONFIG = ZooConfig(models=6, epochs=2, save_epochs=(0, 1, 2), seed=5, init_seeds=3, activations=("relu", "tanh"))
MODEL_BYTES = training_bytes(cnn_small(1, 10))


@pytest.fixture(autouse=True)
def one_thread_and_the_default_budget():
    with one_torch_thread():
        yield
    budget.set_memory_mb(budget.DEFAULT_MEMORY_MB)


@pytest.fixture(scope="module")
def one_block(tmp_path_factory):
    """The zoo trained as one block (the default budget holds it many times over)."""
    workspace = Workspace(tmp_path_factory.mktemp("one-block") / "ws")
    seen = []
    with one_torch_thread():
        zoo = generate_zoo(workspace, CONFIG, on_progress=lambda done, total, info: seen.append((done, total, info)))
    assert [(done, total) for done, total, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    assert all("block" not in info for _, _, info in seen)  # a zoo in one block reports as before
    return workspace, zoo[0]


def models_a_block(monkeypatch, models: float, memory_mb: int = budget.DEFAULT_MEMORY_MB) -> None:
    """A budget of `memory_mb` whose training share holds `models` cnn-small models."""
    monkeypatch.setattr(blocks, "TRAINING_SHARE", models * MODEL_BYTES / (memory_mb << 20))


def assert_same_zoo(zoo, workspace, reference):
    """The same zoo, up to float32 rounding (see the module's docstring), stored and its partial state gone."""
    reference_zoo = reference[1]
    torch.testing.assert_close(zoo.weights, reference_zoo.weights, rtol=0, atol=1e-4)
    assert not torch.equal(zoo.weights[1], zoo.weights[0])  # trained: epoch 1 is not the init
    drawn = [c for c in reference_zoo.table.columns if c not in (*METRICS, "ggap")]
    assert zoo.table.select(drawn).equals(reference_zoo.table.select(drawn))
    for metric in METRICS:  # an accuracy may move by an image whose logits nearly tie
        assert (zoo.table[metric] - reference_zoo.table[metric]).abs().max() <= 0.01, metric
    assert not (workspace.root / "zoo.partial").exists()
    assert torch.equal(load_zoos(workspace)[0].weights, zoo.weights)


def test_blocks_cover_the_models_in_order_each_within_the_capacity():
    assert model_blocks([1] * 6, 6) == [range(0, 6)]  # everything fits: one block, as before blocks
    assert model_blocks([1] * 10, 4) == [range(0, 4), range(4, 8), range(8, 10)]
    assert model_blocks([1] * 9, 4) == [range(0, 3), range(3, 6), range(6, 9)]  # equal blocks, equal times
    assert model_blocks([1] * 10, 4, start=7) == [range(7, 10)]
    assert model_blocks([1] * 5, 4, start=5) == []
    # Two architectures: 1-byte and 3-byte models, capacity 4; no block over it, every model once, in order.
    costs = [1, 1, 1, 1, 3, 3, 3]
    found = model_blocks(costs, 4)
    assert found == [range(0, 4), range(4, 5), range(5, 6), range(6, 7)]
    assert all(sum(costs[b.start : b.stop]) <= 4 for b in found)


def test_a_zoo_in_three_blocks_is_the_zoo_of_one_block(tmp_path, monkeypatch, one_block):
    models_a_block(monkeypatch, 2)
    workspace = Workspace(tmp_path / "ws")
    seen = []
    zoo = generate_zoo(workspace, CONFIG, on_progress=lambda done, total, info: seen.append((done, total, info)))[0]
    assert [(done, total) for done, total, _ in seen] == [(k, 9) for k in range(1, 10)]
    assert [(info["block"], info["blocks"], info["epoch"]) for _, _, info in seen] == [
        (b, 3, e) for b in (1, 2, 3) for e in (0, 1, 2)
    ]
    assert_same_zoo(zoo, workspace, one_block)


def test_a_generation_stopped_in_its_second_block_resumes_there(tmp_path, monkeypatch, one_block):
    models_a_block(monkeypatch, 2)
    workspace = Workspace(tmp_path / "ws")
    calls = []
    with pytest.raises(Interrupted, match="after epoch 1 of block 2 of 3"):
        generate_zoo(workspace, CONFIG, should_stop=lambda: calls.append(1) or len(calls) == 5)
    partial = workspace.root / "zoo.partial"
    assert not workspace.has_zoo() and (partial / "state.safetensors").exists()
    # Block 1's snapshots and block 2's of epochs 0 and 1, both populations each.
    assert len(list(partial.glob("snapshot-*"))) == 6 and len(list(partial.glob("block-1-snapshot-*"))) == 4

    seen = []
    zoo = generate_zoo(workspace, CONFIG, on_progress=lambda done, total, info: seen.append((done, total, info)))[0]
    # Block 1 is not trained again; block 2 goes on at its last epoch, then block 3.
    assert [(info["block"], info["epoch"]) for _, _, info in seen] == [(2, 2), (3, 0), (3, 1), (3, 2)]
    assert [done for done, _, _ in seen] == [6, 7, 8, 9] and {total for _, total, _ in seen} == {9}
    assert_same_zoo(zoo, workspace, one_block)


def test_an_interrupted_block_that_no_longer_fits_trains_again_in_smaller_ones(tmp_path, monkeypatch, one_block):
    """What a user does after a generation was killed for memory: the same command with a smaller --memory. The
    finished block is kept; the interrupted one, too large now, is trained again split anew."""
    models_a_block(monkeypatch, 2)
    workspace = Workspace(tmp_path / "ws")
    calls = []
    with pytest.raises(Interrupted, match="block 2 of 3"):
        generate_zoo(workspace, CONFIG, should_stop=lambda: calls.append(1) or len(calls) == 4)
    models_a_block(monkeypatch, 1)
    seen = []
    zoo = generate_zoo(workspace, CONFIG, on_progress=lambda done, total, info: seen.append((done, total, info)))[0]
    assert [(info["block"], info["blocks"]) for _, _, info in seen[::3]] == [(b, 5) for b in (2, 3, 4, 5)]
    assert seen[0][0] == 4 and seen[-1][:2] == (15, 15)
    assert_same_zoo(zoo, workspace, one_block)


def test_a_partial_run_from_before_blocks_resumes_as_one_block(tmp_path, one_block):
    """The progress of a generation interrupted before blocks existed lists no block: it held every model."""
    workspace = Workspace(tmp_path / "ws")
    calls = []
    with pytest.raises(Interrupted):
        generate_zoo(workspace, CONFIG, should_stop=lambda: calls.append(1) or len(calls) == 2)
    state = workspace.root / "zoo.partial" / "state.safetensors"
    progress = json.loads(read_tensor_metadata(state)["progress"])
    del progress["block"], progress["finished"]
    write_tensors(state, read_tensors(state), {"progress": json.dumps(progress)})
    seen = []
    zoo = generate_zoo(workspace, CONFIG, on_progress=lambda done, total, info: seen.append(info["epoch"]))[0]
    assert seen == [2]
    assert_same_zoo(zoo, workspace, one_block)


def test_a_model_too_large_for_any_block_is_refused_naming_memory(tmp_path, monkeypatch, run_cli):
    models_a_block(monkeypatch, 0.5, memory_mb=64)
    args = ["--models", "2", "--epochs", "1", "--memory", "64"]
    result = run_cli("zoo", "generate", "--workspace", tmp_path / "ws", *args)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "one cnn-small model holds" in result.err and "--memory 128 or more" in result.err
    assert not (tmp_path / "ws").exists()


def test_max_zoo_values_caps_a_block_not_the_zoo(tmp_path, monkeypatch):
    """A zoo is no longer refused for its size (its blocks train in turn); MAX_ZOO_VALUES still caps a block."""
    monkeypatch.setattr(blocks, "MAX_ZOO_VALUES", 3 * MODEL_BYTES // 4)
    assert blocks.block_capacity() == 3 * MODEL_BYTES
    config = dataclasses.replace(CONFIG, models=4, epochs=1, save_epochs=(1,), activations=("relu",))
    seen = []
    generate_zoo(Workspace(tmp_path / "ws"), config, on_progress=lambda done, total, info: seen.append(info))
    assert [info["blocks"] for info in seen] == [2] * 4


def test_a_generation_killed_at_any_write_of_its_blocks_resumes_to_the_uninterrupted_zoo(tmp_path, monkeypatch):
    """A kill just before each of the 8 commits of training (per block of one model and per epoch, its snapshot
    file and then the resumable state), and a rerun: the zoo of the uninterrupted run in the same blocks, bit for
    bit (the same populations)."""
    models_a_block(monkeypatch, 1)
    config = dataclasses.replace(CONFIG, models=2, epochs=1, save_epochs=(0, 1), activations=("relu",))
    expected = generate_zoo(Workspace(tmp_path / "reference"), config)[0]
    for crash_at in range(1, 9):
        workspace = Workspace(tmp_path / f"ws{crash_at}")
        with pytest.raises(Crash), crash_at_commit(crash_at):
            generate_zoo(workspace, config)
        zoo = generate_zoo(workspace, config)[0]
        assert torch.equal(zoo.weights, expected.weights) and zoo.table.drop("ggap").equals(expected.table.drop("ggap"))
