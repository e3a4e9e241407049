"""What a failed command leaves (core/store/leftovers.py): a folder it made holding only its lock and hidden
leftovers goes; anything worth keeping, or locked by another writer, stays."""

import fcntl

from core.store.leftovers import may_exist, remove_unused_workspace


def test_a_folder_with_only_a_lock_and_hidden_leftovers_goes(tmp_path):
    root = tmp_path / "ws"
    (root / ".zoo.build-x1").mkdir(parents=True)
    (root / ".lock").write_text("process 1")
    (root / ".workspace.json.x2.tmp").write_text("")
    assert remove_unused_workspace(root) and not root.exists()


def test_what_is_worth_keeping_stays(tmp_path):
    partial = tmp_path / "partial"
    (partial / "zoo.partial").mkdir(parents=True)  # trained epochs a rerun resumes from
    (partial / ".lock").write_text("")
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    assert not remove_unused_workspace(partial) and (partial / "zoo.partial").exists()
    assert not remove_unused_workspace(link) and link.is_symlink() and target.exists()
    assert not remove_unused_workspace(tmp_path / "never-made")


def test_a_folder_whose_lock_another_writer_holds_stays(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    with open(root / ".lock", "a+") as other:  # another open of the file: flock conflicts as across processes
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert not remove_unused_workspace(root) and root.exists()
    assert remove_unused_workspace(root) and not root.exists()


def test_whether_a_folder_was_there_before_is_answered_cautiously(tmp_path):
    assert may_exist(tmp_path) and not may_exist(tmp_path / "nothing")
    assert may_exist(tmp_path / ("x" * 300))  # ENAMETOOLONG: cannot tell, so never removed
