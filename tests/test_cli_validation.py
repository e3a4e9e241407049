"""Every numeric option of every command, any value: exit 0 or 2 with one `error:` line, never a traceback
(property-based, with hypothesis). Plus the path options: --workspace naming a file or nothing, --out naming a
folder, nothing, or a place inside a workspace, --run leaving the workspace.

The properties stop before heavy work: `zoo generate` at the allocation of its populations (after every check
of the request, the dataset and the zoo's size), `ae train` and `sample` at an empty workspace (after their
configs are built)."""

import argparse
import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.cli import build_parser, main

NUMERIC_PARSERS = {"int", "float", "int_list", "float_list"}
# Options whose text is numeric although typed as str (none today).
NUMERIC_BY_NAME: set[str] = set()


class Accepted(BaseException):
    """Raised where the command would start heavy work: the request passed every check."""


def numeric_options(*command: str) -> list[str]:
    parser = build_parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return sorted(
        flag
        for action in parser._actions
        for flag in action.option_strings[:1]
        if getattr(action.type, "__name__", None) in NUMERIC_PARSERS or flag in NUMERIC_BY_NAME
    )


VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=0, max_value=200_000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "0", "-0", "1e400", "-1e400", "nan", "inf", "1,2", "0,,3", "abc", "1e-320", "7.5"]),
)


def run(argv: list[str]) -> tuple[int | str, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        except Accepted:
            code = "accepted"
    return code, err.getvalue()


def assert_clean(code, err: str) -> None:
    assert code in (0, 2, "accepted"), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), err


def options_and_values(command: tuple[str, ...]):
    return st.lists(st.tuples(st.sampled_from(numeric_options(*command)), VALUES), min_size=1, max_size=3)


PROPERTY = settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def test_every_command_with_numbers_is_covered():
    assert len(numeric_options("zoo", "generate")) == 12  # 9 of the zoo, --shards and --retries, --memory
    assert {"--d-model", "--window", "--lr", "--erase", "--permute", "--seed"} <= set(numeric_options("ae", "train"))
    assert {"--n", "--spread", "--finetune-lr", "--seed", "--rounds"} <= set(numeric_options("sample"))


@PROPERTY
@given(pairs=options_and_values(("zoo", "generate")))
def test_zoo_generate_numbers(tmp_path, monkeypatch, pairs):
    def stop(*args):
        raise Accepted

    monkeypatch.setattr("core.zoo.generate._populations", stop)
    argv = ["zoo", "generate", "--workspace", str(tmp_path / "ws"), "--quiet"]
    assert_clean(*run(argv + [text for pair in pairs for text in pair]))


@PROPERTY
@given(kind=st.sampled_from(["hyperrep", "sane"]), pairs=options_and_values(("ae", "train")))
def test_ae_train_numbers(tmp_path, kind, pairs):
    argv = ["ae", "train", "--workspace", str(tmp_path / "empty"), "--kind", kind, "--quiet"]
    code, err = run(argv + [text for pair in pairs for text in pair])
    assert_clean(code, err)
    assert code == 2  # the empty workspace ends every accepted request


@PROPERTY
@given(pairs=options_and_values(("sample",)))
def test_sample_numbers(tmp_path, pairs):
    code, err = run(["sample", "--workspace", str(tmp_path / "empty"), "--quiet"] + [t for p in pairs for t in p])
    assert_clean(code, err)
    assert code == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["zoo", "generate", "--seed", "-1"], "seeds must lie in"),
        (["zoo", "generate", "--seed", "99999999999999999999999"], "seeds must lie in"),
        (["zoo", "generate", "--models", "99999999999999"], "1 to 100000 models"),
        (["zoo", "generate", "--epochs", "99999999999999"], "epochs must lie in"),
        (["zoo", "generate", "--lr", "nan"], "finite and positive"),
        (["zoo", "generate", "--weight-decay", "-1"], "weight decays"),
        (["ae", "train", "--d-model", "0"], "sizes must be positive"),
        (["ae", "train", "--d-model", "7"], "multiple of the 4 heads"),
        (["ae", "train", "--latent-dim", "0"], "latent_dim 0"),
        (["ae", "train", "--d-model", "65536"], "parameters, more than"),
        (["ae", "train", "--encoder-layers", "100000"], "too large"),
        (["ae", "train", "--lr", "-1"], "lr -1.0"),
        (["ae", "train", "--permute", "2"], "permute probability"),
        (["ae", "train", "--erase", "-1"], "erase probability"),
        (["ae", "train", "--seed", "99999999999999999999999"], "seed in 0.."),
        (["sample", "--spread", "nan"], "spread must be a finite number"),
        (["ae", "train", "--behaviour-weight", "-1"], "behaviour weight -1.0"),
        (["sample", "--n", "99999999999999"], "samples"),
        (["sample", "--seed", "99999999999999999999999"], "the seed must lie in"),
        (["zoo", "generate", "--models", "1.5"], "invalid int value"),
    ],
)
def test_bad_numbers_are_one_line(tmp_path, argv, message):
    code, err = run([*argv, "--workspace", str(tmp_path / "ws")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_path_options_that_are_not_usable(tiny_ae_workspace, tmp_path):
    ws = str(tiny_ae_workspace.root)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["zoo", "generate", "--workspace", str(a_file)], "not a folder"),
        (["zoo", "info", "--workspace", ""], "no workspace folder given"),
        (["workspace", "pack", "--workspace", ws, "--out", ""], "--out is empty"),
        (["workspace", "pack", "--workspace", ws, "--out", str(tmp_path)], "is a folder"),
        (["workspace", "pack", "--workspace", ws, "--out", f"{ws}/zoo/weights.safetensors"], "inside the workspace"),
        (["workspace", "pack", "--workspace", ws, "--out", f"{ws}/pack.zip"], "inside the workspace"),
        (["workspace", "pack", "--workspace", ws, "--out", f"{a_file}/pack.zip"], "is a file"),
        (["export", "--workspace", ws, "--samples", "x", "--out", f"{ws}/ae/model.zip"], "inside the workspace"),
        (["export", "--workspace", ws, "--samples", "x", "--out", ""], "--out is empty"),
        (["ae", "train", "--workspace", ws, "--run", "../../x"], "not a usable run name"),
        (["ae", "train", "--workspace", ws, "--run", str(tmp_path / "abs")], "not a usable run name"),
        (["ae", "eval", "--workspace", ws, "--run", "../x"], "not a usable run name"),
        (["workspace", "unpack", "--workspace", str(tmp_path / "new"), "--from", str(tmp_path)], "not a regular file"),
    ]
    before = sorted(p.relative_to(tiny_ae_workspace.root) for p in tiny_ae_workspace.root.rglob("*"))
    for argv, message in cases:
        code, err = run(argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (argv, err)
    assert sorted(p.relative_to(tiny_ae_workspace.root) for p in tiny_ae_workspace.root.rglob("*")) == before
    assert not (tmp_path / "abs").exists() and not (tmp_path.parent / "x").exists()


def test_messages_reach_the_terminal_without_control_characters(tmp_path):
    code, err = run(["zoo", "info", "--workspace", str(tmp_path / "evil\x1b[31m\nname")])
    assert code == 2 and "\x1b" not in err and len(err.strip().splitlines()) == 1 and "\\x1b[31m" in err
