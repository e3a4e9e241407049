"""Whether a zoo's training compiles its stacked forward pass (`zoo generate --compile auto|on|off`).

`torch.compile` of `StackedNet.train_forward` trained 14,696 model-epochs/s against 8,670 eager on an H200 (4,096
CNNs on digits, core/zoo/backend.py), but its first epoch took 22.4 s of compiling. It pays where the eager
training still to come is long enough that the saved share of it exceeds that cost; on the CPU it measured slower
and took 15-35 s to compile, so "auto" never compiles there.

"auto" decides after the first trained epoch, from that epoch's measured time (an estimate made before any epoch
ran would have to guess the device's speed): compiling pays when

    remaining_eager_s * (1 - 1 / COMPILED_SPEEDUP) > COMPILE_COST_S,

i.e. when the eager training still to come exceeds about 54 s with the figures below.

A generation too large for one block of models (core/zoo/blocks.py) decides per block, each from its own first
epoch and the epochs left in that block: every block builds new nets, which compile anew, so the cost is paid per
block and is weighed against that block's share of the work (whether torch's cache spares a later block of the
same shapes its compiling was not measured; if it does, "auto" errs towards eager there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODES = ("auto", "on", "off")
# Measured on an H200 (2026-11-26): 22.4 s for the first compiled epoch against 0.92 s eager.
COMPILE_COST_S = 22.4
# Compiled against eager model-epochs per second at 4,096 models on the same H200.
COMPILED_SPEEDUP = 14_696 / 8_670


@dataclass(frozen=True)
class CompileDecision:
    compile: bool
    reason: str


def decide(mode: str, device: str, epoch_s: float | None, remaining_epochs: int) -> CompileDecision:
    """Whether to compile now. `epoch_s` is the measured time of one eager epoch (None before any ran: "auto"
    then waits), `remaining_epochs` the epochs still to train after it."""
    if mode not in MODES:
        raise ValueError(f"unknown compile mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "off":
        return CompileDecision(False, "--compile off")
    if mode == "on":
        return CompileDecision(True, "--compile on")
    if torch.device(device).type != "cuda":
        return CompileDecision(False, "not on the CPU: compiling measured slower there")
    if epoch_s is None:
        return CompileDecision(False, "waiting for one eager epoch to estimate the time")
    remaining_s = epoch_s * remaining_epochs
    saved_s = remaining_s * (1 - 1 / COMPILED_SPEEDUP)
    verdict = "pays" if saved_s > COMPILE_COST_S else "does not pay"
    return CompileDecision(
        saved_s > COMPILE_COST_S,
        f"compiling {verdict}: about {saved_s:.0f} s saved of {remaining_s:.0f} s eager, at a cost of about "
        f"{COMPILE_COST_S:.0f} s",
    )


def compile_forward(net) -> None:
    """Swap the net's training forward for a compiled one (static shapes: a population's chunks are equal but for
    the last, which compiles once more)."""
    net.train_forward = torch.compile(net.train_forward, dynamic=False)


class CompileWhenItPays:
    """Applies a compile mode to a generation's nets: "on" at once, "auto" once, after the first eager epoch this
    process trains (a resumed generation measures its own first epoch), "off" never."""

    def __init__(self, mode: str, device: str, nets: list) -> None:
        self.mode, self.device, self.nets = mode, device, nets
        self.decided = False
        first = decide(mode, device, None, 0)
        if first.compile or mode == "off" or torch.device(device).type != "cuda":
            self._apply(first)

    def after_epoch(self, epoch_s: float, remaining_epochs: int) -> str | None:
        """Decide (once) from the epoch just trained; returns the reason when this call decided."""
        if self.decided:
            return None
        return self._apply(decide(self.mode, self.device, epoch_s, remaining_epochs))

    def _apply(self, decision: CompileDecision) -> str:
        self.decided = True
        if decision.compile:
            for net in self.nets:
                compile_forward(net)
        return decision.reason
