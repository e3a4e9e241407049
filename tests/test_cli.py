"""The command line: JSON contract, progress, exit codes."""

import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import build_parser, commands
from core.cli.options import settings_from, variant_from
from core.cli.outline import outline_parser
from core.gen.config import SampleConfig
from core.rep.loop import TrainConfig
from core.rep.sane import SANEConfig
from core.zoo.generate import ZooConfig


def test_generate_then_info(tmp_path, run_cli):
    ws = tmp_path / "ws"
    generate = ("zoo", "generate", "--workspace", ws, "--models", 3, "--epochs", 2, "--save-epochs", "0,2")
    generated = run_cli(*generate, "--device", "cpu", "--json")
    assert generated.code == 0
    info = run_cli("zoo", "info", "--workspace", ws, "--json")
    assert info.code == 0
    for key in ("models", "checkpoints", "n_params", "architecture", "dataset", "test_acc"):
        assert key in info.json
    assert info.json["models"] == 3 and info.json["checkpoints"] == 6 and info.json["dataset"] == "digits"
    assert set(info.json["test_acc"]) == {"min", "mean", "max"}
    made = generated.json
    assert made.pop("stale_runs") == [] and info.json == made


def test_progress_bar_goes_to_stderr(tmp_path, run_cli):
    result = run_cli("zoo", "generate", "--workspace", tmp_path / "ws", "--models", 2, "--epochs", 1)
    assert "training zoo" in result.err and "2/2" in result.err
    assert "2 models, 4 checkpoints" in result.out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["zoo", "generate", "--dataset", "nonsense"], "nonsense"),
        (["zoo", "generate", "--epochs", "2", "--save-epochs", "0,5"], "save epochs"),
        (["zoo", "generate", "--init", "orthogonal"], "orthogonal"),
        (["zoo", "info"], "no such workspace"),
        (
            ["zoo", "generate", "--lr", "1e9"],
            "learning rates must be finite and positive, at most 1; got [1000000000.0]",
        ),
        (["ae", "train", "--lr", "5"], "lr 5.0 (at most 1)"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, run_cli, argv, message):
    result = run_cli(*argv, "--workspace", tmp_path / "ws")
    err = result.err.strip().splitlines()
    assert result.code == 2
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


# `python -m core ARGS` in a fresh interpreter; prints the exit code and whether torch was imported
FRESH = (
    "import runpy, sys\nsys.argv = ['python -m core', *sys.argv[1:]]\ntry:\n"
    "    runpy.run_module('core', run_name='__main__')\nexcept SystemExit as exit_info:\n"
    "    print(exit_info.code, 'torch' in sys.modules)"
)


@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["zoo", "-h"], 0), (["nonsense"], 2), (["ae"], 2)])
def test_help_and_a_missing_or_mistyped_command_answer_without_importing_torch(argv, code):
    root = Path(__file__).resolve().parents[1]
    ended = subprocess.run([sys.executable, "-c", FRESH, *argv], cwd=root, capture_output=True, text=True, timeout=120)
    assert ended.stdout.strip().splitlines()[-1] == f"{code} False", ended.stderr
    if code == 2:
        assert len(ended.stderr.strip().splitlines()) == 1 and ended.stderr.startswith("error:")


def test_the_outline_helps_as_the_whole_parser_does():
    whole, outline = build_parser(), outline_parser()
    assert outline.format_help() == whole.format_help()
    whole_zoo = whole._subparsers._group_actions[0].choices["zoo"]
    assert outline._subparsers._group_actions[0].choices["zoo"].format_help() == whole_zoo.format_help()


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


def test_options_default_to_the_configs_own_defaults():
    parser = build_parser()
    assert settings_from(ZooConfig, parser.parse_args(["zoo", "generate", "--workspace", "w"])) == ZooConfig()
    assert settings_from(TrainConfig, parser.parse_args(["ae", "train", "--workspace", "w"])) == TrainConfig()
    assert settings_from(SampleConfig, parser.parse_args(["sample", "--workspace", "w"])) == SampleConfig()
    args = parser.parse_args(["ae", "train", "--workspace", "w", "--kind", "sane", "--no-align", "--lr", "0.01"])
    assert settings_from(TrainConfig, args) == TrainConfig(align=False, lr=0.01)
    assert variant_from(SANEConfig, "sane", args, commands.KIND_CONFIGS) == SANEConfig()


def test_arch_takes_a_comma_list(tmp_path):
    args = build_parser().parse_args(["zoo", "generate", "--workspace", "w", "--arch", "cnn-small,resnet"])
    assert settings_from(ZooConfig, args).arch_names == ["cnn-small", "resnet"]


def test_a_setting_of_another_kind_is_refused(tmp_path, run_cli):
    result = run_cli("ae", "train", "--workspace", tmp_path / "ws", "--kind", "hyperrep", "--window", 8)
    assert result.code == 2 and "--window: not a setting of hyperrep" in result.err


def test_the_paper_preset_is_refused_off_a_gpu_and_gives_the_official_sizes_on_one(tmp_path, run_cli, monkeypatch):
    result = run_cli("ae", "train", "--workspace", tmp_path / "ws", "--kind", "sane", "--preset", "paper", "--device",
                     "cpu")  # fmt: skip
    err = result.err.strip().splitlines()
    assert result.code == 2 and len(err) == 1 and "needs a CUDA GPU" in err[0]
    assert not (tmp_path / "ws").exists()
    result = run_cli("ae", "train", "--workspace", tmp_path / "ws", "--preset", "paper", "--device", "cpu")
    assert result.code == 2 and "not a preset of hyperrep" in result.err
    argv = ["ae", "train", "--workspace", "w", "--kind", "sane", "--window", "128", "--preset", "paper"]
    monkeypatch.setattr(commands, "resolve_device", lambda device: "cuda")  # the checks of a GPU machine
    config, train, _ = commands._ae_settings(build_parser().parse_args(argv))
    assert (config.d_model, config.encoder_layers, config.latent_dim, config.token_width) == (2048, 8, 128, 288)
    assert config.window == 128  # an option given beside the preset wins
    assert train.lr == 1e-4 and train.batch_size == TrainConfig().batch_size  # the paper's learning rate
    config, train, _ = commands._ae_settings(
        build_parser().parse_args([*argv[:-2], "--preset", "paper-cnn", "--lr", "3e-4"])
    )
    assert config.d_model == 1024 and train.lr == 3e-4
