"""The sentences the pages put under charts, metrics and tables: what a chart's lines are, what a metric averages,
how far a figure can be trusted. Pure functions of the runs' records, so each is unit-tested without Streamlit
(AppTest sees the text, not why it is right)."""

from __future__ import annotations

# Fewer held-out models than this and a probe's R^2 swings with the split (a 16-model zoo holds out 2 and gave
# R^2 -0.89 for test accuracy): the evaluation then says so.
FEW_HELD_OUT = 10


def counted(n: int, noun: str) -> str:
    """ "1 model", "16 models": a count with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def loss_caption(gamma: float, structure_weight: float, behaviour_weight: float, layer_norm: bool) -> str:
    """What each curve of the loss chart is and how the total weighs it, with this run's weights. A run trained
    on behaviour alone (the per-neuron default: structure weight 0) logs a reconstruction it does not minimise,
    which may rise while the total falls: the caption says so where it applies."""
    reconstruction = "layer-normalised" if layer_norm else "plain (not layer-normalised)"
    text = (
        f"Total = {gamma:g} x contrastive + {1 - gamma:g} x {structure_weight:g} x reconstruction + "
        f"{behaviour_weight:g} x behavioural. Reconstruction: the {reconstruction} squared error of the decoded "
        "weights (validation: always layer-normalised). Contrastive: NT-Xent between two augmented views of each "
        "model. Behavioural: how far the decoded models' outputs are from the originals' on query inputs (the "
        "models' function, not their weights)."
    )
    if structure_weight == 0 and behaviour_weight > 0:
        text += (
            " This run trains on behaviour, not on weights (structure weight 0): the reconstruction is logged, "
            "not minimised, so it may rise while the decoded models keep their function."
        )
    elif behaviour_weight == 0:
        text += " This run has no behavioural loss (behaviour weight 0), so its curves are absent."
    return text


def frontier_caption(noise_frontier: list[dict]) -> str:
    """What the noise line on the novelty plane is: its upper envelope, and which scales it lifts (a scale that
    lands at a higher overlap with a lower accuracy than a smaller one is drawn at the better one's accuracy)."""
    if not noise_frontier:
        return ""
    lifted = [
        f"{p['scale']:g}"
        for p in sorted(noise_frontier, key=lambda p: p["scale"])
        if any(q["max_iou_median"] <= p["max_iou_median"] and q["acc_mean"] > p["acc_mean"] for q in noise_frontier)
    ]
    text = (
        f"Dashed: the upper envelope of anchor + noise at {len(noise_frontier)} noise scales (each point: the "
        "median overlap and mean accuracy of its models), i.e. at each overlap the best accuracy noise reached "
        "there or at a lower overlap. A generated model above it beats adding noise at the same novelty."
    )
    if lifted:
        text += (
            f" Noise at scale {', '.join(lifted)} did worse than a smaller scale that is at least as new (a lower "
            "overlap): the line keeps the better accuracy there (hover for its own figure)."
        )
    return text


def anchors_help(extra: dict, count: int) -> str:
    """What the "Anchors, as is" metric averages. Runs since the like-for-like baselines record `source_ratio`:
    their anchors group is the generated models' source anchors, one per generated model; older runs drew a
    random n of the anchors."""
    if "source_ratio" in extra:
        return (
            "the generated models' source anchors, one per generated model (the checkpoint each was drawn around, "
            f"so an anchor behind several counts as often; for a point of a latent path, its checkpoint ends), not "
            f"all {counted(count, 'anchor')}: their mean test accuracy before fine-tuning; the change is in "
            "percentage points"
        )
    return (
        f"a random subset of the {counted(count, 'anchor')} (as many as generated models; a run made before source "
        "anchors were recorded), not their mean: its mean test accuracy before fine-tuning; the change is in "
        "percentage points"
    )


def change_after(first: float, last: float, epochs: int) -> str | None:
    """The metric's delta: the change after fine-tuning, or None for a run not fine-tuned (no change to show)."""
    if epochs <= 0:
        return None
    return f"{100 * (last - first):+.1f} points after {counted(epochs, 'epoch')}"


def held_out_note(result: dict) -> tuple[str, str | None]:
    """(what the evaluation is measured on, a warning when too few models were held out for it to be trusted)."""
    models, checkpoints = result.get("test_models"), result.get("test_checkpoints")
    if models is None:
        return "On the run's held-out models (their number was not recorded).", None
    text = f"On {counted(models, 'held-out model')}" + (
        f" ({counted(checkpoints, 'checkpoint')})." if checkpoints is not None else "."
    )
    if models >= FEW_HELD_OUT:
        return text, None
    return text, (
        f"Only {counted(models, 'model')} held out: R² over so few swings with the split (it can be far below 0) "
        f"and says little. At the default split (15% held out) a zoo of 64 or more models holds out {FEW_HELD_OUT}."
    )


def app_wording(message: str) -> str:
    """An engine message in the app's words: the CLI's "run the same command again" is the same button here."""
    return message.replace("run the same command again", "start it again with the same settings")
