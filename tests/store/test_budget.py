"""The memory budget: chunk sizes from it (hand-checked), its bounds, and the CLI's --memory."""

import pytest

from core.errors import UserError
from core.store import budget


@pytest.fixture(autouse=True)
def restore_budget():
    yield
    budget.set_memory_mb(budget.DEFAULT_MEMORY_MB)


def test_a_chunk_and_its_copies_take_a_sixteenth_of_the_budget():
    budget.set_memory_mb(64)  # a sixteenth: 4 MiB; a row of 1,024 float32 and 3 copies: 16 KiB
    assert budget.chunk_rows(1024, copies=3) == 256
    assert budget.chunk_rows(10**9) == 1  # never less than one checkpoint
    assert budget.fits(16 << 20) and not budget.fits((16 << 20) + 1)  # a quarter of 64 MiB


@pytest.mark.parametrize("megabytes", [0, 63, budget.MAX_MEMORY_MB + 1])
def test_a_budget_out_of_bounds_is_refused(megabytes):
    with pytest.raises(UserError, match="--memory must lie in"):
        budget.set_memory_mb(megabytes)


def test_the_cli_refuses_a_tiny_budget_in_one_line(tmp_path, run_cli):
    result = run_cli("zoo", "info", "--workspace", tmp_path / "ws", "--json", "--memory", 8)
    assert result.code == 2 and result.err.strip() == "error: --memory must lie in 64..16777216 MB, got 8"
