"""The memory a command may use (`--memory MB`), and the chunk sizes that keep each stage inside it.

A stage that walks the zoo reads it in chunks of checkpoints; a chunk and the copies a stage derives from it
(aligned, standardised, tokens, activations) take at most a fraction of the budget, so that the budget also holds
the interpreter, torch (about 300 MB resident on its own) and the stage's model and outputs.
"""

from __future__ import annotations

from core.errors import UserError

DEFAULT_MEMORY_MB = 2048
# The share of the budget one chunk of raw rows may take (its derived copies are counted by the caller).
CHUNK_SHARE = 1 / 16
MAX_MEMORY_MB = 1 << 24  # 16 TiB: a typo guard, far above any machine

_budget_mb = [DEFAULT_MEMORY_MB]


def set_memory_mb(megabytes: int) -> None:
    if not 64 <= megabytes <= MAX_MEMORY_MB:
        raise UserError(f"--memory must lie in 64..{MAX_MEMORY_MB} MB, got {megabytes}")
    _budget_mb[0] = int(megabytes)


def memory_mb() -> int:
    return _budget_mb[0]


def chunk_rows(row_values: int, copies: int = 4, share: float | None = None) -> int:
    """How many rows of `row_values` float32 values a chunk holds, so that it and `copies` more of its size stay
    within `share` of the budget (by default CHUNK_SHARE; at least one row: a checkpoint is the smallest unit)."""
    allowed = memory_mb() * (1 << 20) * (CHUNK_SHARE if share is None else share)
    return max(1, int(allowed // (4 * max(1, row_values) * (1 + copies))))


def share_bytes(share: float = 0.25) -> int:
    """The bytes `share` of the budget holds."""
    return int(memory_mb() * (1 << 20) * share)


def fits(n_bytes: int, share: float = 0.25) -> bool:
    """Whether one structure of `n_bytes` (e.g. a training set kept whole for speed) fits in `share` of the budget."""
    return n_bytes <= share_bytes(share)
