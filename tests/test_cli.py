"""The command line: JSON contract, progress, exit codes."""

import json

import pytest

from core.cli import build_parser, main


def _last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_generate_then_info(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    code = main(
        [
            "zoo",
            "generate",
            "--workspace",
            ws,
            "--models",
            "3",
            "--epochs",
            "2",
            "--save-epochs",
            "0,2",
            "--device",
            "cpu",
            "--json",
        ]
    )
    assert code == 0
    generated = _last_json(capsys)
    assert main(["zoo", "info", "--workspace", ws, "--json"]) == 0
    info = _last_json(capsys)
    for key in ("models", "checkpoints", "n_params", "architecture", "dataset", "test_acc"):
        assert key in info
    assert info["models"] == 3 and info["checkpoints"] == 6 and info["dataset"] == "digits"
    assert set(info["test_acc"]) == {"min", "mean", "max"}
    assert info == generated


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    main(["zoo", "generate", "--workspace", str(tmp_path / "ws"), "--models", "2", "--epochs", "1"])
    captured = capsys.readouterr()
    assert "training zoo" in captured.err and "2/2" in captured.err
    assert "2 models, 4 checkpoints" in captured.out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["zoo", "generate", "--dataset", "nonsense"], "nonsense"),
        (["zoo", "generate", "--epochs", "2", "--save-epochs", "0,5"], "save epochs"),
        (["zoo", "generate", "--init", "orthogonal"], "orthogonal"),
        (["zoo", "info"], "no such workspace"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    code = main([*argv, "--workspace", str(tmp_path / "ws")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_every_command_has_help(capsys):
    parser = build_parser()
    for argv in (
        ["--help"],
        ["zoo", "--help"],
        ["zoo", "generate", "--help"],
        ["zoo", "import", "--help"],
        ["zoo", "info", "--help"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 0
    assert "--device" in capsys.readouterr().out
