"""Weight-matching alignment: exactly function-preserving, and it undoes a planted permutation."""

import numpy as np
import torch

from core.rep.align import align_zoo, family_mean, match_to_reference
from core.rep.tokens import random_permutation_indices
from core.zoo.arch import build_module, cnn_small
from core.zoo.data import load_dataset
from core.zoo.model_zoo import load_zoos


def test_alignment_recovers_a_planted_permutation():
    spec = cnn_small()
    reference = torch.cat([p.detach().reshape(-1) for p in build_module(spec).parameters()])
    for gather in random_permutation_indices(spec, 3, torch.Generator().manual_seed(2)):
        shuffled = reference[gather]
        assert not torch.equal(shuffled, reference)
        assert torch.equal(shuffled[match_to_reference(spec, shuffled, reference)], reference)


def test_aligned_zoo_computes_the_same_functions_and_sits_closer(tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    models, epochs = zoo.table["model_id"].to_numpy(), zoo.table["epoch"].to_numpy()
    reference_row = int(np.flatnonzero(epochs == epochs.max())[0])
    aligned, indices = align_zoo(zoo.spec, zoo.weights, models, epochs, reference_row, iterations=1)
    assert set(indices) == set(models.tolist())
    x = load_dataset("digits").x_test
    for row in range(0, len(aligned), 4):
        before = build_module(zoo.spec, zoo.weights[row])(x)
        after = build_module(zoo.spec, aligned[row])(x)
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    last = epochs == epochs.max()
    distance_before = (zoo.weights[last] - zoo.weights[reference_row]).norm(dim=1).mean()
    distance_after = (aligned[last] - aligned[reference_row]).norm(dim=1).mean()
    assert distance_after < distance_before
    # one permutation per model: the checkpoints of a model move together
    for model, gather in indices.items():
        rows = np.flatnonzero(models == model)
        assert torch.equal(aligned[rows], zoo.weights[rows][:, gather])


def test_a_family_mean_reads_its_rows_a_chunk_at_a_time():
    weights = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [6.0, 50.0]])
    reads = []

    def read_rows(rows):
        reads.append(len(rows))
        return weights[torch.from_numpy(rows)]

    rows = np.array([0, 1, 2, 3, 4])
    assert torch.equal(family_mean(read_rows, rows, chunk=2), torch.tensor([3.2, 30.0]))
    assert reads == [2, 2, 1]  # never more than a chunk in memory
    assert torch.equal(family_mean(read_rows, rows, chunk=5), weights.mean(0))  # one chunk: the plain mean
