"""The principal directions of a matrix read a block of rows at a time: the per-neuron autoencoder's PCA start,
for training sets that do not fit in memory as well as for those that do (one routine, so both start alike).

A thin SVD needs the whole matrix [n, d]. Its right singular vectors are also the eigenvectors of the [d, d]
covariance, and follow from the eigenvectors u of the [n, n] Gram matrix of the centred rows as X^T u / sqrt(eig).
Whichever of the two is smaller is summed block by block (the Gram matrix over pairs of blocks, each pair read
once), in float64, and only it and two blocks are ever held. Directions whose eigenvalue is at rounding level (a
centred matrix of n rows has rank at most n - 1) are left out: their SVD vectors are arbitrary, so no other
reading could reproduce them. Each direction's sign is fixed (its largest entry positive), so the result does not
depend on how the rows are blocked beyond rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

# A fresh pass over the rows in blocks [rows, d], from the block numbered by its argument on, at each call.
Blocks = Callable[[int], Iterator[torch.Tensor]]
# Eigenvalues below this fraction of the largest are rounding: float64 Gram matrices of float32 data sit near 1e-16.
RELATIVE_FLOOR = 1e-10


def principal_directions(blocks: Blocks, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [d], directions [<= rank, d]), float64: the mean row and the top principal directions of the rows that
    `blocks` yields, largest variance first."""
    count, total = 0, None
    for block in blocks(0):
        count += len(block)
        total = block.double().sum(0) if total is None else total + block.double().sum(0)
    mean = total / count
    if count <= len(mean):  # n <= d: the [n, n] Gram matrix, then each direction as X^T u / sqrt(eigenvalue)
        values, vectors = _top(_gram(blocks, mean, count), rank)
        directions, first = torch.zeros(len(values), len(mean), dtype=torch.float64), 0
        for block in blocks(0):
            directions += vectors[first : first + len(block)].T @ (block.double() - mean)
            first += len(block)
        directions /= values.sqrt().unsqueeze(1)
    else:  # n > d: the [d, d] covariance, whose eigenvectors are the directions
        covariance = torch.zeros(len(mean), len(mean), dtype=torch.float64)
        for block in blocks(0):
            centred = block.double() - mean
            covariance += centred.T @ centred
        directions = _top(covariance, rank)[1].T
    signs = torch.sign(directions.gather(1, directions.abs().argmax(1, keepdim=True)))
    return mean, directions * signs


def _gram(blocks: Blocks, mean: torch.Tensor, count: int) -> torch.Tensor:
    """[n, n]: the inner products of the centred rows, block i against blocks i, i+1, ... (two blocks held at a
    time); the lower triangle is the upper one's transpose."""
    gram, first = torch.zeros(count, count, dtype=torch.float64), 0
    for number, block in enumerate(blocks(0)):
        left, second = block.double() - mean, first
        for other in blocks(number):
            product = left @ (other.double() - mean).T
            gram[first : first + len(left), second : second + len(other)] = product
            gram[second : second + len(other), first : first + len(left)] = product.T
            second += len(other)
        first += len(left)
    return gram


def _top(symmetric: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues [k], eigenvectors [m, k]) of the `rank` largest eigenvalues above rounding level, largest first."""
    values, vectors = torch.linalg.eigh(symmetric)
    keep = torch.argsort(values, descending=True)[:rank]
    keep = keep[values[keep] > RELATIVE_FLOOR * values.max().clamp_min(0)]
    return values[keep], vectors[:, keep]
