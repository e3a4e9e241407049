"""Export bundles: a fresh folder, plain torch, and the accuracies the card promises."""

import json
import shutil
import zipfile

import pytest

from core.cli import main
from core.workspace import Workspace
from tests.bundle_check import CHECK, run_in_bundle


@pytest.fixture(scope="module")
def samples(tiny_ae_workspace, tmp_path_factory):
    workspace = Workspace(tmp_path_factory.mktemp("export") / "ws")
    shutil.copytree(tiny_ae_workspace.root, workspace.root)
    from core.generate import SampleConfig, generate_samples

    result = generate_samples(workspace, SampleConfig(n=3, finetune_epochs=1, baselines=False, anchors="top:0.5"))
    return workspace, result["samples_run"]


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_bundle_runs_with_plain_torch_and_matches_its_card(samples, tmp_path, capsys, fmt):
    workspace, run = samples
    bundle = tmp_path / f"bundle-{fmt}.zip"
    code = main(
        [
            "export",
            "--workspace",
            str(workspace.root),
            "--samples",
            run,
            "--format",
            fmt,
            "--out",
            str(bundle),
            "--json",
        ]
    )
    assert code == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["models"] == 3
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
    assert card["sampler"]["method"] == "kde" and card["anchors"]["rule"] == "top:0.5"


def test_export_of_an_unknown_run_is_a_clear_error(samples, tmp_path, capsys):
    workspace, _ = samples
    code = main(["export", "--workspace", str(workspace.root), "--samples", "nope", "--out", str(tmp_path / "b.zip")])
    assert code == 2 and "no such samples run" in capsys.readouterr().err
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
    workspace = Workspace(tmp_path / "ws")
    shutil.copytree(tiny_ae_workspace.root, workspace.root)
    from core.export import export_samples
    from core.generate import SampleConfig, generate_samples

    run = generate_samples(workspace, SampleConfig(n=2, finetune_epochs=1, baselines=False, dataset="shapes"))
    export_samples(workspace, run["samples_run"], "safetensors", tmp_path / "bundle.zip")
    unpacked = tmp_path / "fresh"
    with zipfile.ZipFile(tmp_path / "bundle.zip") as archive:
        archive.extractall(unpacked)
    card = json.loads((unpacked / "card.json").read_text())
    measured = run_in_bundle(unpacked, "shapes", CHECK_FINETUNED)
    assert measured == pytest.approx([m["test_acc_finetuned"] for m in card["models"]], abs=1e-6)
    assert card["evaluated_on"] == "shapes"
