"""What `--out` may name: links, devices, FIFOs, folders, workspace packs and paths inside workspaces are refused
(even with --force), an existing file only with --force; the write is whole or absent and says why it failed."""

import errno
import os
import stat
import zipfile

import pytest

from core.errors import UserError
from core.store import output
from core.store.output import checked_output, written_output


@pytest.fixture
def places(tmp_path):
    """Paths an output must never be written to: {kind: path}, with a file each must leave alone."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "link.zip").symlink_to(victim)
    os.mkfifo(tmp_path / "fifo.zip")
    (tmp_path / "folder.zip").mkdir()
    pack = tmp_path / "old-pack.zip"
    with zipfile.ZipFile(pack, "w") as archive:
        archive.writestr("workspace.json", "{}")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "workspace.json").write_text("{}")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    found = {
        "link": (tmp_path / "link.zip", "symbolic link"),
        "in a loop of links": (tmp_path / "loop1" / "out.zip", "a loop of symbolic links"),
        "fifo": (tmp_path / "fifo.zip", "not a regular file"),
        "folder": (tmp_path / "folder.zip", "is a folder"),
        "pack": (pack, "is a workspace pack"),
        "inside a workspace": (workspace / "sub" / "out.zip", "inside the workspace"),
        "a workspace's own file": (workspace / "workspace.json", "inside the workspace"),
    }
    if os.geteuid() == 0:  # making a device node needs root
        os.mknod(tmp_path / "null.zip", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        found["device"] = (tmp_path / "null.zip", "not a regular file")
    return found


@pytest.mark.parametrize("force", [False, True])
def test_what_is_not_a_plain_file_of_ours_is_refused_even_with_force(places, tmp_path, force):
    before = {p: p.lstat() for p in tmp_path.rglob("*")}
    for path, message in places.values():
        with pytest.raises(UserError, match=message):
            checked_output(path, force)
    assert (tmp_path / "victim.txt").read_text() == "precious"
    assert {p: p.lstat() for p in tmp_path.rglob("*")} == before


def test_an_existing_file_is_replaced_only_with_force(tmp_path):
    notes = tmp_path / "notes.zip"
    notes.write_text("mine")
    with pytest.raises(UserError, match="notes.zip: already exists; pass --force"):
        checked_output(notes)
    assert checked_output(notes, force=True) == notes
    with written_output(notes, force=True) as tmp:
        tmp.write_text("new")
    assert notes.read_text() == "new"


def test_a_file_that_appears_while_writing_is_kept_unless_forced(tmp_path):
    """Two writers of one target: the one that finishes second is told, and the first one's file stays."""
    out = tmp_path / "out.zip"
    path = checked_output(out)
    with pytest.raises(UserError, match="another command wrote it meanwhile"), written_output(path) as tmp:
        tmp.write_text("second")
        out.write_text("first")
    assert out.read_text() == "first" and sorted(os.listdir(tmp_path)) == ["out.zip"]


def test_two_forced_writers_of_one_file_one_finishes_and_the_other_is_told(tmp_path):
    out = tmp_path / "out.zip"
    out.write_text("old")
    with written_output(out, force=True) as tmp:
        tmp.write_text("first")
        with pytest.raises(UserError, match="out.zip: another command is writing it"), written_output(out, True):
            pass
    assert out.read_text() == "first" and os.listdir(tmp_path) == ["out.zip"]


def test_a_forced_write_does_not_replace_a_file_put_there_meanwhile(tmp_path):
    out = tmp_path / "out.zip"
    out.write_text("old")
    with pytest.raises(UserError, match="another command wrote it meanwhile"), written_output(out, True) as tmp:
        tmp.write_text("mine")
        (tmp_path / "theirs").write_text("theirs")
        os.replace(tmp_path / "theirs", out)  # e.g. a copy by another program, which takes no lock
    assert out.read_text() == "theirs" and os.listdir(tmp_path) == ["out.zip"]


@pytest.mark.parametrize(
    "code, message",
    [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "a read-only file system"), (errno.EIO, "Input/output error")],
)
def test_a_failing_disk_is_one_line_naming_the_output_and_leaves_nothing(tmp_path, monkeypatch, code, message):
    out = tmp_path / "out.zip"
    out.write_text("old")

    def failing_zip_write(self, *args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_zip_write)
    expected = f"out.zip: cannot be written \\({message}.*nothing was written"
    with (
        pytest.raises(UserError, match=expected),
        written_output(out, force=True) as tmp,
        zipfile.ZipFile(tmp, "w") as archive,
    ):
        archive.writestr("a.json", "{}")
    assert out.read_text() == "old" and os.listdir(tmp_path) == ["out.zip"]


def test_a_pack_is_recognised_by_its_manifest_not_its_name(tmp_path):
    bundle = tmp_path / "pack.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("card.json", "{}")  # an export bundle: replaceable with --force
    assert not output.is_workspace_pack(bundle)
    assert checked_output(bundle, force=True) == bundle
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    assert not output.is_workspace_pack(junk)


def test_cli_pack_and_export_refuse_an_existing_file_without_force(tiny_zoo_workspace, tmp_path, run_cli):
    notes = tmp_path / "notes.zip"
    notes.write_text("mine")
    refused = run_cli("workspace", "pack", "--workspace", tiny_zoo_workspace.root, "--out", notes)
    assert refused.code == 2 and "--force" in refused.err and len(refused.err.strip().splitlines()) == 1
    assert notes.read_text() == "mine"
    packed = run_cli("workspace", "pack", "--workspace", tiny_zoo_workspace.root, "--out", notes, "--force")
    assert packed.code == 0 and zipfile.ZipFile(notes).namelist()
    again = run_cli("workspace", "pack", "--workspace", tiny_zoo_workspace.root, "--out", notes, "--force")
    assert again.code == 2 and "is a workspace pack" in again.err  # now a pack: never replaced
    export = run_cli("export", "--workspace", tiny_zoo_workspace.root, "--samples", "x", "--out", notes, "--force")
    assert export.code == 2 and "is a workspace pack" in export.err
