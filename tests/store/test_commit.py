"""Exclusive renames (the kernel's, and the mkdir/link fallback) and the removal of abandoned temporary files."""

import fcntl
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.store import commit
from core.store.commit import locked_folder_beside, locked_temp_beside, remove_abandoned, rename_exclusive
from core.store.files import write_json


@pytest.fixture(params=["kernel", "fallback"])
def renamer(request, monkeypatch):
    """rename_exclusive through renameat2, and through its fallback (a kernel or filesystem without it)."""
    if request.param == "fallback":
        monkeypatch.setattr(commit, "_kernel_rename", lambda src, dst: False)
    return rename_exclusive


def test_a_folder_or_file_moves_only_where_nothing_is(tmp_path, renamer):
    build = tmp_path / "build"
    build.mkdir()
    (build / "a.json").write_text("new")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileExistsError):
        renamer(build, empty)  # a plain rename of a folder replaces an empty one
    assert (build / "a.json").exists() and list(empty.iterdir()) == []
    renamer(build, tmp_path / "fresh")
    assert (tmp_path / "fresh" / "a.json").read_text() == "new" and not build.exists()

    (tmp_path / "new.txt").write_text("new")
    (tmp_path / "old.txt").write_text("old")
    with pytest.raises(FileExistsError):
        renamer(tmp_path / "new.txt", tmp_path / "old.txt")
    assert (tmp_path / "old.txt").read_text() == "old"
    renamer(tmp_path / "new.txt", tmp_path / "other.txt")
    assert (tmp_path / "other.txt").read_text() == "new" and not (tmp_path / "new.txt").exists()


def test_of_two_folders_moved_to_one_place_at_once_exactly_one_arrives(tmp_path, renamer):
    builds = []
    for i in range(2):
        builds.append(tmp_path / f"build{i}")
        builds[-1].mkdir()
        (builds[-1] / "who").write_text(str(i))
    start, outcomes = threading.Barrier(2), []

    def move(build):
        start.wait()
        try:
            renamer(build, tmp_path / "target")
            outcomes.append("moved")
        except FileExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=move, args=(b,)) for b in builds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["moved", "refused"]
    winner = int((tmp_path / "target" / "who").read_text())
    assert not builds[winner].exists() and (builds[1 - winner] / "who").exists()
    assert os.listdir(tmp_path / "target") == ["who"]  # not one folder inside the other


def _old(path):
    os.utime(path, (1, 1))


def test_only_unlocked_old_temporaries_of_the_same_name_go(tmp_path):
    out = tmp_path / "pack.zip"
    abandoned = tmp_path / ".pack.zip.abcd1234.tmp"
    abandoned.write_text("killed")
    _old(abandoned)
    fd, live = locked_temp_beside(out)  # a writer alive now
    _old(live)
    recent = tmp_path / ".pack.zip.recent_1.tmp"
    recent.write_text("a writer that has not locked it yet")
    other = tmp_path / ".other.zip.abcd1234.tmp"
    other.write_text("another output's")
    _old(other)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / ".pack.zip.link1234.tmp"
    link.symlink_to(victim)
    try:
        assert remove_abandoned(out) == [abandoned]
        assert live.exists() and recent.exists() and other.exists() and link.is_symlink()
        assert victim.read_text() == "keep"
    finally:
        os.close(fd)
    assert remove_abandoned(out) == [live]  # its writer is gone: the lock went with it


def test_only_unlocked_old_build_folders_of_the_same_target_go(tmp_path):
    target = tmp_path / "ws"
    abandoned = tmp_path / ".ws.unpack-abcd1234"
    (abandoned / "zoo").mkdir(parents=True)
    (abandoned / "zoo" / "weights.safetensors").write_text("half")
    _old(abandoned)
    fd, live = locked_folder_beside(target, "unpack")
    _old(live)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    (tmp_path / ".ws.unpack-link1234").symlink_to(precious)
    (tmp_path / ".ws.unpack-file1234").write_text("a file, not a build folder")
    _old(tmp_path / ".ws.unpack-file1234")
    try:
        assert remove_abandoned(target, "unpack") == [abandoned]
        assert live.is_dir() and (precious / "keep.txt").read_text() == "keep"
        assert (tmp_path / ".ws.unpack-link1234").is_symlink() and (tmp_path / ".ws.unpack-file1234").exists()
    finally:
        os.close(fd)
    assert remove_abandoned(target, "unpack") == [live]


def test_a_write_after_a_killed_one_removes_its_temporary_file(tmp_path):
    """kill -9 during a write (no cleanup runs): the next write of the same file removes what it left."""
    target = tmp_path / "data.json"
    ready = tmp_path / "ready"
    code = (
        "import sys, time; from pathlib import Path; from core.store.files import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as tmp:\n"
        "    tmp.write_text('half'); Path(sys.argv[2]).touch(); time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(target), str(ready)], cwd=os.getcwd())
    try:
        for _ in range(600):
            if ready.exists() or child.poll() is not None:
                break
            threading.Event().wait(0.1)
        [left] = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        _old(left)
        with open(left) as handle, pytest.raises(BlockingIOError):  # the writer's lock, while it lives
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        write_json(target, {"a": 1})
        assert left.exists()  # a live writer's file stays
    finally:
        child.kill()
        child.wait()
    write_json(target, {"a": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json", "ready"]


_TEMP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _is_our_temp_name(name: str, prefix: str) -> bool:
    middle = name[len(prefix) : -len(".tmp")]
    return name.startswith(prefix) and name.endswith(".tmp") and len(middle) == 8 and set(middle) <= set(_TEMP_ALPHABET)


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.sampled_from([".pack.zip.", ".pack.zip", "pack.zip.", ".pack.zi.", ".other.zip.", ".pack.zip.x."]),
            st.text(alphabet=_TEMP_ALPHABET + ".-XÄ", min_size=6, max_size=10),
            st.sampled_from([".tmp", ".tmp.tmp", ".tm", ""]),
        ),
        max_size=8,
    )
)
def test_only_the_temporary_names_of_that_output_are_removed(parts):
    """Of abandoned files beside an output, exactly those named like its own temporary files go."""
    with tempfile.TemporaryDirectory() as folder:
        names = {prefix + middle + suffix for prefix, middle, suffix in parts}
        for name in names:
            (Path(folder) / name).write_text("x")
            _old(Path(folder) / name)
        ours = {name for name in names if _is_our_temp_name(name, ".pack.zip.")}
        removed = remove_abandoned(Path(folder) / "pack.zip")
        assert {p.name for p in removed} == ours and set(os.listdir(folder)) == names - ours
