"""The papers' published figures that bench/paper.py prints beside its own (bench/published.py): each of ours set
against theirs, and a curve the run did not keep said to be missing rather than printed as a number."""

from bench import published
from core.stats import t_interval


def _summary(curves: dict) -> dict:
    probes = {"embedding": t_interval([0.91, 0.93]), "weights": t_interval([0.80, 0.82]), "stats": t_interval([0.9])}
    return {f"probe_{p}": probes for p in ("test_acc", "epoch", "ggap")} | {"generation_curves": curves}


def test_our_figures_stand_beside_theirs(capsys):
    curves = {"generated": [t_interval([0.80, 0.82]), t_interval([0.85, 0.85])], "random_init": [t_interval([0.1])] * 2}
    published.report(_summary(curves), "seed")
    text = capsys.readouterr().out
    assert "test_acc embedding 0.920 | 0.949  weights 0.810 | 0.747  stats 0.900 | 0.815" in text
    assert "theirs 0.686 ± 0.067 / 0.837 ± 0.013" in text  # S_KDE30 as generated and after one epoch
    assert "ours (generated) 0.810 ± " in text and "theirs - / 0.206 ± 0.016" in text  # their B_T: no epoch 0
    assert text.count("ours (no such group) not measured") == 1  # B_KDE30: we have no such group


def test_the_json_keeps_each_figure_with_its_source():
    figures = published.as_json()
    assert figures["probes"]["r2"]["test_acc"] == {"embedding": 0.949, "weights": 0.747, "stats": 0.815}
    assert figures["generation"]["accuracy"]["B_T (random initialisation)"]["50"] == [0.911, 0.026]
    assert "2021" in figures["probes"]["source"] and "2022" in figures["generation"]["source"]
