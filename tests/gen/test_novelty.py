"""The zoo's error sets: computed once per zoo, also when asked from two threads, and computed ahead (from the
zoo's own weights) the same as a generation computes them (from aligned weights)."""

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from core.gen import novelty
from core.gen.config import SampleConfig
from core.gen.novelty import ZooErrorSets, decoded_novelty, error_sets, nearest_l2, zoo_min_l2
from core.pipeline import generate, precompute_zoo_errors
from core.rep.run import load_run
from core.zoo import population
from core.zoo.arch import build_module, cnn_small
from core.zoo.backend import CPU_EVAL_IMAGES, Backend
from core.zoo.data import Dataset, load_dataset
from core.zoo.model_zoo import load_zoos
from core.zoo.population import stacked_net, step_bytes_per_image
from tests.conftest import copy_workspace


def test_aligned_weights_make_the_same_error_sets_as_the_zoos_own(tiny_ae_workspace):
    zoo, data = load_zoos(tiny_ae_workspace)[0], load_dataset("digits")
    aligned = load_run(tiny_ae_workspace).prepare(zoo).aligned
    assert not torch.equal(aligned, zoo.weights)  # alignment permuted some neurons
    assert torch.equal(error_sets(zoo.spec, aligned, data), error_sets(zoo.spec, zoo.weights, data))


def test_error_sets_computed_ahead_are_the_ones_a_generation_uses(tiny_ae_workspace, tmp_path, zoo_error_computations):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    computed, errors = zoo_error_computations, ZooErrorSets()
    precompute_zoo_errors(workspace, errors)
    zoo_size = len(load_zoos(workspace)[0].table)
    assert computed == [zoo_size]
    precompute_zoo_errors(workspace, errors)  # opened again: kept
    generate(workspace, SampleConfig(n=1, finetune_epochs=0, baselines=False, selection="none"), zoo_errors=errors)
    assert computed == [zoo_size]  # the generation reused them


def test_two_threads_asking_for_one_zoo_compute_it_once(tiny_zoo_workspace, monkeypatch):
    zoo, data = load_zoos(tiny_zoo_workspace)[0], load_dataset("digits")
    entered, release, original = threading.Event(), threading.Event(), novelty.predicted_classes
    computed = []

    def held(spec, vectors, data, activations=None):
        computed.append(threading.current_thread().name)
        entered.set()
        release.wait(60)
        return original(spec, vectors, data, activations)

    monkeypatch.setattr(novelty, "predicted_classes", held)
    errors, results = ZooErrorSets(), {}

    def ask(name: str) -> None:
        results[name] = errors.predictions(("zoo",), zoo.spec, zoo.weights, data, zoo.table["activation"].to_list())

    first = threading.Thread(target=ask, args=("first",), name="first")
    first.start()
    assert entered.wait(60)
    entered.clear()
    second = threading.Thread(target=ask, args=("second",), name="second")
    second.start()
    entered.wait(0.5)  # a second computation would start here, were the first not holding the set
    release.set()
    first.join(60), second.join(60)
    assert computed == ["first"] and results["first"] is results["second"]


# Two models of two checkpoints each: a and b (model 0), c and d (model 1).
POINTS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 1.0], [10.0, 3.0]])
MODELS = np.array([0, 0, 1, 1])


@pytest.mark.parametrize("block", [1, 3, 4])
def test_the_zoo_against_itself_in_blocks_skips_its_own_model(monkeypatch, block):
    monkeypatch.setattr(novelty, "chunk_rows", lambda n_params, copies=4: block)
    # a: c at 1 (its own b is nearer than d, but skipped); b: d at 3; c: a at 1; d: b at 3
    assert zoo_min_l2(POINTS, MODELS).tolist() == [1.0, 3.0, 1.0, 3.0]


def test_every_group_is_measured_in_one_pass_over_the_zoo(monkeypatch):
    monkeypatch.setattr(novelty, "chunk_rows", lambda n_params, copies=4: 1)
    read, chunks = [], novelty.zoo_chunks
    monkeypatch.setattr(novelty, "zoo_chunks", lambda zoo, rows: read.append(rows) or chunks(zoo, rows))
    first, second = nearest_l2([torch.tensor([[0.0, 2.0]]), torch.tensor([[10.0, 4.0], [1.0, 0.0]])], POINTS)
    assert len(read) == 1 and first.tolist() == [1.0] and second.tolist() == [1.0, 1.0]


def test_decodes_given_a_chunk_at_a_time_give_the_nearest_over_all_of_them():
    generated = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    errors = torch.tensor([[1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    chunks = [
        (torch.tensor([[1.0, 0.0]]), torch.tensor([[1, 0, 0]], dtype=torch.bool)),
        (torch.tensor([[5.0, 6.0]]), torch.tensor([[0, 0, 1]], dtype=torch.bool)),
    ]
    figures = decoded_novelty(generated, errors, iter(chunks))
    assert figures["decoded_min_l2"].tolist() == [1.0, 1.0]
    assert figures["decoded_max_iou"].tolist() == [0.5, 1.0]  # {0,1} with {0}: 1/2; {2} with {2}: 1


def test_error_sets_are_each_models_own_mistakes_in_passes_of_a_few_models(monkeypatch):
    """Predictions made a pass of two models at a time and per activation are each model's own, as a lone
    nn.Module makes them."""
    spec = cnn_small()
    two_models = Backend(memory_budget=2 * CPU_EVAL_IMAGES * step_bytes_per_image(stacked_net(spec), False))
    monkeypatch.setattr(population, "backend_for", lambda device: two_models)
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(7, spec.n_params, generator=generator) * 0.5
    activations = ["relu", "tanh", "relu", "relu", "tanh", "relu", "relu"]
    x, y = torch.randn(150, 1, 8, 8, generator=generator), torch.randint(0, 10, (150,), generator=generator)
    wrong = error_sets(spec, vectors, Dataset("fixture", x, y, x, y, x, y, 10), activations)
    for i, activation in enumerate(activations):
        module = build_module(spec.with_activation(activation), vectors[i]).eval()
        with torch.no_grad():
            assert torch.equal(wrong[i], module(x).argmax(1) != y)
    assert len(two_models.model_chunks(5, CPU_EVAL_IMAGES, step_bytes_per_image(stacked_net(spec), False))) == 3
    assert 0 < wrong.float().mean() < 1


def test_a_regions_decodes_are_evaluated_once_and_give_the_same_figures(tiny_ae_workspace, tmp_path, monkeypatch):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    evaluated, original = [], novelty.error_sets

    def counting(spec, vectors, data, activations=None):
        evaluated.append(len(vectors))
        return original(spec, vectors, data, activations)

    monkeypatch.setattr(novelty, "error_sets", counting)
    config = SampleConfig(n=2, finetune_epochs=0, baselines=False, selection="none", spread=1.0)
    kept = ZooErrorSets()
    first = generate(workspace, config, zoo_errors=kept).to_json()
    once = list(evaluated)
    again = generate(workspace, replace(config, seed=1), zoo_errors=kept).to_json()
    assert once and evaluated == once  # the second generation of the region evaluated no decode
    fresh = generate(workspace, replace(config, seed=1), zoo_errors=ZooErrorSets()).to_json()
    assert evaluated == once * 2  # without them kept, evaluated again
    for key in ("decoded_max_iou_median", "decoded_min_l2_median"):
        assert again["novelty"][key] == fresh["novelty"][key]
    assert 0 <= first["novelty"]["decoded_max_iou_median"] <= 1
    generate(workspace, replace(config, anchors="top:0.5"), zoo_errors=kept)
    assert len(evaluated) > 2 * len(once)  # other anchors: their own decodes
