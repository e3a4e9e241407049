"""Operating-system errors, over-long names and Ctrl-C at the command line (issue 24): each is one `error:` (or
`interrupted:`) line with exit 2 (130), never a traceback, and what the failed command started is gone."""

import errno
import importlib.abc
import os
import runpy
import sys

import pytest

from core.cli import commands
from tests.conftest import copy_workspace

LONG = "x" * 300  # one name longer than the 255 bytes a file system allows
DIGITS = "9" * 5000


def one_line(result, *words: str) -> None:
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.err
    assert all(word in lines[0] for word in words), lines[0]
    assert len(lines[0]) < 600, lines[0]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["zoo", "info", "--workspace", f"/tmp/{LONG}"], ["workspace folder", "255 bytes"]),
        (["zoo", "generate", "--workspace", "WS", "--dataset", "y" * 100_000], ["dataset", "100,000 characters"]),
        (["zoo", "generate", "--workspace", "WS", "--dataset", "digits:classes=0-99999999999"], ["class label"]),
        (["ae", "train", "--workspace", "WS", "--run", LONG], ["not a usable run name"]),
        (["ae", "train", "--workspace", "WS", "--run", " "], ["not a usable run name"]),
        (["ae", "eval", "--workspace", "WS", "--run", "a\nb"], ["not a usable run name"]),
        (["export", "--workspace", "WS", "--samples", LONG, "--out", "OUT/b.zip"], ["not a usable run name"]),
        (["workspace", "pack", "--workspace", "WS", "--out", f"OUT/{LONG}.zip"], ["--out", "255 bytes"]),
        (["sample", "--workspace", "WS", "--dataset", f"/tmp/{LONG}"], ["dataset", "255 bytes"]),
        (["sample", "--workspace", "WS", "--path-t", "0.5", "--path-to", f"run:{DIGITS}"], ["RUN:I"]),
        (["sample", "--workspace", "WS", "--spread", "1e300"], ["spread", "0..100"]),
        (["workspace", "unpack", "--from", "/tmp/" + "z" * 5000, "--workspace", "OUT/new"], ["(5,005 characters)"]),
        (["zoo", "import", "--from", "/tmp/" + "z" * 5000, "--workspace", "OUT/new"], ["(5,005 characters)"]),
    ],
)
def test_over_long_and_bad_names_are_one_line(tiny_ae_workspace, tmp_path, run_cli, argv, words):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    before = sorted(p.relative_to(workspace.root) for p in workspace.root.rglob("*"))
    argv = [str(workspace.root) if a == "WS" else a.replace("OUT", str(tmp_path)) for a in argv]
    one_line(run_cli(*argv), *words)
    assert sorted(p.relative_to(workspace.root) for p in workspace.root.rglob("*")) == before


@pytest.mark.parametrize("folder", ["/proc/x", "/sys/x", "/etc/hostname/ws", f"/tmp/{LONG}/ws"])
def test_workspaces_the_system_will_not_hold_are_one_line(run_cli, folder):
    one_line(run_cli("zoo", "generate", "--workspace", folder, "--models", 1, "--epochs", 0, "--quiet"), folder[:9])
    one_line(run_cli("zoo", "info", "--workspace", folder))


def test_ae_train_on_a_missing_workspace_creates_nothing(tmp_path, run_cli):
    one_line(run_cli("ae", "train", "--workspace", tmp_path / "nothing", "--quiet"), "no such workspace")
    assert not (tmp_path / "nothing").exists()


def _full_disk(path_of):
    """A write that fails as on a full disk, naming the file it was writing."""

    def write(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path_of(path)))

    return write


def test_a_full_disk_at_zoo_generates_first_write_is_one_line_and_leaves_no_folder(tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr("core.zoo.partial.write_tensors", _full_disk(lambda p: p))  # the resumable state
    result = run_cli("zoo", "generate", "--workspace", tmp_path / "new", "--models", 2, "--epochs", 0, "--quiet")
    one_line(result, "zoo.partial", "No space left on device", "free space")
    assert not (tmp_path / "new").exists()  # it held only its lock


def test_a_full_disk_at_zoo_generates_last_write_keeps_the_trained_state_and_a_rerun_finishes(tmp_path, run_cli,
                                                                                              monkeypatch):  # fmt: skip
    argv = ("zoo", "generate", "--workspace", tmp_path / "new", "--models", 2, "--epochs", 1, "--quiet", "--json")
    with monkeypatch.context() as patch:
        patch.setattr("core.store.shards.write_tensors", _full_disk(lambda p: p))  # the zoo's own weights (a shard)
        one_line(run_cli(*argv), ".safetensors", "No space left on device")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [".lock", "zoo.partial"]  # trained epochs kept
    assert run_cli(*argv).json["checkpoints"] == 4


def test_a_read_only_folder_during_sample_is_one_line_and_leaves_no_partial_run(tiny_ae_workspace, tmp_path, run_cli,
                                                                                monkeypatch):  # fmt: skip
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("core.store.runs.write_parquet", read_only)
    result = run_cli("sample", "--workspace", workspace.root, "--n", 1, "--finetune-epochs", 0, "--quiet")
    one_line(result, "samples.parquet", "Read-only file system", "writable folder")
    assert not list((workspace.root / "samples").glob("*"))  # the run's folder, with its weights, went again


def test_a_full_disk_in_a_workspace_that_existed_keeps_the_workspace(tiny_zoo_workspace, tmp_path, run_cli,
                                                                     monkeypatch):  # fmt: skip
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "ws")
    monkeypatch.setattr(commands, "zoo_info", _full_disk(lambda zoos: workspace.root / "x"))
    one_line(run_cli("zoo", "info", "--workspace", workspace.root), "No space left")
    assert (workspace.root / "workspace.json").exists()


def test_ctrl_c_at_any_moment_of_main_is_one_line_and_130(tmp_path, run_cli, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    for where in ("core.cli.parser.build_parser", "core.cli.commands.zoo_describe", "core.cli.describe.describe_zoo"):
        with monkeypatch.context() as patch:
            patch.setattr("core.cli.commands.zoo_describe", lambda args: {})  # the command, done at once
            patch.setattr(where, interrupted)  # parsing, the command's work, or printing its result
            result = run_cli("zoo", "info", "--workspace", tmp_path)
        lines = result.err.strip().splitlines()
        assert result.code == 130 and len(lines) == 1 and lines[0].startswith("interrupted:"), (where, result.err)


class _CtrlCOnImport(importlib.abc.MetaPathFinder):
    """Ctrl-C pressed while `core.cli` (and torch under it) is being imported."""

    def find_spec(self, name, path, target=None):
        if name == "core.cli":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_while_torch_imports_is_one_line_and_130(monkeypatch, capsys):
    def exit_now(code):  # core/__main__.py leaves by os._exit after Ctrl-C (it says why): here, an exception
        raise SystemExit(code)

    monkeypatch.delitem(sys.modules, "core.cli")
    monkeypatch.delitem(sys.modules, "core.__main__", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_CtrlCOnImport(), *sys.meta_path])
    monkeypatch.setattr(os, "_exit", exit_now)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("core", run_name="__main__")
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 130 and len(lines) == 1 and lines[0].startswith("interrupted:")


def test_an_os_error_without_a_path_names_the_workspace(tmp_path, run_cli, monkeypatch):
    def nameless(args):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write's close reports it

    monkeypatch.setattr(commands, "zoo_describe", nameless)
    one_line(run_cli("zoo", "info", "--workspace", tmp_path), f"{tmp_path} (the workspace): No space left on device")
