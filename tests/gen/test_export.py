"""Export bundles: a fresh folder, plain torch, and the accuracies the card promises."""

import json
import zipfile

import polars as pl
import pytest

from core.gen.config import SampleConfig
from core.gen.export import export_samples
from core.gen.finetune import finetune_groups
from core.pipeline import generate
from core.store.files import umask
from core.store.runs import SamplesRun
from core.zoo.data import load_dataset
from core.zoo.model_zoo import load_zoos
from tests.conftest import copy_workspace
from tests.gen.bundle_check import CHECK, run_in_bundle


@pytest.fixture(scope="module")
def samples(tiny_ae_workspace, tmp_path_factory):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path_factory.mktemp("export") / "ws")

    result = generate(workspace, SampleConfig(n=3, finetune_epochs=1, baselines=False, anchors="top:0.5"))
    return workspace, result.name


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_bundle_runs_with_plain_torch_and_matches_its_card(samples, tmp_path, run_cli, fmt):
    workspace, run = samples
    bundle = tmp_path / f"bundle-{fmt}.zip"
    result = run_cli(
        "export", "--workspace", workspace.root, "--samples", run, "--format", fmt, "--out", bundle, "--json"
    )
    assert result.code == 0 and result.json["models"] == 3
    unpacked = tmp_path / f"fresh-{fmt}"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
        names = archive.namelist()
        text = b"".join(archive.read(n) for n in names if n.endswith((".json", ".md", ".py"))).decode()
    assert {"model.py", "card.json", "README.md", f"generated/model_000.{fmt}", f"finetuned/model_002.{fmt}"} <= set(
        names
    )
    assert str(workspace.root) not in text and str(tmp_path) not in text  # no paths of this machine

    measured = run_in_bundle(unpacked, "digits", CHECK)
    card = json.loads((unpacked / "card.json").read_text())
    promised = [m["test_acc_as_generated"] for m in card["models"]]
    assert measured == pytest.approx(promised, abs=1e-6)
    assert card["sampler"]["method"] == SampleConfig().method and card["anchors"]["rule"] == "top:0.5"


def test_card_says_how_the_test_split_and_raw_inputs_are_made_and_keeps_the_anchor_ids(tiny_ae_workspace, tmp_path):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    ids = [4, 5, 7, 8, 10, 11, 13, 14]
    config = SampleConfig(n=2, finetune_epochs=0, baselines=False, anchors="ids:" + ",".join(map(str, ids)))
    run = generate(workspace, config).name
    export_samples(workspace, run, "safetensors", tmp_path / "bundle.zip")
    with zipfile.ZipFile(tmp_path / "bundle.zip") as archive:
        card = json.loads(archive.read("card.json"))
        readme = archive.read("README.md").decode()
    assert card["anchors"]["ids"] == ids and card["anchors"]["count"] == len(ids)
    assert "4,5,7" not in readme and "8 checkpoints chosen by hand" in readme  # the ids live in the card only
    assert "numpy.random.default_rng(0).permutation(n)" in card["data"]["test_split"]
    assert "divide by 16" in card["data"]["raw_input"] and "Raw inputs: scikit-learn's load_digits()" in readme


def test_export_of_an_unknown_run_is_a_clear_error(samples, tmp_path, run_cli):
    workspace, _ = samples
    result = run_cli("export", "--workspace", workspace.root, "--samples", "nope", "--out", tmp_path / "b.zip")
    assert result.code == 2 and "no such samples run" in result.err
    assert not (tmp_path / "b.zip").exists()


CHECK_FINETUNED = """
import json, sys
import numpy as np, torch
import model
card = json.load(open("card.json"))
images = torch.from_numpy(np.load(sys.argv[1]))
labels = torch.from_numpy(np.load(sys.argv[2]))
mean = torch.tensor(model.FINETUNED_INPUT_MEAN).view(1, -1, 1, 1)
std = torch.tensor(model.FINETUNED_INPUT_STD).view(1, -1, 1, 1)
out = []
for entry in card["models"]:
    net = model.load(entry["finetuned_file"], n_classes=model.FINETUNED_N_CLASSES)
    with torch.no_grad():
        out.append((net((images - mean) / std).argmax(1) == labels).float().mean().item())
print(json.dumps(out))
"""


def test_transfer_bundle_carries_the_target_preprocessing(tiny_ae_workspace, tmp_path):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    run = generate(workspace, SampleConfig(n=2, finetune_epochs=1, baselines=False, dataset="shapes"))
    export_samples(workspace, run.name, "safetensors", tmp_path / "bundle.zip")
    unpacked = tmp_path / "fresh"
    with zipfile.ZipFile(tmp_path / "bundle.zip") as archive:
        archive.extractall(unpacked)
    card = json.loads((unpacked / "card.json").read_text())
    measured = run_in_bundle(unpacked, "shapes", CHECK_FINETUNED)
    assert measured == pytest.approx([m["test_acc_finetuned"] for m in card["models"]], abs=1e-6)
    assert card["evaluated_on"] == "shapes"


@pytest.fixture(scope="module")
def resnet_samples(tiny_resnet_workspace, tmp_path_factory):
    """A samples run of three ResNets from the tiny ResNet zoo, written by hand so that the bundle is checked
    without training SANE first: the zoo's last checkpoints, fine-tuned 1 epoch."""
    workspace = copy_workspace(tiny_resnet_workspace, tmp_path_factory.mktemp("export-resnet") / "ws")
    zoo = load_zoos(workspace)[0]
    models = zoo.weights[zoo.table["epoch"].to_numpy() == 2][:3]
    curves, per_model, finetuned = finetune_groups(zoo.spec, {"generated": models}, load_dataset("digits"), 1, 0)
    accuracies = per_model["generated"]
    novelty = dict.fromkeys(("min_l2_median", "zoo_min_l2_median", "max_iou_median", "zoo_max_iou_median"), 0.0)
    run = SamplesRun(
        folder=SamplesRun.folder_of(workspace, "by-hand"),
        ae_run="none",
        ae_kind="sane",
        method="kde",
        n=3,
        dataset="digits",
        source_dataset="digits",
        architecture=zoo.spec.name,
        activation="relu",
        anchors={"rule": "top:0.5", "count": 3, "ids": []},
        curves={"generated": curves["acc_mean"].to_list()},
        novelty=novelty,
        novelty_baselines={},
        selection={"mode": "none"},
        config={"spread": 1.0, "finetune_epochs": 1},
    )
    samples = pl.DataFrame(
        {"sample": [0, 1, 2], "acc_epoch0": accuracies[:, 0], "acc_final": accuracies[:, -1]}
        | {"min_l2": [0.0] * 3, "max_iou": [1.0] * 3, "umap_x": [0.0] * 3, "umap_y": [0.0] * 3}
    )
    tensors = {"generated": models, "finetuned": finetuned}
    run.write(tensors, {"architecture": zoo.spec.to_json(), "method": "kde"}, (samples, curves, samples), None)
    return workspace, "by-hand"


def test_a_resnet_bundle_defines_the_resnet_in_plain_torch_and_matches_its_card(resnet_samples, tmp_path):
    workspace, run = resnet_samples
    export_samples(workspace, run, "pt", tmp_path / "bundle.zip")
    assert (tmp_path / "bundle.zip").stat().st_mode & 0o777 == 0o666 & ~umask()  # not mkstemp's 0600
    unpacked = tmp_path / "fresh"
    with zipfile.ZipFile(tmp_path / "bundle.zip") as archive:
        archive.extractall(unpacked)
    card = json.loads((unpacked / "card.json").read_text())
    assert card["architecture"]["family"] == "resnet" and "class ZooResNet" in (unpacked / "model.py").read_text()
    measured = run_in_bundle(unpacked, "digits", CHECK)
    assert measured == pytest.approx([m["test_acc_as_generated"] for m in card["models"]], abs=1e-6)
