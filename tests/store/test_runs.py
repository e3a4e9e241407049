"""Runs on disk: names that stay inside the workspace, and the samples-run record read back as written."""

import polars as pl
import pytest
import torch

from core.errors import UserError, ZooError
from core.store.files import read_json, write_json
from core.store.runs import (
    NOVELTY_MEDIANS,
    SAMPLES_COLUMNS,
    AERunFiles,
    SamplesRun,
    ae_runs,
    checked_run_name,
    run_identity,
)
from core.store.workspace import Workspace


@pytest.mark.parametrize("name", ["../x", "/abs", ".hidden", "a/b", "", "..", "back\\slash"])
def test_run_names_that_leave_their_folder_are_refused(name):
    with pytest.raises(UserError, match="not a usable run name"):
        checked_run_name(name)


def test_an_autoencoder_run_folder_names_its_files(tmp_path):
    files = AERunFiles.of(Workspace(tmp_path), "hyperrep-1234")
    assert files.folder == tmp_path / "ae" / "hyperrep-1234" and files.embeddings.name == "embeddings.parquet"
    assert not files.exists()
    files.write_config({"status": "training"})
    assert files.exists() and files.status() == "training" and files.kind() == "hyperrep"  # old runs say no kind


def _record(workspace: Workspace, name: str, created: str, ae_run: str = "hyperrep-1") -> SamplesRun:
    return SamplesRun(
        folder=SamplesRun.folder_of(workspace, name),
        ae_run=ae_run,
        ae_kind="hyperrep",
        method="kde",
        n=2,
        dataset="shapes",
        source_dataset="digits",
        architecture="cnn-small",
        activation="relu",
        anchors={"rule": "top:0.3", "count": 5, "ids": [1, 2, 3, 4, 5]},
        curves={"generated": [0.5, 0.9]},
        novelty=dict.fromkeys(NOVELTY_MEDIANS, 1.0),
        novelty_baselines={},
        selection={"mode": "none"},
        config={"n": 2, "finetune_epochs": 1},
        created=created,
    )


def test_a_samples_run_reads_back_as_written_and_lists_newest_first(tmp_path):
    workspace = Workspace(tmp_path)
    table = pl.DataFrame({"sample": [0, 1]} | {c: [0.5, 0.7] for c in SAMPLES_COLUMNS if c != "sample"})
    for name, created, ae_run in (("a", "2026-01-01", "hyperrep-1"), ("b", "2026-02-01", "sane-2")):
        record = _record(workspace, name, created, ae_run)
        record.write({"generated": torch.zeros(2, 3)}, {}, (table, table, table), None)
    loaded = SamplesRun.load(workspace, "a")
    assert loaded == _record(workspace, "a", "2026-01-01") and loaded.transfer
    assert loaded.to_json()["samples_run"] == "a" and loaded.samples_table().equals(table)
    assert [r.name for r in SamplesRun.list(workspace)] == ["b", "a"]
    assert [r.name for r in SamplesRun.list(workspace, ae_run="sane-2")] == ["b"]


def test_a_samples_run_with_a_missing_field_names_its_file(tmp_path):
    workspace = Workspace(tmp_path)
    table = pl.DataFrame({"sample": [0]})
    record = _record(workspace, "a", "2026-01-01")
    record.write({"generated": torch.zeros(1, 3)}, {}, (table, table, table), None)
    data = read_json(record.result_path)
    del data["curves"]
    write_json(record.result_path, data)
    with pytest.raises(ZooError, match=r"result.json: missing \['curves'\]"):
        SamplesRun.load(workspace, "a")
    with pytest.raises(UserError, match="no such samples run"):
        SamplesRun.load(workspace, "nope")


def test_run_folders_whose_names_could_not_be_opened_by_name_are_not_listed(tmp_path):
    """A folder made by hand (or by a version that allowed dots and spaces) would be refused when opened by its
    name: listing it would break every page that lists runs."""
    workspace = Workspace(tmp_path)
    for name in ("hyperrep-1", "my.run", "with space"):
        AERunFiles(tmp_path / "ae" / name).write_config({"status": "done"})
    assert [run.name for run in ae_runs(workspace)] == ["hyperrep-1"]
    for name in ("kde-1", "odd.name"):
        write_json(tmp_path / "samples" / name / "result.json", _record(workspace, "kde-1", "2024").to_json())
    assert [run.name for run in SamplesRun.list(workspace, current_zoo_only=False)] == ["kde-1"]


def test_a_samples_run_is_swapped_in_whole_and_another_writers_run_is_kept(tmp_path):
    """The same request twice at once: the second to finish finds a run it did not see at its start and is refused;
    a rerun that saw the run replaces it; a failed write leaves no build folder and the old run intact."""
    workspace = Workspace(tmp_path)
    table = pl.DataFrame({"sample": [0, 1]} | {c: [0.5, 0.7] for c in SAMPLES_COLUMNS if c != "sample"})
    first, second = _record(workspace, "a", "2026-01-01"), _record(workspace, "a", "2026-02-01")
    seen_by_both = run_identity(first.folder)
    assert seen_by_both is None
    first.write({"generated": torch.zeros(2, 3)}, {}, (table, table, table), seen_by_both)
    with pytest.raises(UserError, match="another command wrote this run while this one ran"):
        second.write({"generated": torch.ones(2, 3)}, {}, (table, table, table), seen_by_both)
    assert SamplesRun.load(workspace, "a").created == "2026-01-01"
    second.write({"generated": torch.ones(2, 3)}, {}, (table, table, table), run_identity(first.folder))
    assert SamplesRun.load(workspace, "a").created == "2026-02-01"
    bad = _record(workspace, "a", "2026-03-01")
    with pytest.raises(AttributeError):  # not a tensor: the weights' write fails
        bad.write({"generated": "not a tensor"}, {}, (table, table, table), run_identity(first.folder))
    assert SamplesRun.load(workspace, "a").created == "2026-02-01"
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["a"]
