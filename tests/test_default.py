"""The default workspace: the shipped pack is a valid workspace; building it stages, stops and resumes."""

import pytest

import core.default as default
from core.errors import Interrupted, ZooError
from core.rep.autoencoder import AEConfig
from core.rep.loop import TrainConfig
from core.rep.run import load_run, run_name
from core.store.workspace import Workspace
from core.zoo.generate import ZooConfig
from core.zoo.model_zoo import load_zoos


def test_the_shipped_pack_is_a_ready_workspace(tmp_path):
    from core.pipeline import unpack_workspace

    workspace = unpack_workspace(default.ASSET, tmp_path / "digits")
    zoo = load_zoos(workspace)[0]
    assert zoo.dataset == "digits" and zoo.table["model_id"].n_unique() == default.default_configs()[0].models
    run = load_run(workspace)
    assert (run.folder / "embeddings.parquet").exists() and (run.folder / "eval.json").exists()
    assert run.name == run_name(*default.default_configs()[1:])  # made with today's default settings


def tiny_configs():
    return (
        ZooConfig(models=4, epochs=2, save_epochs=(0, 2), init_seeds=2),
        AEConfig(d_model=16, heads=2, encoder_layers=1, decoder_layers=1, feedforward=32, latent_dim=4),
        TrainConfig(epochs=3, batch_size=4, warmup_epochs=1),
    )


@pytest.fixture
def tiny_defaults(monkeypatch):
    monkeypatch.setattr(default, "default_configs", tiny_configs)


def test_build_stops_resumes_and_appears_only_when_complete(tmp_path, tiny_defaults):
    target = Workspace(tmp_path / "digits")
    phases = []
    calls = {"n": 0}

    def stop_in_training_phase():
        calls["n"] += 1
        return phases and phases[-1] == "training"

    with pytest.raises(Interrupted):
        default.build_default(
            target, on_progress=lambda d, t, i: phases.append(i["phase"]), should_stop=stop_in_training_phase
        )
    assert not target.root.exists()  # half-built work stays in the staging folder
    default.build_default(target, on_progress=lambda d, t, i: phases.append(i["phase"]))
    assert target.exists() and load_run(target).status == "done"
    assert not (tmp_path / ".digits.staging").exists()
    assert phases.index("zoo") < phases.index("training") < phases.index("map") < phases.index("evaluation")
    assert phases.count("zoo") == 3  # the zoo was not trained again when the build resumed


def test_a_build_does_not_replace_a_folder_that_appeared_meanwhile(tmp_path, monkeypatch):
    """The finished staging workspace moves in by a rename that refuses any target, even an empty folder (which
    a plain rename of a folder would replace); the build stays where it was, and says so."""
    from core import pipeline  # the steps are replaced here: this is about the final swap only

    def fake_zoo(staging, *args):
        staging.root.mkdir(parents=True)
        (staging.root / "workspace.json").write_text("{}")

    monkeypatch.setattr(pipeline, "generate_zoo", fake_zoo)
    monkeypatch.setattr(pipeline, "train_and_map", lambda *args: None)
    target = Workspace(tmp_path / "digits")
    target.root.mkdir()
    with pytest.raises(ZooError, match="digits: appeared while the workspace was built; the build stays in"):
        pipeline.build_workspace(target, tiny_configs())
    assert list(target.root.iterdir()) == [] and (tmp_path / ".digits.staging" / "workspace.json").exists()
    target.root.rmdir()
    pipeline.build_workspace(target, tiny_configs())
    assert (target.root / "workspace.json").exists() and not (tmp_path / ".digits.staging").exists()
