"""ResNet weight matching: the residual stream's shared permutations keep the function exactly, and matching
undoes a planted permutation."""

import numpy as np
import torch

from core.rep.align import align_zoo
from core.rep.align_resnet import match_resnet, permutation_groups, random_resnet_permutations
from core.rep.augment import Permuter
from core.zoo.arch import build_module, param_names
from core.zoo.data import load_dataset
from core.zoo.model_zoo import load_zoos
from core.zoo.resnet import resnet

SPEC = resnet(widths=(4, 6, 8), blocks=(2, 1, 1))  # a stage with a block that keeps its stream, then two shortcuts


def test_groups_tie_every_writer_of_a_stream_together():
    tensors, sizes = permutation_groups(SPEC)
    # stem stream (4), then per block an inner group; stages 2 and 3 open a new stream at their shortcut
    assert sizes == [4, 4, 4, 6, 6, 8, 8]
    groups = {name: t.out_group for (name, _), t in zip(param_names(SPEC), tensors, strict=True)}
    assert groups["conv1.weight"] == groups["layer1.0.conv2.weight"] == groups["layer1.1.bn2.running_var"] == 0
    assert groups["layer2.0.conv2.weight"] == groups["layer2.0.downsample.0.weight"] == groups["layer2.0.bn2.bias"]
    assert groups["layer1.0.bn1.weight"] == groups["layer1.0.conv1.weight"] != groups["layer1.1.conv1.weight"]


def _trained_like(spec, seed):
    """A ResNet with non-trivial BatchNorm statistics, so that permuting them wrongly would show."""
    torch.manual_seed(seed)
    module = build_module(spec)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return torch.cat([v.reshape(-1) for v in module.state_dict().values() if v.is_floating_point()])


def test_random_permutations_keep_the_function_on_real_images():
    vector = _trained_like(SPEC, 0)
    x = load_dataset("digits").x_test[:64]
    before = build_module(SPEC, vector).eval()(x)
    for gather in random_resnet_permutations(SPEC, 3, torch.Generator().manual_seed(1)):
        assert not torch.equal(vector[gather], vector)
        torch.testing.assert_close(build_module(SPEC, vector[gather]).eval()(x), before, atol=1e-5, rtol=1e-5)


def test_the_permutation_augmentation_reads_resnets_and_keeps_their_function():
    vectors = torch.stack([_trained_like(SPEC, seed) for seed in (5, 6)])
    permute = Permuter(SPEC, 1.0, 0, torch.Generator().manual_seed(0), "cpu")
    views = permute(vectors)
    x = load_dataset("digits").x_test[:64]
    for vector, view in zip(vectors, views):
        assert not torch.equal(view, vector)
        expected = build_module(SPEC, vector).eval()(x)
        torch.testing.assert_close(build_module(SPEC, view).eval()(x), expected, atol=1e-5, rtol=1e-5)


def test_matching_undoes_a_planted_permutation():
    reference = _trained_like(SPEC, 3)
    for gather in random_resnet_permutations(SPEC, 3, torch.Generator().manual_seed(4)):
        shuffled = reference[gather]
        assert torch.equal(shuffled[match_resnet(SPEC, shuffled, reference)], reference)


def test_aligned_resnet_zoo_keeps_functions_and_sits_closer(tiny_resnet_workspace):
    zoo = load_zoos(tiny_resnet_workspace)[0]
    models, epochs = zoo.table["model_id"].to_numpy(), zoo.table["epoch"].to_numpy()
    reference_row = int(np.flatnonzero(epochs == epochs.max())[0])
    aligned, _ = align_zoo(zoo.spec, zoo.weights, models, epochs, reference_row)
    x = load_dataset("digits").x_test[:128]
    for row in range(0, len(aligned), 5):
        before = build_module(zoo.spec, zoo.weights[row]).eval()(x)
        torch.testing.assert_close(build_module(zoo.spec, aligned[row]).eval()(x), before, atol=1e-4, rtol=1e-4)
    last = epochs == epochs.max()
    distance_before = (zoo.weights[last] - zoo.weights[reference_row]).norm(dim=1).mean()
    assert (aligned[last] - aligned[reference_row]).norm(dim=1).mean() < distance_before
