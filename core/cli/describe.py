"""What each command prints without --json: a few lines a person reads."""

from __future__ import annotations

from core.cli.terminal import printable
from core.gen.calibrate import describe_calibration
from core.gen.fidelity import describe_fidelity
from core.stats import Interval, format_interval, verdict


def describe_embed(result: dict) -> list[str]:
    run, how = result["run"], result["aggregation"]
    return [f"run {run}: {result['checkpoints']} checkpoints re-mapped with the {how} aggregation of token latents"]


def describe_eval(result: dict) -> list[str]:
    lines = [
        f"run {result['run']}: {result['test_models']} held-out models ({result['test_checkpoints']} checkpoints)",
        f"reconstruction R^2: {result['recon_r2']:.3f}  "
        + "  ".join(f"{k}: {v:.3f}" for k, v in result["recon_r2_per_layer"].items()),
    ]
    if result.get("recon_acc_ratio") is not None:
        lines.append(
            f"reconstructed accuracy / original: {result['recon_acc_ratio']:.3f} "
            f"(keep >= 90%: {result['recon_keep90_fraction']:.0%} of checkpoints)"
        )
    elif result.get("recon_acc_note"):
        lines.append(f"reconstructed accuracy / original: not measured ({result['recon_acc_note']})")
    if "recon_acc_ratio_recalibrated" in result:
        lines.append(f"... with BatchNorm statistics re-estimated: {result['recon_acc_ratio_recalibrated']:.3f}")
    for measure, title in (("r2", "probe R^2"), ("tau", "probe tau")):
        if f"probe_{measure}" not in result:  # an evaluation stored before Kendall's tau was measured
            continue
        lines.append(f"{title:<16}{'test_acc':>10}{'epoch':>10}{'ggap':>10}")
        rows = list(result[f"probe_{measure}"].items())
        by_aggregation = result.get(f"probe_{measure}_by_aggregation", {})
        rows += [(f"  by {how}", scores) for how, scores in by_aggregation.items()]
        for name, scores in rows:
            cells = ("-" if scores[p] is None else f"{scores[p]:.3f}" for p in ("test_acc", "epoch", "ggap"))
            lines.append(f"{name:<16}" + "".join(f"{cell:>10}" for cell in cells))
    lines += [f"{baseline} probe: {note}" for baseline, note in result.get("probe_notes", {}).items()]
    if "aggregation" in result:
        lines.append(f"the map's embedding is made by {result['aggregation']} (change: ae embed --aggregation)")
    return lines


def describe_samples(result: dict) -> list[str]:
    path_t, path_to = result["config"].get("path_t"), result["config"].get("path_to")
    on_path = f" at t = {path_t:g} of the latent path between them" if path_t is not None else ""
    if path_to is not None:
        on_path = f" at t = {path_t:g} of the latent path from it to generated model {path_to}"
    lines = [
        f"samples run {result['samples_run']}: {result['n']} models by {result['method']} from "
        f"{result['anchors']['count']} anchors ({result['anchors']['rule']}){on_path}, "
        f"evaluated on {result['dataset']}",
    ]
    if result["fallback"]:
        lines.append(f"note: {result['fallback']}")
    lines += [f"warning: {message}" for message in result.get("anchor_warnings", [])]
    fidelity = result["selection"].get("anchor_fidelity")
    if fidelity and fidelity["note"]:  # what it left out is among the warnings above
        lines.append(f"anchors: {describe_fidelity(fidelity)}")
    calibration = result["selection"].get("spread_calibration")
    if calibration:
        lines.append(describe_calibration(calibration))
    scored_by = result["selection"].get("scored_by", "validation accuracy")  # guided: a probe's prediction
    for step in result["selection"].get("history", []):
        lines.append(
            f"selection round {step['round']}: mean {scored_by} {step['drawn_mean']:.3f} drawn, "
            f"{step['kept_mean']:.3f} kept"
        )
    lines.append("mean test accuracy by fine-tuning epoch (0 = as generated):")
    for group, curve in result["curves"].items():
        lines.append(f"  {group:<13}" + " ".join(f"{a:.3f}" for a in curve))
    lines += _source_ratio_lines(result.get("source_ratio"))
    frontier = result.get("noise_frontier") or []
    if frontier:
        points = ", ".join(f"{p['scale']:g}: {p['acc_mean']:.3f} at {p['max_iou_median']:.2f}" for p in frontier)
        lines.append(f"anchor + noise (scale x layer std: accuracy at error-IoU): {points}")
    lines += _baseline_selection_lines(result.get("baseline_selection"))
    lines += interval_lines(result.get("intervals") or {})
    return lines + _novelty_lines(result) + (describe_ensembles(result) if result.get("ensembles") else [])


def _source_ratio_lines(ratio: dict | None) -> list[str]:
    """The generated models' mean accuracy over their source anchors' (runs from before it: nothing)."""
    if not ratio or ratio.get("as_generated") is None:
        return []
    after = ratio.get("finetuned")
    tail = f", {after:.3f} after fine-tuning" if after is not None else ""
    return [f"generated / their source anchors' mean accuracy: {ratio['as_generated']:.3f} as generated{tail}"]


def _baseline_selection_lines(selections: dict | None) -> list[str]:
    """Which selection each weight-space baseline got (runs from before it: nothing)."""
    if not selections:
        return []
    cells = []
    for group, how in selections.items():
        if group in ("random_init", "anchors"):
            continue
        scored = (
            f" (validation {how['drawn_mean']:.3f} drawn, {how['kept_mean']:.3f} kept)" if "kept_mean" in how else ""
        )
        cells.append(f"{group} {how['mode']}{scored}")
    notes = sorted({how["note"] for how in selections.values() if "note" in how})
    lines = [f"baselines' selection: {'; '.join(cells)}"] if cells else []
    return lines + [f"note: {note}: they get none" for note in notes]


def _novelty_lines(result: dict) -> list[str]:
    """The generated models' median novelty against the zoo, against the run's decodes of its anchors, and their
    prediction agreement with the most similar zoo checkpoint (the last two: runs from before them, not)."""
    nov = result["novelty"]
    ranges = (result.get("novelty_intervals") or {}).get("generated", {})
    l2, iou = (_bracket(ranges.get(k)) for k in ("min_l2", "max_iou"))
    lines = [
        f"novelty: median min L2 to the zoo {nov['min_l2_median']:.3f}{l2} (zoo to itself "
        f"{nov['zoo_min_l2_median']:.3f}); median max error-IoU {nov['max_iou_median']:.3f}{iou} "
        f"(zoo {nov['zoo_max_iou_median']:.3f})"
    ]
    if "decoded_min_l2_median" in nov:
        lines.append(
            f"  against the run's own decodes of the anchors: median min L2 {nov['decoded_min_l2_median']:.3f}, "
            f"median max error-IoU {nov['decoded_max_iou_median']:.3f} (0 and 1: the generator returns its decodes)"
        )
    if "max_agreement_median" in nov:
        zoo = nov.get("zoo_max_agreement_median")
        beside = f" (zoo checkpoints with other models': {zoo:.3f})" if zoo is not None else ""
        lines.append(
            f"  median prediction agreement with the most similar zoo checkpoint {nov['max_agreement_median']:.3f}"
            f"{beside}; unlike error-IoU it does not rise again for collapsed models"
        )
    return lines


_ENSEMBLE_COLUMNS = (("acc", "acc"), ("vote", "vote_acc"), ("NLL", "nll"), ("ECE", "ece"), ("Brier", "brier"))
_ENSEMBLE_COLUMNS += (("disagree", "disagreement"), ("gain", "gain"))


def describe_ensembles(result: dict) -> list[str]:
    """The ensembles of a samples run: for each group and size, the mean over random subsets of that size, and
    the 95% range of accuracy."""
    how = result.get("ensemble_settings") or {}
    lines = [
        f"ensembles on {how.get('split', 'the test split')} (mean over random subsets of each size; acc range: 95% "
        f"of the subsets); anchors: {how.get('anchors', '?')}; noise selection: {how.get('noise_selection', '?')}",
        f"  {'group':<19}{'N':>4}" + "".join(f"{name:>10}" for name, _ in _ENSEMBLE_COLUMNS) + f"{'acc range':>16}",
    ]
    for group, table in result["ensembles"].items():
        for size, row in sorted(table.items(), key=lambda item: int(item[0])):  # JSON keeps sizes as text
            cells = "".join(f"{row[key]['mean']:>10.3f}" for _, key in _ENSEMBLE_COLUMNS)
            spread = f"{row['acc']['lo']:.3f}-{row['acc']['hi']:.3f}"
            lines.append(f"  {group:<19}{size:>4}{cells}{spread:>16}")
    if how.get("anchors_finetuned"):  # why the fine-tuned line has no like-for-like anchors beside it
        lines.append(f"source anchors, fine-tuned: {how['anchors_finetuned']}")
    distinct = how.get("distinct")
    if distinct:
        lines.append("distinct models per group: " + ", ".join(f"{g} {k}" for g, k in distinct.items()))
    return lines


def interval_lines(intervals: dict) -> list[str]:
    """Each group's mean accuracy as generated and after fine-tuning with its 95% bootstrap interval over models,
    and how the generated models compare with each other group (runs from before intervals: nothing)."""
    if not intervals:
        return []
    last = len(next(iter(intervals.values()))) - 1
    epochs = [0, last] if last else [0]
    when = {0: "as generated", **({last: f"after {last} epochs"} if last else {})}
    lines = [f"mean test accuracy ± half its 95% bootstrap interval over models [ends], {' and '.join(when.values())}:"]
    for group, rows in intervals.items():
        cells = "   ".join(format_interval(Interval.from_json(rows[e])) for e in epochs)
        lines.append(f"  {group:<13}{cells}   (std {rows[last]['std']:.3f} over {rows[last]['n']} models)")
    if "generated" in intervals:
        for e in epochs:
            mine = Interval.from_json(intervals["generated"][e])
            others = {g: Interval.from_json(rows[e]) for g, rows in intervals.items() if g != "generated"}
            lines.append(f"  {when[e]}: " + "; ".join(verdict(mine, o, "generated", g) for g, o in others.items()))
    return lines


def _bracket(entry: dict | None) -> str:
    return "" if not entry else f" [{entry['lo']:.3f}, {entry['hi']:.3f}]"


def describe_export(result: dict) -> list[str]:
    if result.get("ensemble"):
        return [f"wrote {result['bundle']}: an ensemble of {result['models']} models, model.py (predict), card.json"]
    return [
        f"wrote {result['bundle']}: {result['models']} models ({result['files']} {result['format']} files), "
        "model.py, card.json, README.md"
    ]


def describe_pack(result: dict) -> list[str]:
    if "pack" in result:
        return [f"wrote {result['pack']}: {result['files']} files, {result['bytes'] / 1e6:.1f} MB"]
    return [f"unpacked into {result['workspace']}", *describe_zoo(result)]


def describe_zoo(result: dict) -> list[str]:
    acc = result["test_acc"]
    lines = [
        f"{result['models']} models, {result['checkpoints']} checkpoints of {result['architecture']} "
        f"({result['n_params']} parameters) on {result['dataset']}",
        f"epochs saved: {result['epochs']}",
        f"test accuracy: min {acc['min']:.3f}  mean {acc['mean']:.3f}  max {acc['max']:.3f}",
    ]
    lines += [f"skipped: {printable(s)}" for s in result.get("skipped", [])]
    return lines
