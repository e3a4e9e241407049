"""What an ensemble of generated models is compared with, like for like, N members each (core/gen/ensemble.py
evaluates them):

- `generated`: the generated models as decoded (a `diverse` selection may keep one twice: it counts twice);
- `finetuned`: the same after fine-tuning (when the run fine-tuned on the zoo's own task);
- `anchors`: each generated model's source anchor, the checkpoint it was drawn around (so an anchor behind
  several generated models counts as often); a run from before provenance was recorded, or a point of a latent
  path, has none: then N anchors drawn at random, and the settings say so;
- `anchors_finetuned`: the source anchors the run fine-tuned beside its generated models, in the same population
  (like for like with `finetuned`: training changes an ensemble's members whatever they start from). Kept by a run
  that fine-tuned on the zoo's own task and evaluated its ensembles; a run evaluated later, without them, has
  none, and the settings say so;
- `noise`: an anchor plus Gaussian noise of 10% of each layer's std (core/gen/baselines.py `WeightNoise`), drawn
  as a sampler in weight space and kept by the generated models' own selection on the same validation data (best
  n of n x candidates for `subsample`, greedy ensemble selection for `diverse`, bootstrap rounds for `bootstrap`,
  none for `none`); `guided` scores codes with a probe of the embedding, which noise models have none of, so
  their selection is then `none` (core/gen/baselines.py `baseline_selection`, as for a generation's baselines);
- `average`: the mean of three random aligned anchors (core/gen/baselines.py), through the same selection as
  `noise`;
- `deep`: a deep ensemble, the final epoch of N zoo models trained independently, from distinct init seeds as far
  as the zoo has them (Lakshminarayanan et al. 2017's baseline for ensembles).

Why ensembles are not computed by every `sample` (SampleConfig.ensemble, off by default): every group's members
(up to 7 x n models) need a forward pass over the whole test split, and the noise group's selection scores
n x candidates more models on validation data. On the default digits zoo that is cheap (bench/ensembles.py, 8
models, subsample 4: 0.2 s beside a generation of 8.9 s), but it grows with the test set: 32 CNN-s models over
MNIST's 10,000 test images took 17 s of forward passes on the shared 2-core CPU (load 5; the tables from the
stored probabilities: 0.3 s), so seven groups of 16 would add about 60 s to a generation the Generate page aims to
finish in 10. Ask for them with `sample --ensemble`, or afterwards with `python -m core ensemble`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from core.gen.anchor_weights import AnchorWeights
from core.gen.anchors import Anchors
from core.gen.baselines import WeightAverage, WeightNoise, baseline_selection, selected_models
from core.gen.ensemble import evaluate_ensembles, validation_scorers
from core.gen.selection import Selection
from core.rep.prepare import PreparedZoo
from core.zoo.arch import Spec
from core.zoo.data import Dataset

GROUPS = ("generated", "finetuned", "anchors", "anchors_finetuned", "noise", "average", "deep")


def deep_rows(table: pl.DataFrame, activation: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of one zoo's `table`: the final-epoch checkpoints of up to n models of `activation`, taking one model
    per init seed in turn (models in a random order), so that the members start from distinct inits wherever
    the zoo has as many; without an `init_seed` column the model's own seed stands in."""
    init = "init_seed" if "init_seed" in table.columns else "seed"
    rows = table.with_row_index("row").filter(pl.col("activation") == activation)
    final = rows.filter(pl.col("epoch") == pl.col("epoch").max().over("model_id"))
    final = final[rng.permutation(final.height)]
    turn = final.with_columns(turn=pl.int_range(pl.len()).over(init))  # 0 for each init's first model, 1 ...
    order = turn.with_row_index("drawn").sort("turn", "drawn")
    return order["row"].to_numpy()[:n].astype(np.int64)


def ensemble_groups(
    anchors: Anchors,
    prepared: PreparedZoo,
    generated: torch.Tensor,
    finetuned: dict[str, torch.Tensor],
    sources: np.ndarray,
    selection: Selection,
    source: Dataset,
    seed: int,
) -> tuple[dict[str, torch.Tensor], dict]:
    """({group: members [n, params]}, notes on how they were made) for n generated models drawn around
    `anchors`, each from the anchor whose checkpoint id `sources` gives (-1: unknown). `finetuned`: the groups
    after the run's fine-tuning on the zoo's own task, by name (`finetuned`, `anchors_finetuned`; empty where the
    run did not fine-tune there)."""
    started, n, rng = time.perf_counter(), len(generated), np.random.default_rng([seed, 27])
    weights = AnchorWeights(prepared, anchors.rows)  # read where a group needs them, a chunk at a time
    row_of = {c: i for i, c in enumerate(anchors.ids)}
    known = all(int(s) in row_of for s in sources)
    picked = [row_of[int(s)] for s in sources] if known else rng.integers(0, len(weights), n).tolist()
    noise_selection = baseline_selection(selection)
    scorers = validation_scorers(anchors.spec, *source.scored_val)
    samplers = (("noise", WeightNoise(prepared.entry_std())), ("average", WeightAverage()))
    simple = {name: selected_models(sampler, weights, n, rng, scorers, selection)[0] for name, sampler in samplers}
    deep = deep_rows(anchors.zoo.table, anchors.activation, n, rng)
    groups = {"generated": generated, "anchors": weights.take(picked), **finetuned}
    groups |= {**simple, "deep": anchors.zoo.rows(deep)}
    init = "init_seed" if "init_seed" in anchors.zoo.table.columns else "seed"
    notes = {
        "anchors": "source anchors" if known else "drawn at random (no source anchors recorded)",
        "noise_selection": noise_selection.mode,
        "deep_inits": len(np.unique(anchors.zoo.table[init].to_numpy()[deep])),
        "seconds_groups": round(time.perf_counter() - started, 3),  # the noise group's selection, mostly
    }
    if "finetuned" in finetuned and "anchors_finetuned" not in finetuned:
        notes["anchors_finetuned"] = (
            "not kept: a run keeps them where it evaluates its ensembles as it fine-tunes, each generated model "
            "drawn around an anchor"
        )
    return {name: groups[name] for name in GROUPS if name in groups}, notes


def ensemble_section(
    spec: Spec, groups: dict[str, torch.Tensor], notes: dict, source: Dataset, seed: int, device: str = "cpu"
) -> dict:
    """{"ensembles": {group: {N: {figure: {mean, lo, hi}}}}, "ensemble_settings": how}: the groups evaluated
    on the test split of the zoo's own dataset."""
    tables, cost = evaluate_ensembles(spec, groups, source.x_test, source.y_test, seed, device)
    notes = dict(notes)
    seconds = {"groups": notes.pop("seconds_groups", 0.0), **cost["seconds"]}
    seconds["total"] = round(seconds["groups"] + seconds["total"], 3)  # groups, then their forward passes and tables
    split = f"{Path(source.name).name} test ({len(source.y_test)} images)"  # no folder of this machine in a card
    settings = {"split": split, **notes, **cost, "seconds": seconds}
    settings["interval"] = "lo, hi: 2.5th and 97.5th percentiles over random subsets of the group (mean: their mean)"
    return {"ensembles": tables, "ensemble_settings": settings}
