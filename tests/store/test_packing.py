"""Workspace packs: what goes in, the round trip, and refusals of damaged or hostile packs."""

import zipfile

import pytest
import torch

from core.errors import ZooError
from core.pipeline import pack_workspace, unpack_workspace
from core.rep.run import load_run
from core.zoo.model_zoo import load_zoos
from tests.conftest import copy_workspace


def test_round_trip_keeps_the_zoo_and_finished_runs_but_not_resume_state(tiny_ae_workspace, tmp_path):
    pack = tmp_path / "ws.zip"
    report = pack_workspace(tiny_ae_workspace, pack)
    names = zipfile.ZipFile(pack).namelist()
    assert report["files"] == len(names) and "workspace.json" in names
    assert not any(n.endswith("train_state.pt") or "/." in n or n.startswith(".") for n in names)
    assert any(n.endswith("model.safetensors") for n in names)

    copy = unpack_workspace(pack, tmp_path / "copy")
    original, restored = load_zoos(tiny_ae_workspace)[0], load_zoos(copy)[0]
    assert torch.equal(original.weights, restored.weights)
    assert original.table.equals(restored.table)
    run = load_run(copy)
    assert run.status == "done" and run.name == load_run(tiny_ae_workspace).name


def test_packing_twice_gives_the_same_bytes(tiny_ae_workspace, tmp_path):
    pack_workspace(tiny_ae_workspace, tmp_path / "a.zip")
    pack_workspace(tiny_ae_workspace, tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_unpack_refuses_an_existing_target_and_leaves_it_alone(tiny_ae_workspace, tmp_path):
    pack = tmp_path / "ws.zip"
    pack_workspace(tiny_ae_workspace, pack)
    target = tmp_path / "taken"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    with pytest.raises(ZooError, match="already exists"):
        unpack_workspace(pack, target)
    assert (target / "mine.txt").read_text() == "keep"


@pytest.mark.parametrize(
    "members, message",
    [
        ({"../evil.txt": b"x", "workspace.json": b"{}"}, "outside the workspace"),
        ({"zoo/models.parquet": b"x"}, "not a workspace pack"),
    ],
)
def test_hostile_or_foreign_zips_are_refused_without_leftovers(tmp_path, members, message):
    pack = tmp_path / "bad.zip"
    with zipfile.ZipFile(pack, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ZooError, match=message):
        unpack_workspace(pack, tmp_path / "out" / "ws")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "ws").exists()
    assert not any(p.name.startswith(".") for p in (tmp_path / "out").iterdir())


def test_a_pack_with_a_broken_zoo_is_refused(tiny_zoo_workspace, tmp_path):
    broken = copy_workspace(tiny_zoo_workspace, tmp_path / "broken")
    pack = tmp_path / "ws.zip"
    pack_workspace(broken, pack)
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[: len(data) // 2] if info.filename.endswith("weights.safetensors") else data)
    with pytest.raises(ZooError):
        unpack_workspace(damaged, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_zip_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_text("hello")
    with pytest.raises(ZooError, match="junk.zip: not a readable zip"):
        unpack_workspace(junk, tmp_path / "out")


def test_cli_pack_and_unpack(tiny_zoo_workspace, tmp_path, run_cli):
    pack = tmp_path / "ws.zip"
    packed = run_cli("workspace", "pack", "--workspace", tiny_zoo_workspace.root, "--out", pack, "--json")
    assert packed.code == 0 and packed.json["files"] >= 3
    target = tmp_path / "copy"
    unpacked = run_cli("workspace", "unpack", "--from", pack, "--workspace", target, "--json")
    assert unpacked.code == 0 and unpacked.json["models"] == 6
    again = run_cli("workspace", "unpack", "--from", pack, "--workspace", target)
    assert again.code == 2 and "already exists" in again.err
    assert run_cli("workspace", "pack", "--workspace", tmp_path / "none", "--out", pack).code == 2
