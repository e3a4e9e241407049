"""The papers' own published figures on MNIST, for bench/paper.py to print beside its own (issue 28 asks for them
"where they exist").

Where they come from: the results tables of the two papers as the authors show them on their lab's pages
(hsg-aiml.github.io, the posts of 2021-11-09 and 2022-11-11, whose images are the papers' tables), read off by
hand and written here as fractions. Only the MNIST rows are kept: bench/paper.py measures MNIST.

What differs from our bench, so that a reader does not take the columns for one experiment:
- HR21's probes are on its MNIST-Hyp zoo (Unterthiner et al.'s MNIST zoo, so the official repository's README
  says: far larger than ours, of another small CNN), whose models differ in learning rate, weight decay, dropout,
  activation, initialisation, optimiser and training-data fraction; our `--recipe varied` varies three of these,
  `--recipe seed` none. Their embedding is the combined-loss one (E_cD); their figures are single numbers.
- HR22's generation rows are accuracy (mean ± std over models, not a confidence interval) on MNIST, with the
  generated models sampled from a KDE of the best 30% of the zoo's embeddings (S_KDE30), a KDE of the same models'
  weights (B_KDE30), and training from random initialisation (B_T), after 0, 1, 25 and 50 epochs. Their zoo's
  models trained far longer than ours (their B_T reaches 0.911 at 50 epochs; ours train for the scale's epochs on
  its share of the training set), so our absolute accuracies are lower: set each side against its own anchors
  and B_T rather than against the other's numbers.
"""

from __future__ import annotations

from core.stats import format_interval

HR21 = "Schürholt et al. 2021 (NeurIPS), MNIST-Hyp"
HR22 = "Schürholt et al. 2022 (NeurIPS), MNIST"

# HR21: probe R^2 of each property from the embedding (E_cD), the flat weights W and the weight statistics s(W).
PROBES = {
    "test_acc": {"embedding": 0.949, "weights": 0.747, "stats": 0.815},
    "epoch": {"embedding": 0.500, "weights": 0.258, "stats": 0.332},
    "ggap": {"embedding": 0.274, "weights": 0.234, "stats": 0.244},
}

# HR22: test accuracy (mean, std over models) after the given fine-tuning epochs.
GENERATION = {
    "S_KDE30 (sampled from the embeddings)": {0: (0.686, 0.067), 1: (0.837, 0.013), 25: (0.930, 0.007)},
    "B_KDE30 (a KDE of the weights)": {0: (0.632, 0.072), 1: (0.832, 0.012), 25: (0.932, 0.006)},
    "B_T (random initialisation)": {1: (0.206, 0.016), 25: (0.833, 0.026), 50: (0.911, 0.026)},
}
# Which of our default generation's curves answers to each of their rows (bench/paper.py keeps epochs 0 and 1).
OURS = {
    "S_KDE30 (sampled from the embeddings)": "generated",
    "B_KDE30 (a KDE of the weights)": None,
    "B_T (random initialisation)": "random_init",
}


def as_json() -> dict:
    """The published figures, for the bench's JSON."""
    generation = {row: {str(e): list(v) for e, v in by.items()} for row, by in GENERATION.items()}
    return {"probes": {"source": HR21, "r2": PROBES}, "generation": {"source": HR22, "accuracy": generation}}


def report(summary: dict, recipe: str) -> None:
    """Our figures beside theirs: probes by property, generation by fine-tuning epoch."""
    print("\nbeside the papers' published figures (bench/published.py says how their experiments differ)")
    print(f"  probe R^2: ours (--recipe {recipe}) | {HR21}")
    for prop, theirs in PROBES.items():
        ours = summary[f"probe_{prop}"]
        cells = "  ".join(f"{f} {ours[f].estimate:.3f} | {theirs[f]:.3f}" for f in ("embedding", "weights", "stats"))
        print(f"    {prop:<9}{cells}")
    curves = summary.get("generation_curves", {})
    print(f"  accuracy after 0 / 1 fine-tuning epochs: ours (mean [95% interval]) | {HR22} (mean ± std)")
    for row, theirs in GENERATION.items():
        group = OURS[row]
        mine = " / ".join(format_interval(f) for f in curves[group]) if group in curves else "not measured"
        published = " / ".join(f"{theirs[e][0]:.3f} ± {theirs[e][1]:.3f}" if e in theirs else "-" for e in (0, 1))
        print(f"    {row}\n      ours ({group or 'no such group'}) {mine}\n      theirs {published}")
    if "anchors" in curves:
        print(f"    the source anchors (ours): {' / '.join(format_interval(f) for f in curves['anchors'])}")
