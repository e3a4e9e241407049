"""One autoencoder run over several processes (torch DistributedDataParallel), as torchrun starts them.

Every process holds the whole training zoo and draws the same shuffled global batches; each trains on its own
contiguous chunk of every batch, DDP averages the gradients, and the contrastive loss sees every process's
projections (`gathered`), so a step is the step one process takes on the global batch. What is not bit-identical
to one process, and why:
- the augmentations (noise, erasing, permutations, behavioural queries) and dropout: each process
  draws its own, from a stream of its own, so a model gets other noise than it would in one process;
- a global batch that does not split evenly: DDP averages the chunks' mean gradients with equal weights;
- floating-point order: the gradient is summed across processes (and the NT-Xent matrix is built from the
  gathered rows), so the last bits of every step differ.
With augmentation and dropout off, 2 processes followed one process's loss history to 4e-7 relative over 3 epochs
(tests/rep/test_distributed.py allows 1e-5). Outside torchrun (no WORLD_SIZE in the environment) everything here
is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core.errors import UserError


@dataclass(frozen=True)
class Place:
    """This process's rank among `world` processes."""

    rank: int = 0
    world: int = 1

    @property
    def writer(self) -> bool:
        """Only rank 0 writes files and reports progress: the others hold the same model."""
        return self.rank == 0


def start(device: str) -> Place:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs), or stay alone outside torchrun; under
    NCCL "cuda" then means this process's own GPU."""
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return place()
    cuda = torch.device(device).type == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"process {local_rank} of this node has no GPU ({torch.cuda.device_count()} seen)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return place()


def place() -> Place:
    if not dist.is_initialized():
        return Place()
    return Place(dist.get_rank(), dist.get_world_size())


def reports() -> bool:
    """Whether this process tells the user anything: alone, or rank 0 as torchrun numbered it (which holds before
    the process group starts and after it ends, when an error is reported)."""
    return os.environ.get("RANK", "0") == "0"


def barrier() -> None:
    """Wait for every process (nothing when alone)."""
    if place().world > 1:
        dist.barrier()


def stop() -> None:
    """Leave the process group, all processes together. (When rank 1 left as soon as training ended, while rank 0
    went on, one test run in about ten ended in a SIGABRT under gloo; the cause was not pinned down.)"""
    if dist.is_initialized():
        dist.barrier()
        leave()


def leave() -> None:
    """Leave the process group at once (after an error, when the others may never come to a barrier)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def chunk(batch: torch.Tensor) -> torch.Tensor:
    """This process's contiguous share of a global batch of row indices (all of it when alone)."""
    here = place()
    return batch if here.world == 1 else batch.tensor_split(here.world)[here.rank]


def gathered(rows: torch.Tensor) -> torch.Tensor:
    """Every process's `rows` in rank order, gradients flowing back to each (the identity when alone). Chunks of a
    batch that does not split evenly differ by one row: they are padded to the longest for the exchange."""
    if place().world == 1:
        return rows
    sizes = [torch.zeros((), dtype=torch.long, device=rows.device) for _ in range(place().world)]
    dist.all_gather(sizes, torch.tensor(len(rows), device=rows.device))
    longest = int(max(sizes))
    padded = torch.cat([rows, rows.new_zeros(longest - len(rows), *rows.shape[1:])])
    parts = _AllGather.apply(padded).split(longest)
    return torch.cat([part[: int(n)] for part, n in zip(parts, sizes, strict=True)])


class _AllGather(torch.autograd.Function):
    """Equal-sized rows of every process, stacked in rank order; backward sums the gradients every process computed
    for them and hands each process its own rows' share (torch's own version is deprecated)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, rows.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def mean_across(values: torch.Tensor) -> torch.Tensor:
    """The mean over processes of a tensor every process holds (itself when alone)."""
    if place().world == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / place().world


def share_generator(generator: torch.Generator) -> None:
    """Give every process rank 0's generator state (so all draw the same batches next), then, after the caller has
    drawn them, `own_stream` splits the streams."""
    if place().world == 1:
        return
    state = generator.get_state()
    carrier = state.to("cuda") if dist.get_backend() == "nccl" else state.clone()
    dist.broadcast(carrier, src=0)
    generator.set_state(carrier.cpu())


def own_stream(generator: torch.Generator, seed: int, epoch: int) -> None:
    """Streams of this process's own for the epoch's augmentations (`generator`) and dropout (torch's global one);
    alone, both go on as they were (a single process's run is unchanged). Rank 0 keeps its streams, which are what
    the run's state saves."""
    here = place()
    if here.world == 1 or here.rank == 0:
        return
    own = hash((seed, epoch, here.rank)) % (2**63)  # an int tuple's hash is the same in every process
    generator.manual_seed(own)
    torch.manual_seed(own)


class _Losses(nn.Module):
    """The trainer's losses as a module's forward: DDP syncs gradients only for work done inside the forward of the
    module it wraps, and the kinds call their models' parts (encode, decode, projection) directly."""

    def __init__(self, trainer, model: nn.Module):
        super().__init__()
        self.trainer, self.model = trainer, model

    def forward(self, batch):
        return self.trainer.losses(self.model, batch)


def loss_step(trainer, model: nn.Module):
    """`batch -> losses`: the trainer's own call when alone, the DDP-wrapped one under torchrun (which starts by
    giving every process rank 0's parameters). `static_graph`: a kind may leave parameters unused (the projection
    head at gamma 0), always the same ones."""
    if place().world == 1:
        return lambda batch: trainer.losses(model, batch)
    return DistributedDataParallel(_Losses(trainer, model), static_graph=True)
