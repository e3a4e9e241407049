"""The workspace lock on an untrusted workspace: its `.lock` may be a link, a hard link, a FIFO or a device."""

import errno
import os
import stat
import threading

import pytest

from core.errors import ZooError
from core.store.workspace import Workspace


def _take(workspace: Workspace) -> None:
    with workspace.lock():
        pass


def _in_time(work) -> BaseException | None:
    """Run `work` in a thread; fail the test if it blocks (a FIFO open would), else its exception or None."""
    outcome = []

    def run():
        try:
            work()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the lock blocked"
    return outcome[0]


def test_a_lock_that_is_a_link_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    workspace = Workspace(tmp_path / "ws")
    workspace.root.mkdir()
    (workspace.root / ".lock").symlink_to(victim)
    with pytest.raises(ZooError, match=r"ws/\.lock: is a symbolic link; .*remove"):
        _take(workspace)
    assert victim.read_text() == "precious"
    (workspace.root / ".lock").unlink()
    (workspace.root / ".lock").symlink_to(tmp_path / "missing")  # a dangling link is not created through
    with pytest.raises(ZooError, match="symbolic link"):
        _take(workspace)
    assert not (tmp_path / "missing").exists()


def test_a_hard_linked_lock_is_refused_and_the_other_file_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    workspace = Workspace(tmp_path / "ws")
    workspace.root.mkdir()
    os.link(victim, workspace.root / ".lock")
    with pytest.raises(ZooError, match="2 names"):
        _take(workspace)
    assert victim.read_text() == "precious"


def test_a_fifo_device_or_folder_lock_is_an_error_not_a_hang(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    workspace.root.mkdir()
    (workspace.root / ".lock").mkdir()
    with pytest.raises(ZooError, match=r"\.lock: is a folder; .*remove"):
        _take(workspace)
    (workspace.root / ".lock").rmdir()
    os.mkfifo(workspace.root / ".lock")
    error = _in_time(lambda: _take(workspace))
    assert isinstance(error, ZooError) and "not a regular file" in str(error)
    if os.geteuid() == 0:  # making a device node needs root
        (workspace.root / ".lock").unlink()
        os.mknod(workspace.root / ".lock", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
        error = _in_time(lambda: _take(workspace))
        assert isinstance(error, ZooError) and "not a regular file" in str(error)


def test_the_lock_file_is_never_truncated_and_a_second_writer_is_told_the_holder(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    workspace.root.mkdir()
    (workspace.root / ".lock").write_text("x" * 100)
    with workspace.lock():
        error = _in_time(lambda: _take(workspace))  # another thread opens it anew: busy, like another process
        assert isinstance(error, ZooError) and f"busy (process {os.getpid()} is writing" in str(error)
    text = (workspace.root / ".lock").read_text()
    assert len(text) == 100 and text.startswith(f"process {os.getpid()}")
    _take(workspace)  # released: taking it again works


def test_a_lock_that_cannot_be_opened_says_why(tmp_path, monkeypatch):
    """A read-only workspace (patched: the tests run as root, which writes anyway)."""
    workspace = Workspace(tmp_path / "ws")
    workspace.root.mkdir()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("core.store.workspace.os.open", read_only)
    with pytest.raises(ZooError, match=r"\.lock: cannot be opened for writing \(Read-only file system\)"):
        _take(workspace)
