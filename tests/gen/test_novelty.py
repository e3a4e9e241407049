"""The zoo's error sets: computed once per zoo, also when asked from two threads, and computed ahead (from the
zoo's own weights) the same as a generation computes them (from aligned weights)."""

import threading

import torch

from core.gen import novelty
from core.gen.config import SampleConfig
from core.gen.novelty import ZooErrorSets, error_sets
from core.pipeline import generate, precompute_zoo_errors
from core.rep.run import load_run
from core.zoo.data import load_dataset
from core.zoo.model_zoo import load_zoos
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
