"""Hand-edited and replaced workspaces: every reader checks what it reads and fails with one message naming the
file; a zoo is replaced only when asked, and what that leaves stale is named and then refused."""

import json
import os

import polars as pl
import pytest
import torch
from safetensors.torch import save_file

from core.errors import ZooError
from core.store.runs import NOVELTY_MEDIANS, SAMPLES_COLUMNS, SamplesRun, finished_ae_runs
from core.store.workspace import Workspace
from core.zoo.model_zoo import load_zoos
from tests.conftest import copy_workspace


@pytest.fixture
def workspace(tiny_ae_workspace, tmp_path) -> Workspace:
    """A copy of the tiny autoencoder workspace with a samples run "s" of its zoo."""
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    run = SamplesRun(
        folder=SamplesRun.folder_of(workspace, "s"),
        **dict.fromkeys(("ae_run", "ae_kind", "method", "dataset", "source_dataset", "architecture"), "x"),
        activation="relu",
        n=2,
        anchors={"rule": "top:0.3", "count": 2, "ids": [0, 1]},
        curves={"generated": [0.5]},
        novelty=dict.fromkeys(NOVELTY_MEDIANS, 1.0),
        novelty_baselines={},
        selection={"mode": "none"},
        config={"finetune_epochs": 0},
        **workspace.zoo_stamp(),
    )
    table = pl.DataFrame({"sample": [0, 1]} | {c: [0.5, 0.7] for c in SAMPLES_COLUMNS if c != "sample"})
    tensors = {"generated": torch.zeros(2, 3), "finetuned": torch.zeros(2, 3)}
    run.write(tensors, {"architecture": "{}"}, (table, table, table), None)
    return workspace


def _run(workspace: Workspace) -> str:
    return finished_ae_runs(workspace)[0]


def _json_edit(name: str, edit):
    def mutate(workspace: Workspace) -> None:
        path = workspace.root / name.format(run=_run(workspace))
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))

    return mutate


def _table_edit(name: str, edit):
    def mutate(workspace: Workspace) -> None:
        path = workspace.root / name.format(run=_run(workspace))
        edit(pl.read_parquet(path)).write_parquet(path)

    return mutate


def _special(name: str, make):
    def mutate(workspace: Workspace) -> None:
        path = workspace.root / name.format(run=_run(workspace))
        path.unlink()
        make(path)

    return mutate


def _first_shard(make):
    """Replace the zoo's first shard file (its name is drawn fresh at each write) by what `make` makes."""

    def mutate(workspace: Workspace) -> None:
        path = sorted((workspace.root / "zoo" / "shards").glob("*.safetensors"))[0]
        path.unlink()
        make(path)

    return mutate


def _truncate(name: str):
    def mutate(workspace: Workspace) -> None:
        path = workspace.root / name.format(run=_run(workspace))
        path.write_bytes(path.read_bytes()[:100])

    return mutate


def _null_at(column: str, value=None):
    return lambda t: t.with_columns(
        pl.when(pl.col("checkpoint") == 2).then(value).otherwise(pl.col(column)).alias(column)
    )


AE = "ae/{run}/"
EVAL = ["ae", "eval", "--run", "{run}"]
REFRESH = [*EVAL, "--refresh"]
INFO = ["zoo", "info"]
# (mutation, command, what the one error line says)
CASES = {
    "truncated-history": (_truncate(AE + "history.parquet"), EVAL, "history.parquet: not a readable parquet"),
    "config-without-ae": (_json_edit(AE + "config.json", lambda d: d.pop("ae")), EVAL, "config.json: not a run config"),
    "config-split-of-text": (
        _json_edit(AE + "config.json", lambda d: d.update(split={"train": ["a"], "val": [], "test": []})),
        EVAL,
        "config.json: not a run config",
    ),
    "config-a-fifo": (_special(AE + "config.json", os.mkfifo), EVAL, "config.json: not a regular file"),
    "stats-without-std": (
        _special(AE + "stats.safetensors", lambda p: save_file({"layer_mean": torch.zeros(3)}, p)),
        EVAL,
        "stats.safetensors: lacks 'layer_std'",
    ),
    "model-of-other-keys": (
        _special(AE + "model.safetensors", lambda p: save_file({"x": torch.zeros(3)}, p)),
        EVAL,
        "model.safetensors: does not fit",
    ),
    "short-embeddings": (_table_edit(AE + "embeddings.parquet", lambda t: t.head(3)), REFRESH, "rows do not match"),
    "embeddings-without-umap": (
        _table_edit(AE + "embeddings.parquet", lambda t: t.drop("umap_x")),
        REFRESH,
        "embeddings.parquet: missing column 'umap_x'",
    ),
    "string-test-acc": (
        _table_edit("zoo/models.parquet", lambda t: t.with_columns(pl.col("test_acc").cast(pl.String))),
        INFO,
        "models.parquet: column 'test_acc' should hold number",
    ),
    "null-model-id": (_table_edit("zoo/models.parquet", _null_at("model_id")), INFO, "'model_id' has 1 empty"),
    "unknown-activation": (
        _table_edit("zoo/models.parquet", lambda t: t.with_columns(pl.lit("bogus").alias("activation"))),
        INFO,
        "models.parquet: unknown activations ['bogus']",
    ),
    "no-test-accuracy-at-all": (
        _table_edit("zoo/models.parquet", lambda t: t.with_columns(pl.lit(float("nan")).alias("test_acc"))),
        INFO,
        "no usable checkpoint",
    ),
    "dataset-name-a-number": (
        _json_edit("workspace.json", lambda d: d["dataset"].update(name=3)),
        INFO,
        "workspace.json: 'dataset' must hold a name",
    ),
    "architecture-spec-malformed": (
        _json_edit("workspace.json", lambda d: d.update(architectures={"x": {"a": 1}})),
        INFO,
        "workspace.json: malformed architecture spec",
    ),
    "manifest-links-to-dev-zero": (
        _special("workspace.json", lambda p: p.symlink_to("/dev/zero")),
        INFO,
        "workspace.json: not a regular file",
    ),
    "zoo-shard-a-fifo": (_first_shard(os.mkfifo), INFO, ".safetensors: not a regular"),
    "zoo-shard-truncated": (_first_shard(lambda p: p.write_bytes(b"\x08")), INFO, ".safetensors: not a readable shard"),
    "zoo-shard-manifest-a-fifo": (
        _special("zoo/shards/manifest.json", os.mkfifo),
        INFO,
        "manifest.json: not a regular",
    ),
}


@pytest.mark.parametrize("mutate, command, message", CASES.values(), ids=CASES.keys())
def test_a_hand_edited_file_is_one_error_naming_it(workspace, run_cli, mutate, command, message):
    argv = [part.format(run=_run(workspace)) for part in command]
    mutate(workspace)
    result = run_cli(*argv, "--workspace", workspace.root)
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.err


def test_a_checkpoint_without_test_accuracy_is_skipped_and_named(workspace, run_cli):
    _table_edit("zoo/models.parquet", _null_at("test_acc"))(workspace)
    result = run_cli("zoo", "info", "--workspace", workspace.root, "--json")
    assert result.code == 0 and result.json["skipped"] == ["checkpoint 2 (model 0, epoch 3): no test accuracy"]


_ROW = {"epoch": 0, "n": 2, "mean": 0.5, "lo": 0.4, "hi": 0.6, "std": 0.1, "min": 0.4, "max": 0.6}
SAMPLES_CASES = {
    "anchors-text": (lambda d: d.update(anchors="x"), "malformed fields: anchors"),
    "config-text": (lambda d: d.update(config="x"), "malformed fields: config"),
    "n-true": (lambda d: d.update(n=True), "malformed fields: n"),
    "curves-of-text": (lambda d: d.update(curves={"generated": ["a"]}), "curves"),
    "novelty-missing": (lambda d: d.update(novelty={}), "novelty"),
    "intervals-text": (lambda d: d.update(intervals="x"), "intervals"),
    "intervals-short": (lambda d: d.update(intervals={"generated": []}), r"intervals \(generated"),
    "intervals-no-group": (lambda d: d.update(intervals={"other": [_ROW]}), r"intervals \(other"),
    "intervals-bad-epoch": (lambda d: d.update(intervals={"generated": [{**_ROW, "epoch": 1}]}), "intervals"),
    "intervals-reversed": (lambda d: d.update(intervals={"generated": [{**_ROW, "lo": 0.9}]}), "intervals"),
    "intervals-no-n": (lambda d: d.update(intervals={"generated": [{**_ROW, "n": "2"}]}), "intervals"),
    "novelty-intervals-text": (lambda d: d.update(novelty_intervals={"generated": {"max_iou": 1}}), "novelty_int"),
}


@pytest.mark.parametrize("edit, message", SAMPLES_CASES.values(), ids=SAMPLES_CASES.keys())
def test_a_hand_edited_samples_record_names_its_file(workspace, edit, message):
    _json_edit("samples/s/result.json", edit)(workspace)
    with pytest.raises(ZooError, match=f"result.json: .*{message}"):
        SamplesRun.load(workspace, "s")


def test_a_record_with_well_formed_intervals_loads_and_one_from_before_them_has_none(workspace):
    old = SamplesRun.load(workspace, "s")  # the fixture's record is of the old kind
    assert old.interval_rows() == {} and old.novelty_interval() is None
    novelty = {"generated": {"max_iou": {"median": 0.5, "lo": 0.4, "hi": 0.6}}}
    _json_edit("samples/s/result.json", lambda d: d.update(intervals={"generated": [_ROW]}, novelty_intervals=novelty))(
        workspace
    )
    run = SamplesRun.load(workspace, "s")
    assert run.interval_rows() == {"generated": [_ROW]} and run.novelty_interval() == novelty["generated"]["max_iou"]
    assert run.to_json()["intervals"] == {"generated": [_ROW]}


def test_samples_tables_and_weights_are_checked_as_they_are_read(workspace):
    run = SamplesRun.load(workspace, "s")
    _table_edit("samples/s/samples.parquet", lambda t: t.drop("acc_final"))(workspace)
    with pytest.raises(ZooError, match="samples.parquet: missing column 'acc_final'"):
        run.samples_table()
    save_file({"generated": torch.zeros(2, 3)}, run.weights_path)
    with pytest.raises(ZooError, match="weights.safetensors: its metadata names no architecture"):
        run.weights_metadata()
    with pytest.raises(ZooError, match="weights.safetensors: expected a tensor 'finetuned'"):
        run.weights()
    rows = run.n
    kept = {"generated": torch.zeros(rows, 3), "finetuned": torch.zeros(rows, 3), "stray": torch.zeros(1, 1)}
    save_file(kept | {"anchors_finetuned": torch.zeros(rows + 1, 3)}, run.weights_path)
    with pytest.raises(ZooError, match=f"expected a tensor 'anchors_finetuned' of {rows} rows"):
        run.weights()
    save_file(kept | {"anchors_finetuned": torch.ones(rows, 3)}, run.weights_path)
    assert set(run.weights()) == {"generated", "finetuned", "anchors_finetuned"}  # a stray tensor is not a group


# ---------------------------------------------------------------- a replaced zoo


def test_a_zoo_is_replaced_only_when_asked_and_what_became_stale_is_named_then_refused(workspace, run_cli, tmp_path):
    run, root = _run(workspace), workspace.root
    weights = load_zoos(workspace)[0].weights
    generate = ["zoo", "generate", "--workspace", root, "--models", 3, "--epochs", 1, "--save-epochs", "0,1", "--quiet"]
    refused = run_cli(*generate)
    assert refused.code == 2 and "already holds a zoo" in refused.err and "--replace" in refused.err
    assert torch.equal(load_zoos(workspace)[0].weights, weights)

    replaced = run_cli(*generate, "--replace", "--json")
    assert replaced.code == 0 and replaced.json["stale_runs"] == [f"ae/{run}", "samples/s"]
    assert f"warning: ae/{run} was made from the replaced zoo and is now stale" in replaced.err
    assert finished_ae_runs(workspace) == [] and SamplesRun.list(workspace) == []

    for argv in (
        ["ae", "eval", "--run", run],
        ["ae", "eval", "--run", run, "--refresh"],
        ["ae", "embed", "--run", run, "--aggregation", "mean"],
        ["ae", "train", "--run", run],
        ["sample", "--run", run, "--n", 1],
        ["export", "--samples", "s", "--out", tmp_path / "bundle.zip"],
    ):
        result = run_cli(*argv, "--workspace", root)
        lines = result.err.strip().splitlines()
        assert result.code == 2 and len(lines) == 1 and "made from an earlier zoo" in lines[0], (argv, result.err)
    latest = run_cli("ae", "eval", "--workspace", root)
    assert latest.code == 2 and f"ae/{run} were made from a replaced zoo" in latest.err
