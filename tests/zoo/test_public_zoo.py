"""core.public_zoo: importing zoos in the public model-zoo layout (one ray-tune trial folder per model)."""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from core.errors import DataError, UserError
from core.limits import MAX_CHECKPOINT_BYTES
from core.store.workspace import Workspace
from core.zoo.arch import ArchSpec, build_module, cnn_l, cnn_s, flatten
from core.zoo.model_zoo import Zoo, load_zoos
from core.zoo.public import import_public_zoo

EPOCHS = (0, 1, 2)
# (folder, seed, activation, lr, zero-padded checkpoint folders)
GOOD_MODELS = (
    ("model_a", 7, "tanh", 3e-4, True),
    ("model_b", 8, "relu", 1e-3, False),
    ("model_c", 9, "tanh", 3e-3, True),
)


# ---------------------------------------------------------------- fixture writers


def state_dict(spec: ArchSpec, seed: int, epoch: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v + 0.01 * epoch for k, v in build_module(spec).state_dict().items()}


def metrics(seed: int, epoch: int) -> dict:
    test_acc = 0.1 + 0.2 * epoch + 0.01 * seed
    return {
        "training_iteration": epoch,
        "train_loss": 2.0 - 0.5 * epoch,
        "train_acc": test_acc + 0.05,
        "test_loss": 2.1 - 0.5 * epoch,
        "test_acc": test_acc,
        "val_loss": 2.2 - 0.5 * epoch,
        "val_acc": test_acc - 0.02,
    }


def write_model(
    root: Path,
    name: str,
    spec: ArchSpec | None = None,
    seed: int = 7,
    activation: str = "tanh",
    lr: float = 3e-4,
    padded: bool = True,
    epochs: tuple[int, ...] = EPOCHS,
) -> dict[int, dict[str, torch.Tensor]]:
    """One trial folder: params.json, result.json (a line per epoch) and checkpoint_<e>/checkpoints."""
    spec = spec or cnn_s(1)
    folder = root / name
    folder.mkdir(parents=True)
    params = {
        "model::type": "CNN",
        "model::activation": activation,
        "model::init_type": "kaiming_uniform",
        "optim::lr": lr,
        "optim::wd": 0.0,
        "seed": seed,
        "training::batchsize": 10,
    }
    (folder / "params.json").write_text(json.dumps(params))
    (folder / "result.json").write_text("".join(json.dumps(metrics(seed, e)) + "\n" for e in epochs))
    states = {}
    for epoch in epochs:
        states[epoch] = state_dict(spec, seed, epoch)
        path = checkpoint_file(folder, epoch, padded)
        path.parent.mkdir()
        torch.save(states[epoch], path)
    return states


def checkpoint_file(folder: Path, epoch: int, padded: bool = True) -> Path:
    return folder / (f"checkpoint_{epoch:06d}" if padded else f"checkpoint_{epoch}") / "checkpoints"


def write_good_zoo(root: Path) -> dict[str, dict[int, dict[str, torch.Tensor]]]:
    return {
        name: write_model(root, name, seed=seed, activation=act, lr=lr, padded=padded)
        for name, seed, act, lr, padded in GOOD_MODELS
    }


def row_of(zoo: Zoo, model_id: int, epoch: int) -> tuple[int, dict]:
    """Position in the weights tensor and the table row of one checkpoint."""
    rows = zoo.table.with_row_index("position").filter(
        (zoo.table["model_id"] == model_id) & (zoo.table["epoch"] == epoch)
    )
    assert rows.height == 1
    row = rows.row(0, named=True)
    return row["position"], row


# ---------------------------------------------------------------- a good zoo


def test_import_recognises_cnn_s_and_copies_weights_and_metrics(tmp_path):
    states = write_good_zoo(tmp_path / "src")
    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert report.problems == [] and report.models == 3

    zoo = load_zoos(Workspace(tmp_path / "ws"))[0]
    assert zoo.spec.name == "cnn-s" and zoo.spec.n_params == 2464 and zoo.spec.in_channels == 1
    assert zoo.weights.shape == (len(GOOD_MODELS) * len(EPOCHS), 2464)
    assert zoo.table.height == 9 and zoo.skipped == []

    for model_id, (name, seed, activation, lr, _) in enumerate(GOOD_MODELS):  # folders are imported sorted
        for epoch in EPOCHS:
            position, row = row_of(zoo, model_id, epoch)
            expected = flatten(cnn_s(1), states[name][epoch])
            assert torch.equal(zoo.weights[position], expected), (name, epoch)
            record = metrics(seed, epoch)
            for key in ("test_acc", "train_acc", "test_loss", "train_loss", "val_acc", "val_loss"):
                assert row[key] == pytest.approx(record[key]), (name, epoch, key)
            assert row["ggap"] == pytest.approx(record["train_acc"] - record["test_acc"])
            assert (row["seed"], row["activation"], row["init"], row["batch_size"]) == (
                seed,
                activation,
                "kaiming_uniform",
                10,
            )
            assert row["lr"] == pytest.approx(lr)
    # the weights differ between models and epochs: no row was copied into another's place
    assert len(torch.unique(zoo.weights, dim=0)) == 9


def test_import_recognises_cnn_l_with_three_channels(tmp_path):
    states = write_model(tmp_path / "src", "large", spec=cnn_l(3), epochs=(0, 1))
    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    zoo = load_zoos(Workspace(tmp_path / "ws"))[0]
    assert report.models == 1
    assert (zoo.spec.name, zoo.spec.in_channels, zoo.spec.n_params) == ("cnn-l", 3, 10853)
    assert torch.equal(zoo.weights[1], flatten(cnn_l(3), states[1]))


def test_untrained_epoch_sentinel_becomes_nan(tmp_path):
    """The public zoos log epoch 0 (a test pass before training) with train_loss = train_acc = -999."""
    write_model(tmp_path / "src", "model")
    path = tmp_path / "src" / "model" / "result.json"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[0].update(train_loss=-999, train_acc=-999)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    zoo = load_zoos(Workspace(tmp_path / "ws"))[0]
    _, untrained = row_of(zoo, 0, 0)
    assert math.isnan(untrained["train_acc"]) and math.isnan(untrained["train_loss"]) and math.isnan(untrained["ggap"])
    assert untrained["test_acc"] == pytest.approx(metrics(7, 0)["test_acc"])
    _, trained = row_of(zoo, 0, 1)
    assert trained["train_acc"] == pytest.approx(metrics(7, 1)["train_acc"])


# ---------------------------------------------------------------- broken models are reported and skipped


class Payload:
    """Unpickling this would call `record_unpickle`; a weights-only loader must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return record_unpickle, (str(self.marker),)


def record_unpickle(marker: str) -> None:
    Path(marker).write_text("unpickled")


def truncate_results(folder: Path) -> None:
    text = (folder / "result.json").read_text()
    (folder / "result.json").write_text(text[: len(text) - 40])  # cuts the last epoch's line mid-JSON


def overwrite_checkpoint(epoch: int, data: bytes):
    def breaker(folder: Path) -> None:
        checkpoint_file(folder, epoch).write_bytes(data)

    return breaker


def save_checkpoint(epoch: int, make_state):
    def breaker(folder: Path) -> None:
        torch.save(make_state(), checkpoint_file(folder, epoch))

    return breaker


def nan_state() -> dict[str, torch.Tensor]:
    state = state_dict(cnn_s(1), 1, 1)
    state["module_list.3.weight"][0, 0, 0, 0] = float("nan")
    return state


def other_shapes() -> dict[str, torch.Tensor]:
    state = state_dict(cnn_s(1), 1, 1)
    state["module_list.0.weight"] = torch.zeros(5, 1, 5, 5)
    state["module_list.0.bias"] = torch.zeros(5)
    return state


def edit_params(**changes):
    def breaker(folder: Path) -> None:
        params = json.loads((folder / "params.json").read_text())
        (folder / "params.json").write_text(json.dumps({**params, **changes}))

    return breaker


def raw_params(text: str):
    """params.json as raw text (JSON writers cannot write 1e400, which Python reads as inf)."""

    def breaker(folder: Path) -> None:
        (folder / "params.json").write_text(text)

    return breaker


def edit_result(epoch: int, **changes):
    def breaker(folder: Path) -> None:
        records = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        records[epoch].update(changes)
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in records))

    return breaker


def replace_by_link(name: str, target: str):
    def breaker(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).symlink_to(target)

    return breaker


def replace_by_fifo(name: str):
    def breaker(folder: Path) -> None:
        (folder / name).unlink()
        os.mkfifo(folder / name)

    return breaker


def checkpoint_outside(folder: Path) -> None:
    """checkpoint_0 links to a model folder outside the zoo (a sound one: only where it lies is wrong)."""
    outside = folder.parent.parent / "elsewhere"
    write_model(outside, "model", seed=4)
    path = checkpoint_file(folder, 0)
    path.unlink()
    path.symlink_to(checkpoint_file(outside / "model", 0))


def checkpoint_bomb(folder: Path) -> None:
    """A checkpoint of a few KiB that unpacks to more than the cap (a deflated member of zeros)."""
    with zipfile.ZipFile(checkpoint_file(folder, 1), "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/padding", bytes(MAX_CHECKPOINT_BYTES + 1))


BREAKERS = {
    "seed-1e400": raw_params('{"model::activation": "tanh", "seed": 1e400}'),
    "seed-1e30": edit_params(seed=1e30),
    "seed-negative": edit_params(seed=-3),
    "seed-text": edit_params(seed="seven"),
    "lr-true": edit_params(**{"optim::lr": True}),
    "params-a-list": raw_params("[1, 2]"),
    "test-acc-true": edit_result(1, test_acc=True),
    "test-acc-text": edit_result(1, test_acc="0.5"),
    "epoch-not-an-integer": edit_result(2, training_iteration=1.5),
    "result-line-a-list": lambda folder: (folder / "result.json").write_text("[1]\n"),
    "result-links-to-dev-zero": replace_by_link("result.json", "/dev/zero"),
    "result-is-a-fifo": replace_by_fifo("result.json"),
    "params-links-outside": replace_by_link("params.json", "/etc/hostname"),
    "checkpoint-links-outside": checkpoint_outside,
    "checkpoint-unpacks-too-large": checkpoint_bomb,
    "truncated-result-json": truncate_results,
    "garbage-bytes": overwrite_checkpoint(1, bytes(range(256)) * 4),
    "text-bytes": overwrite_checkpoint(1, b"this is not a torch checkpoint\n"),
    "empty-file": overwrite_checkpoint(0, b""),
    "nan-weights": save_checkpoint(1, nan_state),
    "unknown-architecture": save_checkpoint(0, other_shapes),
    "shape-changes-after-epoch-0": save_checkpoint(2, other_shapes),
    "other-architecture-than-the-zoo": save_checkpoint(0, lambda: state_dict(cnn_l(3), 1, 0)),
    "not-a-state-dict": save_checkpoint(0, lambda: [torch.zeros(3)]),
    "missing-checkpoint-file": lambda folder: checkpoint_file(folder, 1).unlink(),
}


@pytest.mark.parametrize("breaker", BREAKERS.values(), ids=BREAKERS.keys())
def test_broken_model_is_reported_and_skipped(tmp_path, breaker):
    states = write_model(tmp_path / "src", "a_good", seed=3, padded=False)
    write_model(tmp_path / "src", "z_broken", seed=4)
    breaker(tmp_path / "src" / "z_broken")

    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert len(report.problems) == 1 and report.problems[0].startswith("z_broken: skipped")
    assert report.models == 1
    zoo = load_zoos(Workspace(tmp_path / "ws"))[0]
    assert zoo.table["model_id"].unique().to_list() == [0] and zoo.table.height == len(EPOCHS)
    assert torch.equal(zoo.weights, torch.stack([flatten(cnn_s(1), states[e]) for e in EPOCHS]))
    assert zoo.manifest["zoo"]["import_problems"] == report.problems


def test_a_model_folder_linked_from_outside_is_named_not_followed(tmp_path):
    write_model(tmp_path / "src", "a_good", seed=3)
    write_model(tmp_path / "elsewhere", "outside", seed=4)
    (tmp_path / "src" / "z_link").symlink_to(tmp_path / "elsewhere" / "outside")
    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert report.models == 1 and report.problems == ["z_link: skipped: links to a folder outside the zoo folder"]


def test_every_broken_model_is_named_while_the_import_goes_on(tmp_path):
    write_good_zoo(tmp_path / "src")
    for name, breaker in BREAKERS.items():
        write_model(tmp_path / "src", f"broken-{name}", seed=5)
        breaker(tmp_path / "src" / f"broken-{name}")
    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert report.models == len(GOOD_MODELS)
    assert sorted(p.split(":")[0] for p in report.problems) == sorted(f"broken-{name}" for name in BREAKERS)
    assert load_zoos(Workspace(tmp_path / "ws"))[0].table.height == len(GOOD_MODELS) * len(EPOCHS)


@pytest.mark.parametrize("as_torch_file", [True, False], ids=["torch.save", "plain-pickle"])
def test_pickled_objects_are_refused_never_unpickled(tmp_path, as_torch_file):
    write_model(tmp_path / "src", "a_good")
    write_model(tmp_path / "src", "z_payload")
    marker = tmp_path / "unpickled.txt"
    payload = {"module_list.0.weight": Payload(marker)}
    path = checkpoint_file(tmp_path / "src" / "z_payload", 0)
    if as_torch_file:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))

    report = import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert not marker.exists()
    assert report.models == 1 and len(report.problems) == 1 and "z_payload" in report.problems[0]
    # In our words; never torch's advice to load it with weights_only=False, nor its terminal escapes.
    assert "refused: it holds Python code" in report.problems[0]
    assert "weights_only" not in report.problems[0] and "\x1b" not in report.problems[0]


# ---------------------------------------------------------------- nothing to import


def test_folder_without_model_folders(tmp_path):
    (tmp_path / "src" / "empty").mkdir(parents=True)
    with pytest.raises(UserError, match="no model folders") as info:
        import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert str(tmp_path / "src") in str(info.value)


def test_folder_where_no_model_imports(tmp_path):
    write_model(tmp_path / "src", "only")
    truncate_results(tmp_path / "src" / "only")
    with pytest.raises(UserError, match="no model could be imported") as info:
        import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert str(tmp_path / "src") in str(info.value) and "only" in str(info.value)
    assert not Workspace(tmp_path / "ws").exists()


def test_missing_source_folder(tmp_path):
    with pytest.raises(UserError) as info:
        import_public_zoo(tmp_path / "missing", Workspace(tmp_path / "ws"))
    assert str(tmp_path / "missing") in str(info.value)


# ---------------------------------------------------------------- the CLI


def test_cli_import_prints_a_json_summary(tmp_path, run_cli):
    write_good_zoo(tmp_path / "src")
    imported = run_cli("zoo", "import", "--from", tmp_path / "src", "--workspace", tmp_path / "ws", "--json", "--quiet")
    assert imported.code == 0
    result = imported.json
    assert (result["models"], result["checkpoints"], result["n_params"]) == (3, 9, 2464)
    assert (result["architecture"], result["dataset"]) == ("cnn-s", "unknown")
    accs = [metrics(seed, e)["test_acc"] for _, seed, *_ in GOOD_MODELS for e in EPOCHS]
    assert result["test_acc"]["min"] == pytest.approx(min(accs))
    assert result["test_acc"]["mean"] == pytest.approx(sum(accs) / len(accs))
    assert result["test_acc"]["max"] == pytest.approx(max(accs))


def test_cli_import_from_a_missing_folder_fails_with_one_line(tmp_path, run_cli):
    result = run_cli(
        "zoo", "import", "--from", tmp_path / "missing", "--workspace", tmp_path / "ws", "--json", "--quiet"
    )
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "missing" in lines[0]
    assert result.out == ""


# ---------------------------------------------------------------- the workspace and the dataset


def test_import_refuses_a_workspace_with_a_zoo_unless_asked_to_replace_it(tmp_path):
    write_good_zoo(tmp_path / "src")
    import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    first = load_zoos(Workspace(tmp_path / "ws"))[0].manifest["zoo"]["id"]
    with pytest.raises(UserError, match="already holds a zoo.*--replace"):
        import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"))
    assert load_zoos(Workspace(tmp_path / "ws"))[0].manifest["zoo"]["id"] == first
    import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"), replace=True)
    assert load_zoos(Workspace(tmp_path / "ws"))[0].manifest["zoo"]["id"] != first


@pytest.mark.parametrize(
    "dataset, message", [("nonsense", "no such dataset"), ("digits", "do not fit the zoo's cnn-s")]
)
def test_the_dataset_named_for_an_import_must_exist_and_fit(tmp_path, dataset, message):
    write_good_zoo(tmp_path / "src")
    with pytest.raises(DataError, match=message):
        import_public_zoo(tmp_path / "src", Workspace(tmp_path / "ws"), dataset)
    assert not Workspace(tmp_path / "ws").exists()
