"""Shards on a local Ray cluster (core/cluster.py). Zoo generation: the same zoo as one process, model by model, bit
for bit; a killed worker costs its shard only, and the rerun finishes the identical zoo. Fine-tuning generated
models: the same curves and weights as one process. Needs ray (requirements-cluster.txt): skipped without it,
except where HYPERREP_REQUIRE_RAY is set (CI), where a missing ray fails."""

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cluster import ClusterConfig
from core.errors import Interrupted
from core.gen.finetune import finetune_groups
from core.store.budget import memory_mb
from core.store.workspace import Workspace
from core.zoo import blocks
from core.zoo.blocks import training_bytes
from core.zoo.data import load_dataset
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.model_zoo import load_zoos
from tests.conftest import one_torch_thread
from ui.jobs import Job

try:
    import ray
except ImportError:
    if os.environ.get("HYPERREP_REQUIRE_RAY"):
        raise
    pytest.skip("ray is not installed (pip install -r requirements-cluster.txt)", allow_module_level=True)

# Two architectures' worth of populations in one shard: two activations, shared inits.
CONFIG = ZooConfig(models=6, epochs=3, save_epochs=(0, 1, 3), seed=3, init_seeds=3, activations=("relu", "tanh"))


@pytest.fixture(scope="module")
def local_cluster():
    """A local Ray cluster of 2 CPUs for this module: 2 shards train side by side, one thread each."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The zoo one process makes."""
    with one_torch_thread():
        return generate_zoo(Workspace(tmp_path_factory.mktemp("unsharded") / "ws"), CONFIG)[0]


def _assert_same_zoo(zoo, reference):
    assert torch.equal(zoo.weights, reference.weights)
    assert zoo.table.drop("ggap").equals(reference.table.drop("ggap"))


def test_a_two_shard_zoo_equals_the_unsharded_zoo_model_by_model(local_cluster, reference, tmp_path):
    workspace = Workspace(tmp_path / "ws")
    job = Job(str(workspace.root), "zoo", "generate")  # the app's progress callback
    zoo = generate_zoo(workspace, CONFIG, "auto", job.progress, cluster=ClusterConfig("local", shards=2))[0]
    _assert_same_zoo(zoo, reference)
    _assert_same_zoo(load_zoos(workspace)[0], reference)
    assert (job.done, job.total) == (2 * (CONFIG.epochs + 1), 2 * (CONFIG.epochs + 1))
    assert job.info["shards_done"] == 2 and {entry.get("shard") for entry in job.history} == {0, 1}
    assert not (workspace.root / "zoo.partial").exists()


def test_shards_train_in_blocks_of_the_budget(local_cluster, reference, tmp_path, monkeypatch):
    """Each shard's worker trains its models in blocks within the driver's --memory (here two models a block, so
    each shard of three trains two blocks); the zoo is the unsharded one up to float32 rounding (oneDNN's kernel
    depends on a population's size: tests/zoo/test_blocks.py)."""
    one_model = training_bytes(reference.spec)
    monkeypatch.setattr(blocks, "TRAINING_SHARE", 2 * one_model / (memory_mb() << 20))
    workspace = Workspace(tmp_path / "ws")
    job = Job(str(workspace.root), "zoo", "generate")
    zoo = generate_zoo(workspace, CONFIG, "cpu", job.progress, cluster=ClusterConfig("local", shards=2))[0]
    torch.testing.assert_close(zoo.weights, reference.weights, rtol=0, atol=1e-4)
    assert zoo.table.select("model_id", "epoch", "seed").equals(reference.table.select("model_id", "epoch", "seed"))
    steps = 2 * 2 * (CONFIG.epochs + 1)  # shards x blocks x (epoch 0 and the trained epochs)
    assert (job.done, job.total) == (steps, steps)
    assert {(entry.get("block"), entry.get("blocks")) for entry in job.history if "epoch" in entry} == {(1, 2), (2, 2)}
    assert not (workspace.root / "zoo.partial").exists()


def _kill_a_running_shard() -> None:
    """SIGKILL one Ray worker that is running a shard (Ray names such a process after the task's function)."""
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::_in_worker"):
            os.kill(int(entry.name), signal.SIGKILL)
            return
    raise AssertionError("no Ray worker was running a shard")


def test_a_killed_worker_costs_its_shard_and_a_rerun_gives_the_same_zoo(local_cluster, reference, tmp_path):
    workspace = Workspace(tmp_path / "ws")
    no_retries = ClusterConfig("local", shards=2, retries=0)
    killed = []

    def kill_once(done, total, info):
        if not killed:
            killed.append(info["shard"])
            _kill_a_running_shard()

    with pytest.raises(Interrupted, match="1 of 2 shards lost"):
        generate_zoo(workspace, CONFIG, "cpu", kill_once, cluster=no_retries)
    kept = list((workspace.root / "zoo.partial").glob("shard-*.json"))  # a finished shard's progress
    assert len(kept) == 1 and not workspace.has_zoo()
    assert list((workspace.root / "zoo.partial").glob(f"{kept[0].stem}-snapshot-*.safetensors"))  # and its snapshots

    trained = []
    zoo = generate_zoo(workspace, CONFIG, "cpu", lambda d, t, info: trained.append(info["shard"]), cluster=no_retries)
    _assert_same_zoo(zoo[0], reference)
    assert len(set(trained)) == 1 and f"shard-{trained[0]}" not in kept[0].name  # only the lost shard trained again
    assert not (workspace.root / "zoo.partial").exists()


def test_fine_tuning_in_three_shards_gives_the_curves_and_weights_of_one_process(local_cluster, tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    groups = {"generated": zoo.weights[:5], "anchors": zoo.weights[5:9]}
    data = load_dataset("digits")
    with one_torch_thread():
        curves, per_model, final = finetune_groups(zoo.spec, groups, data, epochs=2, seed=1)
    seen = []
    sharded = finetune_groups(
        zoo.spec, groups, data, 2, 1, on_epoch=lambda epoch, so_far: seen.append(epoch),
        cluster=ClusterConfig("local", shards=3),
    )  # fmt: skip
    # Equal up to the last bits of float32: on some CPUs (an AMD EPYC here) oneDNN picks other kernels for the
    # shards' smaller populations even at one thread, and the weights after two epochs differ by 1.2e-7 at most.
    assert seen == [0, 1, 2] and sharded[0].select("group", "epoch").equals(curves.select("group", "epoch"))
    for column in ("acc_mean", "acc_std", "loss_mean"):
        np.testing.assert_allclose(sharded[0][column].to_numpy(), curves[column].to_numpy(), rtol=0, atol=1e-6)
    assert all(np.allclose(sharded[1][name], per_model[name], rtol=0, atol=1e-6) for name in groups)
    torch.testing.assert_close(sharded[2], final, rtol=0, atol=1e-5)
    assert not torch.allclose(final, torch.cat(list(groups.values())), atol=1e-3)  # the shards did train
