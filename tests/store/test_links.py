"""Links in a copied (untrusted) workspace: files are never written through a linked folder of it, and a pack
never follows a link to a file elsewhere."""

import os
import zipfile

import polars as pl
import pytest

from core.errors import ZooError
from core.pipeline import pack_workspace
from core.store.files import write_json, write_parquet
from tests.conftest import copy_workspace


@pytest.fixture
def elsewhere(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    return folder


@pytest.mark.parametrize("linked", ["samples", "samples/run", "ae/run"])
def test_no_file_is_written_through_a_linked_folder_of_a_workspace(tmp_path, elsewhere, linked):
    root = tmp_path / "ws"
    (root / linked).parent.mkdir(parents=True)
    (root / "workspace.json").write_text("{}")
    (root / linked).symlink_to(elsewhere)
    target = root / "samples" / "run" / "result.json" if linked != "ae/run" else root / "ae" / "run" / "eval.json"
    with pytest.raises(ZooError, match=f"{linked}: a symbolic link inside the workspace .*would land outside"):
        write_json(target, {"a": 1})
    with pytest.raises(ZooError, match="symbolic link inside the workspace"):
        write_parquet(target.with_suffix(".parquet"), pl.DataFrame({"a": [1]}))
    assert sorted(os.listdir(elsewhere)) == ["keep.txt"]


def test_a_linked_workspace_root_and_folders_outside_workspaces_are_fine(tmp_path, elsewhere):
    """The user's own path to a workspace may pass through links (ws -> elsewhere), and so may any output."""
    (elsewhere / "workspace.json").write_text("{}")
    (tmp_path / "ws").symlink_to(elsewhere)
    write_json(tmp_path / "ws" / "ae" / "run" / "config.json", {"a": 1})
    assert (elsewhere / "ae" / "run" / "config.json").exists()
    (tmp_path / "out").symlink_to(elsewhere / "ae")
    write_json(tmp_path / "out" / "x.json", {"a": 1})
    assert (elsewhere / "ae" / "x.json").exists()


def test_a_pack_refuses_a_workspace_holding_a_link(tiny_zoo_workspace, tmp_path, elsewhere):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    (workspace.root / "ae" / "run").mkdir(parents=True)
    (workspace.root / "ae" / "run" / "eval.json").symlink_to(elsewhere / "keep.txt")
    with pytest.raises(ZooError, match="eval.json: a symbolic link in the workspace; packs hold plain files only"):
        pack_workspace(workspace, tmp_path / "ws.zip")
    assert not (tmp_path / "ws.zip").exists()
    (workspace.root / "ae" / "run" / "eval.json").unlink()
    pack_workspace(workspace, tmp_path / "ws.zip")
    assert "workspace.json" in zipfile.ZipFile(tmp_path / "ws.zip").namelist()


def test_cli_sample_into_a_workspace_whose_samples_folder_is_a_link_is_one_line(
    tiny_ae_workspace, tmp_path, elsewhere, run_cli
):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    (workspace.root / "samples").symlink_to(elsewhere)
    result = run_cli("sample", "--workspace", workspace.root, "--n", 2, "--finetune-epochs", 0, "--quiet")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "samples: a symbolic link inside the workspace" in result.err
    assert sorted(os.listdir(elsewhere)) == ["keep.txt"]


def test_ae_train_into_a_workspace_whose_ae_folder_is_a_link_makes_nothing_there(
    tiny_zoo_workspace, tmp_path, elsewhere, run_cli
):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    (workspace.root / "ae").symlink_to(elsewhere)
    result = run_cli("ae", "train", "--workspace", workspace.root, "--epochs", 1, "--quiet")
    assert result.code == 2 and "ae: a symbolic link inside the workspace" in result.err
    assert sorted(os.listdir(elsewhere)) == ["keep.txt"]  # not even an empty run folder
