"""Anchors the autoencoder reproduces (core/gen/fidelity.py): the check alone on a decoder that breaks chosen
anchors, and a generation that leaves out the anchors the tiny run's decoder does not reproduce."""

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from core.gen import fidelity
from core.gen.anchors import resolve_anchors
from core.gen.config import SampleConfig
from core.gen.fidelity import decoded_shares, describe_fidelity, faithful_anchors
from core.gen.novelty import ZooErrorSets
from core.pipeline import generate
from core.rep.run import load_run
from core.store.runs import SamplesRun
from core.zoo.data import load_dataset
from core.zoo.model_zoo import combined_table, load_zoos
from tests.conftest import copy_workspace


class BreakingDecoder:
    """A decoder that gives each anchor back exactly (its accuracy kept whole), except the `broken` positions,
    which come out as all-zero weights (every image gets the same class: about chance accuracy)."""

    def __init__(self, prepared, rows: np.ndarray, broken: list[int]):
        self.weights = prepared.aligned_rows(rows)
        self.weights[broken] = 0.0

    def decode_chunks(self, prepared, codes, device):
        assert len(codes) == len(self.weights)
        yield self.weights[:2]
        yield self.weights[2:]  # in chunks, as the run decodes


def _check(setting, broken: list[int], threshold: float = 0.97):
    _, prepared, anchors, _, data = setting
    codes = np.arange(len(anchors.ids) * 3, dtype=np.float32).reshape(-1, 3)  # a row per anchor, to follow
    run = BreakingDecoder(prepared, anchors.rows, broken)
    return anchors, codes, faithful_anchors(run, prepared, (anchors, codes), data, threshold, "cpu")


def test_anchors_whose_decodes_lose_their_accuracy_are_left_out_with_their_codes(setting):
    anchors, codes, (kept, kept_codes, found) = _check(setting, broken=[0, 2])
    whole = [i for i in range(len(anchors.ids)) if i not in (0, 2)]
    assert kept.ids == [anchors.ids[i] for i in whole] and np.array_equal(kept.rows, anchors.rows[whole])
    assert np.array_equal(kept_codes, codes[whole])
    assert kept.dropped_count == anchors.dropped_count + 2
    assert kept.dropped[-1].startswith(f"2 of {len(anchors.ids)} anchors left out: the autoencoder does not")
    count = len(anchors.ids)
    assert found.to_json() == {"threshold": 0.97, "anchors": count, "judged": count, "kept": len(whole), "note": ""}


def test_a_decoder_that_keeps_every_anchor_leaves_the_anchors_as_they_are(setting):
    anchors, codes, (kept, kept_codes, found) = _check(setting, broken=[])
    assert kept is anchors and kept_codes is codes and (found.judged, found.kept) == (len(anchors.ids),) * 2
    assert describe_fidelity(found.to_json()) == (
        f"every anchor's decode keeps 97% of its validation accuracy ({len(anchors.ids)} anchors)"
    )


def test_where_no_decode_keeps_the_share_every_anchor_is_kept_and_the_record_says_so(setting):
    anchors, codes, (kept, _, found) = _check(setting, broken=list(range(len(setting[2].ids))))
    assert kept is anchors and found.kept == len(anchors.ids)
    assert found.note.startswith("every anchor kept: none's decode keeps 97% of its validation accuracy")


def test_off_at_zero_and_not_checked_above_the_limit(setting, monkeypatch):
    anchors, codes, (kept, _, found) = _check(setting, broken=[0], threshold=0.0)
    assert kept is anchors and found is None
    monkeypatch.setattr(fidelity, "CHECK_LIMIT", 3)
    anchors, codes, (kept, _, found) = _check(setting, broken=[0])
    assert kept is anchors and found.judged == 0 and found.note.startswith(f"not checked: {len(anchors.ids)} anchors")


def test_the_share_is_the_decodes_validation_accuracy_over_the_anchors_own(setting):
    _, prepared, anchors, _, data = setting
    shares = decoded_shares(
        BreakingDecoder(prepared, anchors.rows, [1]), prepared, anchors, np.zeros((len(anchors.ids), 1)), data, "cpu"
    )
    assert shares[0] == pytest.approx(1.0) and shares[1] < 0.5 and np.allclose(np.delete(shares, 1), 1.0)


def test_refused_outside_its_range():
    for bad in (-0.1, 2.0, float("nan")):
        with pytest.raises(Exception, match="decode fidelity"):
            SampleConfig(anchor_fidelity=bad)


def test_a_generation_samples_only_around_the_anchors_its_decoder_reproduces(tiny_ae_workspace, tmp_path):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    run, zoos = load_run(workspace), load_zoos(workspace)
    anchors = resolve_anchors(zoos, combined_table(zoos), "top:0.5")
    prepared = run.prepare(anchors.zoo)
    with torch.no_grad():
        shares = decoded_shares(
            run, prepared, anchors, run.encode_rows(prepared, anchors.rows), load_dataset("digits"), "cpu"
        )
    threshold = float(np.median(shares))  # about half the tiny run's anchors fall short of it
    expected = [i for i, s in zip(anchors.ids, shares) if s >= threshold]
    assert 0 < len(expected) < len(anchors.ids)
    config = SampleConfig(n=3, finetune_epochs=0, baselines=False, anchors="top:0.5", anchor_fidelity=threshold)
    samples = generate(workspace, config)
    assert samples.anchors["ids"] == expected and samples.anchors["dropped"] == len(anchors.ids) - len(expected)
    assert set(samples.source_anchors()) <= set(expected)  # every model was drawn around a kept anchor
    assert samples.selection["anchor_fidelity"]["kept"] == len(expected)
    left_out = f"{len(anchors.ids) - len(expected)} of {len(anchors.ids)} anchors left out"
    assert any(w.startswith(left_out) for w in SamplesRun.load(workspace, samples.name).extra["anchor_warnings"])


def test_the_cli_says_when_no_anchor_is_reproduced_and_refuses_a_share_out_of_range(
    tiny_ae_workspace, tmp_path, run_cli
):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    base = ("sample", "--workspace", workspace.root, "--n", 2, "--finetune-epochs", 0, "--no-baselines", "--quiet")
    text = run_cli(*base, "--anchors", "top:0.5", "--anchor-fidelity", 1.5)  # no decode keeps 150% of its anchor
    assert text.code == 0 and "anchors: every anchor kept: none's decode keeps 150% of its validation" in text.out
    refused = run_cli(*base, "--anchor-fidelity", -1)
    assert refused.code == 2 and "decode fidelity must lie in 0..1.5" in refused.err


def test_anchors_at_chance_are_kept_unjudged(setting):
    _, prepared, anchors, table, data = setting
    at_chance = table.filter((pl.col("epoch") == 0) & (pl.col("val_acc") < 0.15))["checkpoint"][:2].to_list()
    mixed = resolve_anchors([prepared.zoo], table, "ids:" + ",".join(map(str, anchors.ids[:3] + at_chance)))
    assert len(at_chance) == 2 and len(mixed.ids) == 5
    decoder = BreakingDecoder(prepared, mixed.rows, [0, 3, 4])  # one trained anchor broken, and both at chance
    codes = np.zeros((5, 1), dtype=np.float32)
    assert np.isnan(decoded_shares(decoder, prepared, mixed, codes, data, "cpu")[3:]).all()
    kept, _, found = faithful_anchors(decoder, prepared, (mixed, codes), data, 0.97, "cpu")
    assert kept.ids == mixed.ids[1:] and (found.anchors, found.judged, found.kept) == (5, 3, 4)
    everything_broken = BreakingDecoder(prepared, mixed.rows, [0, 1, 2, 3, 4])
    kept, _, found = faithful_anchors(everything_broken, prepared, (mixed, codes), data, 0.97, "cpu")
    assert kept is mixed and found.note.startswith("every anchor kept: none's decode keeps 97%")  # not the 2 at chance


def test_a_kept_check_spares_the_next_generation_around_the_same_anchors(tiny_ae_workspace, tmp_path, monkeypatch):
    workspace = copy_workspace(tiny_ae_workspace, tmp_path / "ws")
    measured, original = [], fidelity.decoded_shares

    def counting(run, prepared, anchors, *rest):
        measured.append(tuple(anchors.ids))
        return original(run, prepared, anchors, *rest)

    monkeypatch.setattr(fidelity, "decoded_shares", counting)
    config = SampleConfig(n=2, finetune_epochs=0, baselines=False, anchors="top:0.5", anchor_fidelity=0.99)
    kept = ZooErrorSets()
    first = generate(workspace, config, zoo_errors=kept)
    again = generate(workspace, replace(config, seed=1, spread=0.5), zoo_errors=kept)
    assert len(measured) == 1  # the second generation around the same anchors measured no decode
    assert again.anchors == first.anchors and again.selection["anchor_fidelity"] == first.selection["anchor_fidelity"]
    generate(workspace, replace(config, anchors="top:0.3"), zoo_errors=kept)
    assert len(measured) == 2 and measured[1] != measured[0]  # other anchors: measured
    generate(workspace, replace(config, seed=1, spread=0.5), zoo_errors=ZooErrorSets())
    assert measured[2] == measured[0]  # nothing kept: measured again
