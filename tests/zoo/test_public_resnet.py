"""core.zoo.public_resnet: the public ResNet-18 zoos' torchvision layout, imported as our `resnet` spec."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from core.store.workspace import Workspace
from core.zoo.arch import trainable_mask, unflatten
from core.zoo.model_zoo import load_zoos
from core.zoo.public import import_public_zoo
from core.zoo.public_resnet import resnet_vector
from tests.gen.bundle_check import CHECK, run_in_bundle
from tests.zoo.resnet_fixture import (
    RESNET18,
    TINY_RESNET,
    torchvision_resnet_state,
    trial_metrics,
    write_resnet_trial,
    write_resnet_zoo,
)

# ResNet-18 with the CIFAR stem at 10 classes, counted by hand: stem 1,728 + 128; layer1 147,456 + 512;
# layer2 525,568; layer3 2,099,712; layer4 8,393,728 (convs, shortcuts and BatchNorm scales and shifts); fc 5,130.
RESNET18_TRAINED = 11_173_962
# 20 BatchNorms (stem, 2 per block, 3 shortcuts) over 4,800 channels: running mean and variance each.
RESNET18_RUNNING = 2 * 4_800


def test_a_resnet18_checkpoint_maps_key_for_key_onto_the_resnet_spec():
    """Real width, one checkpoint: every tensor lands where the spec reads it; only the counters are dropped."""
    state = torchvision_resnet_state(3, 10, RESNET18["widths"], RESNET18["blocks"], seed=1, epoch=2)
    assert len(state) == 122  # torchvision's resnet18().state_dict() has 122 entries
    spec, vector = resnet_vector(state)
    assert (spec.name, spec.widths, spec.blocks) == ("resnet-18", (64, 128, 256, 512), (2, 2, 2, 2))
    assert (spec.in_channels, spec.n_classes, spec.in_size, spec.activation) == (3, 10, 32, "relu")
    assert int(trainable_mask(spec).sum()) == RESNET18_TRAINED and spec.n_params == RESNET18_TRAINED + RESNET18_RUNNING
    mapped = unflatten(spec, vector)
    assert set(state) - set(mapped) == {k for k in state if k.endswith("num_batches_tracked")}
    assert len(set(state) - set(mapped)) == 20
    assert all(torch.equal(mapped[key], state[key]) for key in mapped)
    spec.module().load_state_dict(state)  # our module holds exactly torchvision's keys, counters included


def test_a_wrapper_prefix_on_every_key_is_dropped():
    state = torchvision_resnet_state(1, 10, **TINY_RESNET, seed=2)
    spec, vector = resnet_vector({f"model.{k}": v for k, v in state.items()})
    assert torch.equal(vector, resnet_vector(state)[1]) and spec.widths == TINY_RESNET["widths"]


def test_import_of_a_tiny_resnet_zoo_copies_weights_running_stats_and_metrics(tmp_path):
    states = write_resnet_zoo(tmp_path / "src", models=3)
    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"), "digits")
    assert report.problems == [] and report.models == 3
    zoo = load_zoos(Workspace(tmp_path / "ws"))[0]
    assert zoo.spec.family == "resnet" and (zoo.spec.widths, zoo.spec.blocks) == (TINY_RESNET["widths"], (2,) * 4)
    assert (zoo.spec.in_channels, zoo.spec.in_size, zoo.spec.n_classes) == (1, 8, 10)  # digits' 8x8 images
    assert zoo.weights.shape == (9, zoo.spec.n_params)
    for position, row in enumerate(zoo.table.iter_rows(named=True)):
        state = states[f"trial_{row['model_id'] + 1:02d}"][row["epoch"]]
        mapped = unflatten(zoo.spec, zoo.weights[position])
        assert all(torch.equal(mapped[key], state[key]) for key in mapped)
        assert row["test_acc"] == pytest.approx(trial_metrics(row["seed"], row["epoch"])["test_acc"])
        # torchvision's ResNet is ReLU and has no dropout, whatever params.json names
        assert (row["activation"], row["dropout"], row["lr"]) == ("relu", 0.0, pytest.approx(0.1))


def _edit(key: str, value):
    def edit(state):
        state[key] = value

    return edit


def _drop(key: str):
    return lambda state: state.pop(key)


REFUSALS = {
    "imagenet-stem": (_edit("conv1.weight", torch.zeros(4, 1, 7, 7)), "conv1.weight: a 7x7 stem"),
    "bottleneck-key": (_edit("layer1.0.conv3.weight", torch.zeros(4, 4, 1, 1)), "layer1.0.conv3.weight: not a key"),
    "missing-running-var": (_drop("layer2.0.downsample.1.running_var"), "downsample.1.running_var: missing"),
    "fc-of-other-width": (_edit("fc.weight", torch.zeros(10, 7)), "fc.weight has shape (10, 7)"),
    "float-counter": (_edit("bn1.num_batches_tracked", torch.tensor(1.5)), "bn1.num_batches_tracked: expected one"),
    "integer-weights": (_edit("conv1.weight", torch.zeros(4, 1, 3, 3, dtype=torch.long)), "conv1.weight: torch.int64"),
    "nan-weight": (_edit("fc.bias", torch.full((10,), float("nan"))), "non-finite weights"),
    "gap-in-blocks": (lambda s: s.update({k.replace("layer1.1.", "layer1.2."): s.pop(k) for k in list(s)
                                          if k.startswith("layer1.1.")}), "layer1: blocks numbered [0, 2]"),
}  # fmt: skip


@pytest.mark.parametrize("breaker, message", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_checkpoint_off_the_layout_is_refused_naming_file_and_key(tmp_path, breaker, message):
    write_resnet_trial(tmp_path / "src", "a_good", seed=1)
    write_resnet_trial(tmp_path / "src", "z_broken", seed=2)
    path = tmp_path / "src" / "z_broken" / "checkpoint_000001" / "checkpoints"
    state = torch.load(path, weights_only=True)
    breaker(state)
    torch.save(state, path)
    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert report.models == 1 and len(report.problems) == 1
    problem = report.problems[0]
    assert problem.startswith("z_broken: skipped") and message in problem, problem
    if "non-finite" not in message:
        assert "checkpoint_000001/checkpoints" in problem  # the file, then the key


def test_a_model_of_other_widths_than_the_zoo_is_skipped(tmp_path):
    write_resnet_trial(tmp_path / "src", "a_good", seed=1)
    write_resnet_trial(tmp_path / "src", "z_wider", seed=2, widths=(8, 8, 8, 8), blocks=(2, 2, 2, 2))
    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert report.models == 1 and "differs from the zoo's" in report.problems[0]


def test_a_resnet_zoo_imports_trains_samples_and_exports_on_the_cpu(tmp_path, run_cli):
    """The flow a user runs on a downloaded ResNet zoo, at ResNet-18's depth and tiny widths."""
    write_resnet_zoo(tmp_path / "src", models=4)
    ws = tmp_path / "ws"
    imported = run_cli("zoo", "import", "--from", tmp_path / "src", "--workspace", ws, "--dataset", "digits",
                       "--json", "--quiet")  # fmt: skip
    assert imported.code == 0, imported.err
    assert (imported.json["models"], imported.json["checkpoints"]) == (4, 12)
    assert imported.json["architecture"] == "resnet-w4-4-8-8-b2-2-2-2"
    sizes = ("--token-width", 16, "--window", 8, "--halo", 2, "--d-model", 16, "--latent-dim", 4)
    trained = run_cli("ae", "train", "--workspace", ws, "--kind", "sane", *sizes, "--epochs", 2, "--batch-size", 8,
                      "--warmup-epochs", 1, "--json", "--quiet")  # fmt: skip
    assert trained.code == 0, trained.err
    sampled = run_cli("sample", "--workspace", ws, "--anchors", "top:0.5", "--n", 2, "--finetune-epochs", 1,
                      "--no-baselines", "--json", "--quiet")  # fmt: skip
    assert sampled.code == 0, sampled.err
    assert all(len(curve) == 2 for curve in sampled.json["curves"].values())
    bundle = tmp_path / "bundle.zip"
    exported = run_cli("export", "--workspace", ws, "--samples", sampled.json["samples_run"], "--out", bundle,
                       "--json", "--quiet")  # fmt: skip
    assert exported.code == 0, exported.err
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(tmp_path / "fresh")
    card = json.loads((tmp_path / "fresh" / "card.json").read_text())
    measured = run_in_bundle(tmp_path / "fresh", "digits", CHECK)  # plain torch loads the generated ResNets
    assert measured == pytest.approx([m["test_acc_as_generated"] for m in card["models"]], abs=1e-6)
