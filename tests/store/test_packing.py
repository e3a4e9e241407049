"""Workspace packs: what goes in, the round trip, and refusals of damaged or hostile packs."""

import errno
import os
import stat
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.errors import ZooError
from core.pipeline import pack_workspace, unpack_workspace
from core.rep.run import load_run
from core.store import commit, packing
from core.store.commit import rename_exclusive
from core.store.workspace import Workspace
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
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out").exists()  # the folder the unpack made for its target goes too


def test_a_pack_with_a_broken_zoo_is_refused(tiny_zoo_workspace, tmp_path):
    broken = copy_workspace(tiny_zoo_workspace, tmp_path / "broken")
    pack = tmp_path / "ws.zip"
    pack_workspace(broken, pack)
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[: len(data) // 2] if info.filename.endswith(".safetensors") else data)
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


# ---------------------------------------------------------------- limits on what a pack may hold


def _pack_plus(workspace, tmp_path, add) -> Path:
    """A sound pack of `workspace` with more members written by `add(archive)`."""
    pack = tmp_path / "ws.zip"
    pack_workspace(workspace, pack)
    with zipfile.ZipFile(pack, "a") as archive:
        add(archive)
    return pack


def _symlink_member(archive: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo("ae/link.json")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive.writestr(info, "/etc/passwd")


def _encrypted(pack: Path) -> None:
    """Set the encryption flag of every member (zipfile cannot write encrypted members)."""
    data = bytearray(pack.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            data[start + flags_at] |= 1
            start += 4
    pack.write_bytes(bytes(data))


HOSTILE_MEMBERS = {
    "pickled-pt": (lambda a: a.writestr("ae/r/train_state.pt", b"\x80\x02}q\x00."), "not a data file"),
    "pickle-by-another-name": (lambda a: a.writestr("ae/r/model.pkl", b"\x80\x02}q\x00."), "not a data file"),
    "symlink": (_symlink_member, "symbolic link"),
    "bzip2": (lambda a: a.writestr("ae/x.json", "{}", compress_type=zipfile.ZIP_BZIP2), "compression method 12"),
    "absolute": (lambda a: a.writestr("/etc/x.json", "{}"), "outside the workspace"),
}


@pytest.mark.parametrize("add, message", HOSTILE_MEMBERS.values(), ids=HOSTILE_MEMBERS.keys())
def test_members_that_are_not_plain_data_are_refused_before_anything_is_extracted(
    tiny_zoo_workspace, tmp_path, add, message
):
    pack = _pack_plus(tiny_zoo_workspace, tmp_path, add)
    with pytest.raises(ZooError, match=message):
        unpack_workspace(pack, tmp_path / "out" / "ws")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_an_encrypted_pack_is_one_clear_error(tiny_zoo_workspace, tmp_path):
    pack = _pack_plus(tiny_zoo_workspace, tmp_path, lambda archive: None)
    _encrypted(pack)
    with pytest.raises(ZooError, match="is encrypted"):
        unpack_workspace(pack, tmp_path / "out")


def test_declared_sizes_are_checked_member_by_member_and_in_total(tiny_zoo_workspace, tmp_path, monkeypatch):
    pack = _pack_plus(
        tiny_zoo_workspace, tmp_path, lambda a: a.writestr("ae/big.json", bytes(200_000), zipfile.ZIP_DEFLATED)
    )
    # zeros deflate to almost nothing: the declared size counts, not the pack's
    assert pack.stat().st_size < 200_000 < sum(i.file_size for i in zipfile.ZipFile(pack).infolist())
    monkeypatch.setattr("core.store.packing.MAX_WORKSPACE_FILE_BYTES", 150_000)
    with pytest.raises(ZooError, match="big.json' unpacks to 200,000 bytes"):
        unpack_workspace(pack, tmp_path / "out")
    monkeypatch.setattr("core.store.packing.MAX_WORKSPACE_FILE_BYTES", 1 << 30)
    monkeypatch.setattr("core.store.packing.MAX_PACK_BYTES", 150_000)
    with pytest.raises(ZooError, match="unpacks to .* bytes, more than the 150,000 allowed"):
        unpack_workspace(pack, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_zip_bomb_is_refused_by_its_ratio_and_a_pack_by_the_free_disk(tiny_zoo_workspace, tmp_path, monkeypatch):
    bomb = _pack_plus(
        tiny_zoo_workspace, tmp_path, lambda a: a.writestr("zoo/x.safetensors", bytes(4 << 20), zipfile.ZIP_DEFLATED)
    )
    with pytest.raises(ZooError, match="x.safetensors' unpacks to .* times its packed size"):
        unpack_workspace(bomb, tmp_path / "out")
    plain = tmp_path / "plain.zip"
    pack_workspace(tiny_zoo_workspace, plain)
    total = sum(i.file_size for i in zipfile.ZipFile(plain).infolist())
    monkeypatch.setattr("core.store.packing.shutil.disk_usage", lambda _: SimpleNamespace(free=total - 1))
    with pytest.raises(ZooError, match=f"unpacks to {total:,} bytes, but .* has {total - 1:,} bytes free"):
        unpack_workspace(plain, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_packs_hold_data_files_only(tiny_zoo_workspace, tmp_path):
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    (workspace.root / "notes.txt").write_text("mine")
    (workspace.root / "zoo" / "extra.pt").write_bytes(b"\x80\x02}q\x00.")
    pack_workspace(workspace, tmp_path / "ws.zip")
    names = zipfile.ZipFile(tmp_path / "ws.zip").namelist()
    assert all(Path(n).suffix in (".json", ".parquet", ".safetensors") for n in names) and "workspace.json" in names


# ---------------------------------------------------------------- unpacking beside others, and failing disks


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("kernel", [True, False], ids=["renameat2", "fallback"])
def test_two_unpacks_into_one_new_folder_one_finishes_and_the_other_is_told(
    tiny_zoo_workspace, tmp_path, monkeypatch, kernel
):
    """Both extract and validate at once (held at a barrier inside validation, after extracting); exactly one
    swap wins, the other fails with one clear error, and the target holds the whole pack."""
    if not kernel:
        monkeypatch.setattr(commit, "_kernel_rename", lambda src, dst: False)
    pack = tmp_path / "ws.zip"
    pack_workspace(tiny_zoo_workspace, pack)
    both_extracted, outcomes = threading.Barrier(2), []

    def validate(workspace):
        both_extracted.wait(60)
        load_zoos(workspace)

    def unpack():
        try:
            packing.unpack_workspace(pack, tmp_path / "target", validate)
            outcomes.append("done")
        except ZooError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=unpack) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    [told] = [o for o in outcomes if o != "done"]
    assert outcomes.count("done") == 1 and "target: appeared while the pack was unpacked" in told
    assert ".unpack" not in told  # never a build folder that no longer exists
    names = {n for n in zipfile.ZipFile(pack).namelist()}
    unpacked = {p.relative_to(tmp_path / "target").as_posix() for p in (tmp_path / "target").rglob("*") if p.is_file()}
    assert unpacked == names and _leftovers(tmp_path) == []
    assert torch.equal(load_zoos(Workspace(tmp_path / "target"))[0].weights, load_zoos(tiny_zoo_workspace)[0].weights)


def test_an_unpack_checks_after_its_swap_that_the_folder_holds_what_the_pack_lists(
    tiny_zoo_workspace, tmp_path, monkeypatch
):
    """Another program removing a file between the swap and the check: not exit 0 with a partial workspace."""
    pack = tmp_path / "ws.zip"
    pack_workspace(tiny_zoo_workspace, pack)

    def swap_then_lose_a_file(build, target):
        rename_exclusive(build, target)
        (target / "zoo" / "models.parquet").unlink()

    monkeypatch.setattr(packing, "rename_exclusive", swap_then_lose_a_file)
    with pytest.raises(ZooError, match="did not hold what the pack lists .*zoo/models.parquet"):
        unpack_workspace(pack, tmp_path / "target")
    assert not (tmp_path / "target").exists() and _leftovers(tmp_path) == []


def test_errors_name_the_member_at_fault_and_never_the_build_folder(tiny_zoo_workspace, tmp_path):
    pack = tmp_path / "ws.zip"
    pack_workspace(tiny_zoo_workspace, pack)
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, b"junk" if info.filename == "zoo/models.parquet" else data)
    with pytest.raises(ZooError) as caught:
        unpack_workspace(damaged, tmp_path / "out")
    assert str(caught.value).startswith(f"{damaged}: zoo/models.parquet: ")
    assert ".unpack" not in str(caught.value) and _leftovers(tmp_path) == []


def test_a_member_twice_is_refused(tiny_zoo_workspace, tmp_path):
    pack = _pack_plus(tiny_zoo_workspace, tmp_path, lambda a: a.writestr("zoo//models.parquet", b"other"))
    with pytest.raises(ZooError, match="'zoo/models.parquet' appears more than once"):
        unpack_workspace(pack, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "code, message", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "Read-only file system; unpack elsewhere")]
)
def test_a_failing_disk_while_unpacking_is_one_line_and_leaves_nothing(
    tiny_zoo_workspace, tmp_path, monkeypatch, code, message
):
    pack = tmp_path / "ws.zip"
    pack_workspace(tiny_zoo_workspace, pack)
    real_extract, calls = packing._extract, []

    def extract_until_the_disk_fails(archive, info, path):
        calls.append(info.filename)
        if len(calls) == 2:
            raise OSError(code, os.strerror(code), str(path))  # as open() or write() of the second member
        real_extract(archive, info, path)

    monkeypatch.setattr(packing, "_extract", extract_until_the_disk_fails)
    target = tmp_path / "new" / "deeper" / "ws"
    with pytest.raises(ZooError, match=f"ws: cannot be written \\({message}"):
        unpack_workspace(pack, target)
    assert sorted(os.listdir(tmp_path)) == ["ws.zip"]  # no build folder, and the folders made for it removed too

    monkeypatch.setattr(packing, "_extract", real_extract)
    monkeypatch.setattr(commit.tempfile, "mkdtemp", lambda **_: (_ for _ in ()).throw(OSError(code, "no")))
    with pytest.raises(ZooError, match="ws: cannot be made"):
        unpack_workspace(pack, target)
    assert sorted(os.listdir(tmp_path)) == ["ws.zip"]


def test_an_unpack_into_a_folder_that_is_not_one_is_one_line(tiny_zoo_workspace, tmp_path):
    pack = tmp_path / "ws.zip"
    pack_workspace(tiny_zoo_workspace, pack)
    (tmp_path / "file").write_text("x")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for parent in ("file", "loop1"):
        with pytest.raises(ZooError, match=f"{parent}/ws: cannot be made \\(.*{parent} is there but is not a folder"):
            unpack_workspace(pack, tmp_path / parent / "ws")
    assert sorted(os.listdir(tmp_path)) == ["file", "loop1", "loop2", "ws.zip"]
