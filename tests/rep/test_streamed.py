"""The streamed paths give the figures of the in-memory ones on a zoo that fits: SANE's windows read from the shards,
a SANE run and a per-neuron run trained from the shards, and the map embedded in chunks and fitted on a sample."""

import dataclasses

import numpy as np
import pytest
import torch

from core.pipeline import train_and_map
from core.rep import embed as embed_module
from core.rep import training_rows
from core.rep.augment import Permuter
from core.rep.embed import embedding_matrix, load_embeddings, project_2d
from core.rep.methods import hyperrep, method_for, with_kind_defaults
from core.rep.prepare import prepare, split_models
from core.rep.run import load_run
from core.rep.sequence import sequence_layout
from core.rep.windows import StoredEntries, epoch_windows, window_tokens
from core.zoo.arch import param_names
from core.zoo.model_zoo import load_zoos
from tests.conftest import TINY_AE, TINY_TRAIN, copy_workspace
from tests.rep.test_sane import TINY, TRAIN


def test_windows_read_from_the_store_equal_the_windows_of_the_rows_in_memory(tiny_zoo_workspace):
    zoo = load_zoos(tiny_zoo_workspace)[0]
    split = split_models(zoo.table["model_id"].unique().to_list(), (0.6, 0.2, 0.2), seed=0)
    prepared = prepare(zoo, split, align=True)
    assert prepared.indices  # aligned: the store is read through each family's gather index
    rows = prepared.rows("train")
    memory, stored = prepared.standardised_rows(rows), StoredEntries(prepared, rows, "cpu")
    layout = sequence_layout(param_names(zoo.spec), 16)
    generator = torch.Generator().manual_seed(0)
    tiled = epoch_windows(len(rows), layout.n_tokens, 8, generator)
    permuter = Permuter(zoo.spec, 1.0, 0, generator, "cpu")
    pick = permuter.draw(len(tiled))
    for entries in (None, lambda e: permuter.entries(pick, e)):
        expected = window_tokens(layout, memory, tiled, 8, entries)
        for a, b in zip(window_tokens(layout, stored, tiled, 8, entries), expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stored.models(tiled.model[:3]), memory[tiled.model[:3]])


@pytest.mark.parametrize("permute, reads_per_step", [(0.0, 1), (0.5, 2)])
def test_a_streamed_sane_step_reads_its_windows_once_unless_the_two_views_are_permuted_apart(
    tiny_zoo_workspace, monkeypatch, permute, reads_per_step
):
    """Reading windows from the store is most of a streamed step: the second contrastive view reads them again only
    when a permutation may make it differ."""
    zoo = load_zoos(tiny_zoo_workspace)[0]
    split = split_models(zoo.table["model_id"].unique().to_list(), (0.6, 0.2, 0.2), seed=0)
    prepared = prepare(zoo, split, align=True)
    monkeypatch.setattr(training_rows, "fits", lambda n_bytes: False)
    reads, read = [], StoredEntries.entries
    monkeypatch.setattr(StoredEntries, "entries", lambda self, *args: reads.append(1) or read(self, *args))
    train = with_kind_defaults(TINY, dataclasses.replace(TRAIN, permute_probability=permute, behaviour_weight=0.0))
    trainer = method_for(TINY).trainer([prepared], TINY, train, torch.Generator().manual_seed(0), "cpu")
    model, batches = trainer.build(), trainer.batches()[:3]
    for batch in batches:
        trainer.losses(model, batch)["loss"].backward()
    assert len(reads) == reads_per_step * len(batches)


def test_a_sane_run_trained_from_the_shards_equals_the_one_trained_in_memory(tiny_zoo_workspace, tmp_path, monkeypatch):
    in_memory = train_and_map(copy_workspace(tiny_zoo_workspace, tmp_path / "a"), TINY, TRAIN, evaluate=False)
    monkeypatch.setattr(training_rows, "fits", lambda n_bytes: False)  # as if the training models did not fit
    monkeypatch.setattr(embed_module, "chunk_rows", lambda n_params, copies: 5)  # and the map embeds 5 at a time
    reads, read = [], StoredEntries.entries
    monkeypatch.setattr(StoredEntries, "entries", lambda self, *args: reads.append(1) or read(self, *args))
    workspace = copy_workspace(tiny_zoo_workspace, tmp_path / "b")
    streamed = train_and_map(workspace, TINY, TRAIN, evaluate=False)
    assert len(reads) >= TRAIN.epochs  # every step read its windows from the store
    for (name, a), (_, b) in zip(in_memory.model.state_dict().items(), streamed.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    first, second = (embedding_matrix(load_embeddings(run.files)) for run in (in_memory, streamed))
    np.testing.assert_allclose(first, second, rtol=1e-3, atol=1e-4)
    assert load_run(workspace).history["val_reconstruction"].is_finite().all()


def test_a_per_neuron_run_trained_from_the_shards_equals_the_one_trained_in_memory(
    tiny_zoo_workspace, tmp_path, monkeypatch
):
    in_memory = train_and_map(copy_workspace(tiny_zoo_workspace, tmp_path / "a"), TINY_AE, TINY_TRAIN, evaluate=False)
    monkeypatch.setattr(training_rows, "fits", lambda n_bytes: False)  # as if the training models did not fit
    # A budget that holds the PCA's 12 x 12 Gram matrix (3 copies) but blocks of one model: 78 pairs read, not one.
    monkeypatch.setattr(hyperrep, "share_bytes", lambda share=0.25: 3 * 8 * 12 * 12)
    monkeypatch.setattr(hyperrep, "chunk_rows", lambda values, copies: 2)  # validation two models at a time
    reads, read = [], training_rows.StoredRows.models
    monkeypatch.setattr(training_rows.StoredRows, "models", lambda self, m: reads.append(len(m)) or read(self, m))
    streamed = train_and_map(copy_workspace(tiny_zoo_workspace, tmp_path / "b"), TINY_AE, TINY_TRAIN, evaluate=False)
    train = len(in_memory.split.train) * 3  # 3 saved epochs per model
    assert train == 12 and reads.count(1) >= train * (train + 1) // 2  # the PCA read every pair of blocks once
    assert sum(n for n in reads if n > 1) >= TINY_TRAIN.epochs * (train - train % TINY_TRAIN.batch_size)
    for (name, a), (_, b) in zip(in_memory.model.state_dict().items(), streamed.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    columns = ["loss", "reconstruction", "behaviour", "val_reconstruction", "val_behaviour"]
    for column in columns:
        first, second = (run.history[column].to_numpy() for run in (in_memory, streamed))
        np.testing.assert_allclose(first, second, rtol=1e-5, err_msg=column)


@pytest.mark.parametrize("fit_max", [40, 25])
def test_the_map_fitted_on_a_sample_places_the_rest_near_their_cluster(fit_max):
    rng = np.random.default_rng(0)
    centres = np.array([[0.0] * 6, [30.0] * 6])
    labels = np.repeat([0, 1], 20)
    points = (centres[labels] + rng.normal(size=(40, 6))).astype(np.float32)
    xy, pca = project_2d(points, seed=0, fit_max=fit_max)
    assert xy.shape == (40, 2) and pca.shape == (40, 2) and np.isfinite(xy).all()
    middle = [xy[labels == k].mean(0) for k in (0, 1)]
    nearest = np.argmin([np.linalg.norm(xy - m, axis=1) for m in middle], axis=0)
    assert (nearest == labels).all()  # transformed points land with the cluster they belong to


@pytest.mark.filterwarnings("error:Graph is not fully connected")
def test_a_map_of_separate_families_draws_each_as_its_own_cluster_without_a_library_warning():
    """Separate init families make separate neighbourhood graphs; UMAP lays them out apart by design, and
    scikit-learn's warning about a disconnected graph said nothing a user could act on."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 20)
    points = (60.0 * labels[:, None] + rng.normal(size=(120, 5))).astype(np.float32)
    xy, _ = project_2d(points, seed=0)
    assert np.isfinite(xy).all()
    middle = np.stack([xy[labels == k].mean(0) for k in range(6)])
    assert (np.argmin(np.linalg.norm(xy[:, None] - middle[None], axis=2), axis=1) == labels).all()
