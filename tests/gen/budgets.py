"""Memory budgets for tests of the streamed paths: one small enough to split the tiny zoo into many chunks, one
large enough to read it whole. Both are set through monkeypatch, so the default budget comes back after the test."""

from core.store import budget

CHUNK = 2  # checkpoints per chunk of raw rows under the small budget; model passes get 1


def small_budget(monkeypatch, n_params: int) -> None:
    """The smallest --memory, with the chunk's share of it cut so that a chunk holds CHUNK checkpoints."""
    monkeypatch.setattr(budget, "_budget_mb", [64])
    monkeypatch.setattr(budget, "CHUNK_SHARE", (CHUNK * 4 * n_params + 1) / (64 << 20))
    assert budget.chunk_rows(n_params, copies=0) == CHUNK and budget.chunk_rows(n_params, copies=8) == 1


def whole_budget(monkeypatch) -> None:
    """The largest --memory: every stage takes the zoo in one chunk."""
    monkeypatch.setattr(budget, "_budget_mb", [budget.MAX_MEMORY_MB])
