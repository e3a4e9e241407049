"""Zoo generation and the public import write their weights to shards as they go (core/zoo/model_zoo.py
ZooWriter): under a budget small enough for several shards they store the very bytes the whole-tensor path
stores, the writer never holds more than a shard's rows whatever the size of the zoo, and a model found unsound
after some of its rows were written is taken back."""

import hashlib

import pytest
import torch

from core.store import budget, shards
from core.store.files import read_json
from core.store.workspace import Workspace
from core.zoo import model_zoo
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.model_zoo import Zoo, ZooWriter, load_zoos, rows_per_shard, save_zoo
from core.zoo.public import import_public_zoo
from core.zoo.public_resnet import resnet_vector
from tests.conftest import copy_workspace
from tests.faults import Crash, crash_at_commit
from tests.zoo.resnet_fixture import write_resnet_zoo

# 54,578 values a checkpoint: at the smallest budget (64 MB, a sixteenth of it for a chunk and two copies) a shard
# holds 6 rows, so a zoo of a few models spans several shards.
SMALL_RESNET = dict(widths=(8, 16, 16, 32), blocks=(2, 2, 2, 2))
SMALL_BUDGET_MB = 64
ROWS_A_SHARD = 6


@pytest.fixture(autouse=True)
def restore_budget():
    yield
    budget.set_memory_mb(budget.DEFAULT_MEMORY_MB)


def stored_digest(workspace: Workspace) -> str:
    """sha256 of what the zoo stores: every shard file's bytes in the manifest's order, then the table's."""
    folder = workspace.root / "zoo" / "shards"
    digest = hashlib.sha256()
    for name, entry in sorted(read_json(folder / "manifest.json")["tensors"].items()):
        digest.update(name.encode())
        for shard in entry["shards"]:
            digest.update((folder / shard["file"]).read_bytes())
    digest.update((workspace.root / "zoo" / "models.parquet").read_bytes())
    return digest.hexdigest()


@pytest.fixture
def shard_writes(monkeypatch) -> list[int]:
    """The rows of every shard file written, in order."""
    rows, real = [], shards.write_tensors

    def counted(path, tensors, metadata=None):
        rows.append(tensors[shards.SHARD_KEY].shape[0])
        real(path, tensors, metadata)

    monkeypatch.setattr(shards, "write_tensors", counted)
    return rows


@pytest.fixture
def held_rows(monkeypatch) -> list[int]:
    """After every row handed to a ZooWriter: how many rows it holds, not yet written."""
    held, real = [], ZooWriter.add

    def counted(self, name, rows):
        real(self, name, rows)
        held.append(self.rows(name) - self.shards.rows(name))

    monkeypatch.setattr(ZooWriter, "add", counted)
    return held


def expected_weights(states: dict, epochs) -> torch.Tensor:
    """The fixture's checkpoints as the importer orders them (trial folders by name, then epochs), flattened."""
    return torch.stack([resnet_vector(states[trial][epoch])[1] for trial in sorted(states) for epoch in epochs])


def test_an_import_in_several_shards_stores_the_bytes_of_the_whole_tensor_path(tmp_path, shard_writes):
    states = write_resnet_zoo(tmp_path / "src", models=5, **SMALL_RESNET)
    roomy = Workspace(tmp_path / "roomy")
    import_public_zoo(tmp_path / "src", roomy)
    assert shard_writes == [15]  # the default budget: one shard

    budget.set_memory_mb(SMALL_BUDGET_MB)
    streamed = Workspace(tmp_path / "streamed")
    zoo = import_public_zoo(tmp_path / "src", streamed).zoo
    assert rows_per_shard(zoo.spec.n_params) == ROWS_A_SHARD and shard_writes[1:] == [6, 6, 3]
    loaded = load_zoos(streamed)[0]
    assert torch.equal(loaded.weights, expected_weights(states, (0, 1, 2)))
    assert torch.equal(zoo.weights, loaded.weights)  # the returned zoo reads the stored shards
    assert loaded.table.equals(load_zoos(roomy)[0].table)

    whole = Workspace(tmp_path / "whole")  # the whole-tensor path: the matrix in memory, saved at the same budget
    with whole.lock():
        save_zoo(whole, [Zoo(loaded.spec, expected_weights(states, (0, 1, 2)), loaded.table, loaded.manifest)])
    assert stored_digest(streamed) == stored_digest(whole)


def test_the_import_holds_at_most_a_shards_rows_whatever_the_number_of_models(tmp_path, shard_writes, held_rows):
    budget.set_memory_mb(SMALL_BUDGET_MB)
    seen = {}
    for models in (4, 8):
        write_resnet_zoo(tmp_path / f"src{models}", models=models, **SMALL_RESNET)
        start = len(shard_writes)
        import_public_zoo(tmp_path / f"src{models}", Workspace(tmp_path / f"ws{models}"))
        seen[models] = shard_writes[start:]
        assert len(held_rows) == 3 * models and max(held_rows) < ROWS_A_SHARD  # one row handed over at a time
        held_rows.clear()
    assert seen == {4: [6, 6], 8: [6, 6, 6, 6]}  # twice the models: twice the writes, none larger


def test_a_model_broken_at_its_last_checkpoint_is_taken_back_from_the_shards(tmp_path, shard_writes):
    epochs = (0, 1, 2, 3, 4)
    states = write_resnet_zoo(tmp_path / "src", models=3, epochs=epochs, **SMALL_RESNET)
    (tmp_path / "src" / "trial_02" / "checkpoint_000004" / "checkpoints").write_bytes(b"not a torch file")
    budget.set_memory_mb(SMALL_BUDGET_MB)
    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    # trial_02's first row completed the first shard (rows 0-5), which its broken last checkpoint took back
    assert shard_writes == [6, 6, 4] and len(report.problems) == 1 and "trial_02" in report.problems[0]
    del states["trial_02"]
    zoo = load_zoos(Workspace(tmp_path / "ws"))[0]
    assert torch.equal(zoo.weights, expected_weights(states, epochs))
    assert zoo.table["model_id"].unique().to_list() == [0, 2]
    assert len(list((tmp_path / "ws" / "zoo" / "shards").glob("*.safetensors"))) == 2


def test_an_import_killed_at_any_write_leaves_a_whole_zoo_and_a_rerun_finishes(tmp_path, tiny_zoo_workspace):
    write_resnet_zoo(tmp_path / "src", models=3, **SMALL_RESNET)
    budget.set_memory_mb(SMALL_BUDGET_MB)  # 9 rows: shards of 6 and 3
    old = copy_workspace(tiny_zoo_workspace, tmp_path / "old")
    old_weights = load_zoos(old)[0].weights
    reference = copy_workspace(old, tmp_path / "reference")
    with crash_at_commit(None) as count:
        import_public_zoo(tmp_path / "src", reference, replace=True)
    # 2 shards, the shards' manifest, the table, the pending manifest, 2 swap renames, the manifest moved
    assert count["commits"] == 8
    expected = load_zoos(reference)[0].weights
    for crash_at in range(1, 9):
        workspace = copy_workspace(old, tmp_path / f"ws{crash_at}")
        with pytest.raises(Crash), crash_at_commit(crash_at):
            import_public_zoo(tmp_path / "src", workspace, replace=True)
        seen = load_zoos(workspace)[0].weights  # a reader meanwhile: the old zoo or the new one, whole
        assert torch.equal(seen, old_weights if crash_at <= 7 else expected), crash_at  # 8: swapped in
        import_public_zoo(tmp_path / "src", workspace, replace=True)
        assert torch.equal(load_zoos(workspace)[0].weights, expected)
        assert [p.name for p in workspace.root.rglob(".*") if p.name != ".lock"] == []


def test_a_generation_in_several_shards_stores_the_bytes_of_the_whole_tensor_path(tmp_path, monkeypatch,
                                                                                  shard_writes):  # fmt: skip
    config = ZooConfig(models=3, epochs=1, save_epochs=(0, 1), seed=4, activations=("relu", "tanh"))
    roomy = generate_zoo(Workspace(tmp_path / "roomy"), config)[0]
    assert shard_writes == [6] and roomy.table["activation"].n_unique() == 2  # two populations to gather from
    # A budget this small in effect: two rows of cnn-small's 1,288 values and their two copies a chunk.
    monkeypatch.setattr(budget, "CHUNK_SHARE", 2 * 3 * 4 * 1288 / (budget.memory_mb() << 20))
    streamed = Workspace(tmp_path / "streamed")
    zoo = generate_zoo(streamed, config)[0]
    assert shard_writes[1:] == [2, 2, 2]
    assert torch.equal(zoo.weights, roomy.weights) and zoo.table.drop("ggap").equals(roomy.table.drop("ggap"))
    whole = Workspace(tmp_path / "whole")
    with whole.lock():
        save_zoo(whole, [Zoo(roomy.spec, roomy.weights.clone(), roomy.table, roomy.manifest)])
    assert stored_digest(streamed) == stored_digest(whole)


def test_a_zoo_saved_over_the_shards_it_reads_reads_the_new_ones(tmp_path, monkeypatch):
    """save_zoo of a zoo whose rows come from the workspace's own shards: read before the swap, and afterwards
    the zoo reads what was stored (the old files are gone)."""
    workspace = Workspace(tmp_path / "ws")
    zoo = generate_zoo(workspace, ZooConfig(models=2, epochs=1, save_epochs=(0, 1), seed=1))[0]
    before = zoo.weights
    monkeypatch.setattr(model_zoo, "SHARD_BYTES", 4 * zoo.spec.n_params)  # a row a shard
    with workspace.lock():
        save_zoo(workspace, [zoo])
    assert len(zoo.store.shards) == 4 and torch.equal(zoo.weights, before)
