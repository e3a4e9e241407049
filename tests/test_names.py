"""Names and paths typed by a user (core/names.py): one rule for the command line and the app."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UserError
from core.names import checked_name, checked_path_text


@pytest.mark.parametrize("name", ["a", "my-zoo_2", "A" * 64, "hyperrep-1a2b3c4d"])
def test_names_of_letters_digits_dashes_and_underscores_are_kept(name):
    assert checked_name(name) == name


@pytest.mark.parametrize("name", ["", " ", "x\ny", "my zoo", "a/b", "..", ".hidden", "back\\slash", "A" * 65, "é"])
def test_other_names_are_refused_in_one_line(name):
    with pytest.raises(UserError, match="not a usable run name") as caught:
        checked_name(name, "run name")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(max_size=80))
def test_a_name_is_accepted_exactly_when_it_is_64_safe_characters_at_most(text):
    safe = re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text) is not None
    try:
        checked_name(text)
        accepted = True
    except UserError:
        accepted = False
    assert accepted == safe


def test_paths_are_bounded_as_linux_bounds_them():
    assert checked_path_text("/a/" + "b" * 255) == "/a/" + "b" * 255
    assert checked_path_text("a/" * 2047 + "b") == "a/" * 2047 + "b"  # 4,095 bytes
    with pytest.raises(UserError, match="a path of 4,097 bytes; at most 4,096"):
        checked_path_text("x/" * 2048 + "y")
    with pytest.raises(UserError, match="longer than the 255 bytes"):
        checked_path_text("/tmp/" + "b" * 256, "--out")
    with pytest.raises(UserError, match="longer than the 255 bytes"):
        checked_path_text("é" * 128)  # 256 bytes in UTF-8, as the kernel counts
    with pytest.raises(UserError, match="NUL"):
        checked_path_text("a\x00b")
    with pytest.raises(UserError) as caught:
        checked_path_text("x" * 100_000, "dataset")
    assert "100,000 characters" in str(caught.value) and len(str(caught.value)) < 300
