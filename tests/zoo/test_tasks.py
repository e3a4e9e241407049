"""Transfer tasks made from a base dataset: the grammar, class subsets, few-shot splits, image transforms on
hand-made images, label spaces, and a zoo trained on a class subset."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from core.errors import DataError
from core.limits import MAX_TASK_CLASSES
from core.store.workspace import Workspace
from core.zoo.data import load_dataset
from core.zoo.generate import ZooConfig, generate_zoo
from core.zoo.tasks import Task, parse_task
from tests.zoo.test_data import write_idx_folder


def test_the_grammar():
    assert parse_task("digits") == Task("digits")
    assert parse_task("digits:classes=0-4:k=10") == Task("digits", classes=(0, 1, 2, 3, 4), k=10)
    assert parse_task("digits:k=5:classes=1,3,8-9") == Task("digits", classes=(1, 3, 8, 9), k=5)
    assert parse_task("digits:invert:rotate=-90:noise=0.3") == Task("digits", invert=True, rotate=270, noise=0.3)
    assert parse_task("/data/my:zoo:k=2") == Task("/data/my:zoo", k=2)  # a colon in a folder name survives
    assert parse_task("digits:test=50:k=3") == Task("digits", k=3, test=50)
    for bad, message in (
        ("digits:k=0", "at least 1"),
        ("digits:test=0", "at least 1 test image"),
        ("digits:classes=4-2", "backwards"),
        ("digits:classes=1,1", "once"),
        ("digits:rotate=45", "90, 180 or 270"),
        ("digits:noise=-1", "noise std"),
        ("digits:invert=2", "takes no value"),
        (":k=3", "no base dataset"),
        ("digits:classes=0-99999999999", "'99999999999' is not a class label"),  # said before a list is built
        ("digits:classes=0-500,600-1100", "not a class label"),
        ("digits:classes=-1", "not a class label"),
        ("x" * 5000 + ":k=3", "a path of 5,000 bytes"),
    ):
        with pytest.raises(DataError, match=message):
            parse_task(bad)


def test_a_class_subset_is_those_images_relabelled():
    raw = load_digits()
    subset = load_dataset("digits:classes=5-9")
    whole = load_dataset("digits")
    assert subset.n_classes == 5 and set(subset.y_test.tolist()) == {0, 1, 2, 3, 4}
    total = len(subset.y_train) + len(subset.y_val) + len(subset.y_test)
    assert total == int((raw.target >= 5).sum())
    label_three = subset.y_test == 3  # class 8 of the base
    assert label_three.sum() > 0 and subset.label_space == ("digits", (5, 6, 7, 8, 9))
    assert whole.label_space == ("digits", tuple(range(10)))
    with pytest.raises(DataError, match="no images of classes"):
        load_dataset("digits:classes=10")


def test_few_shot_keeps_k_per_class_in_training_and_the_rest_whole():
    few = load_dataset("digits:k=10", seed=3)
    whole = load_dataset("digits", seed=3)
    assert np.bincount(few.y_train.numpy()).tolist() == [10] * 10
    assert torch.equal(few.y_val, whole.y_val) and torch.equal(few.y_test, whole.y_test)
    assert torch.equal(load_dataset("digits:k=10", seed=3).y_train, few.y_train)  # seeded
    assert not torch.equal(load_dataset("digits:k=10", seed=4).y_train, few.y_train)
    with pytest.raises(DataError, match="fewer than k=500"):
        load_dataset("digits:k=500")


def test_a_test_subset_keeps_seeded_test_images_and_the_rest_whole():
    part = load_dataset("digits:test=100", seed=3)
    whole = load_dataset("digits", seed=3)
    assert len(part.y_test) == 100 and torch.equal(part.y_val, whole.y_val) and torch.equal(part.x_train, whole.x_train)
    rows = [int(np.flatnonzero((whole.x_test == image).all(dim=(1, 2, 3)).numpy())[0]) for image in part.x_test]
    assert rows == sorted(set(rows)) and torch.equal(whole.y_test[rows], part.y_test)  # those images, in order
    assert torch.equal(load_dataset("digits:test=100", seed=3).x_test, part.x_test)  # seeded
    assert not torch.equal(
        load_dataset("digits:test=100", seed=4).y_test[:50], load_dataset("digits", seed=4).y_test[:50]
    )
    with pytest.raises(DataError, match="test=5000, but the test split holds 359 images"):
        load_dataset("digits:test=5000")


def test_the_image_transforms_on_a_hand_made_image():
    image = np.array([[[[0.0, 0.25], [0.5, 1.0]]]], dtype=np.float32)  # [1, 1, 2, 2]
    labels = np.array([3])
    inverted, same = Task("x", invert=True).transform(image, labels, seed=0)
    assert np.allclose(inverted[0, 0], [[1.0, 0.75], [0.5, 0.0]]) and same.tolist() == [3]
    turned, _ = Task("x", rotate=90).transform(image, labels, seed=0)
    assert np.allclose(turned[0, 0], [[0.25, 1.0], [0.0, 0.5]])  # a quarter turn anticlockwise
    noisy, _ = Task("x", noise=0.5).transform(image, labels, seed=0)
    again, _ = Task("x", noise=0.5).transform(image, labels, seed=0)
    assert np.array_equal(noisy, again) and not np.allclose(noisy, image) and noisy.min() >= 0 and noisy.max() <= 1


def test_transforms_keep_the_label_space_and_subsets_change_it():
    assert load_dataset("digits:invert").label_space == load_dataset("digits").label_space
    assert load_dataset("digits:classes=0-4").label_space != load_dataset("digits:classes=5-9").label_space
    assert load_dataset("shapes").label_space != load_dataset("digits").label_space


def test_a_zoo_trains_on_a_class_subset(tmp_path):
    zoos = generate_zoo(
        Workspace(tmp_path / "ws"),
        ZooConfig(dataset="digits:classes=0-4", models=2, epochs=1, save_epochs=(1,), init_seeds=1),
    )
    assert zoos[0].spec.n_classes == 5 and zoos[0].dataset == "digits:classes=0-4"
    assert zoos[0].table["test_acc"].max() > 0.3  # five classes learned from one epoch, well above chance (0.2)


def test_a_local_folder_takes_the_same_options(tmp_path):
    write_idx_folder(tmp_path / "mnist", n_train=60, n_test=20)
    task = load_dataset(f"{tmp_path / 'mnist'}:classes=2-4:k=2:invert", seed=0)
    plain = load_dataset(str(tmp_path / "mnist"), seed=0)
    assert task.n_classes == 3 and np.bincount(task.y_train.numpy()).tolist() == [2, 2, 2]
    assert sorted(set(task.y_test.tolist())) == [0, 1, 2]
    assert len(task.y_test) == int(((plain.y_test >= 2) & (plain.y_test <= 4)).sum())


def test_task_options_are_checked_against_the_dataset():
    """digits has classes 0-9 and about 130 training images each: a class it lacks, or more images per class than
    it holds, is a DataError naming the problem (not an empty or lopsided task)."""
    with pytest.raises(DataError, match=r"has no images of classes \[10, 11\] \(its labels: 0,1,2,3,4,5,6,7,8,9\)"):
        load_dataset("digits:classes=8-11")
    with pytest.raises(DataError, match="fewer than k=1000"):
        load_dataset("digits:k=1000")
    assert len(parse_task("digits:classes=0-999").classes) == 1000  # the bound itself is accepted


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.one_of(
        st.text(alphabet="0123456789-, x", max_size=30),
        st.tuples(st.integers(-5, 10**15), st.integers(-5, 10**15)).map(lambda r: f"{r[0]}-{r[1]}"),
    )
)
def test_any_class_list_is_a_task_of_at_most_the_bound_or_a_data_error(text):
    """Never a MemoryError or another exception: ranges are checked as written, before a list is built."""
    try:
        task = parse_task(f"digits:classes={text}")
    except DataError:
        return
    assert 1 <= len(task.classes) <= MAX_TASK_CLASSES and len(set(task.classes)) == len(task.classes)
    assert all(0 <= c < MAX_TASK_CLASSES for c in task.classes)
