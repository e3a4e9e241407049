"""Generate: sample new models from the anchors' embedding density, decode them, and fine-tune them beside
the baselines, with the curves drawn as each epoch finishes."""

from __future__ import annotations

import polars as pl
import streamlit as st

from core.errors import UserError
from core.gen.anchors import anchor_warnings, resolve_anchors
from core.gen.calibrate import describe_calibration
from core.gen.config import SampleConfig
from core.gen.fidelity import describe_fidelity
from core.gen.samplers import METHODS, SAMPLERS
from core.gen.selection import SELECTIONS
from core.rep.methods import method_named
from core.store.runs import AERunFiles, SamplesRun
from core.zoo.model_zoo import combined_table
from ui import keys, session
from ui.compare import MEANINGS, comparison_curves, comparison_novelty, comparison_rows, comparison_table
from ui.ensembles import FIGURES, ensemble_caption, ensemble_figure, ensemble_metric, groups_help
from ui.figures import GROUP_STYLE, curves_figure, end_label, frontier_selection, novelty_figure
from ui.intervals import accuracy_note, intervals_caption, novelty_note
from ui.jobs import Job, format_seconds
from ui.texts import anchors_help, change_after, counted, frontier_caption
from ui.widgets import (
    ensemble_job,
    or_stop,
    page_start,
    require_run,
    require_zoo_table,
    start_ensembles,
    start_generation,
    watch,
)

SELECTION_HELP = {
    "none": "None: keep every sampled model",
    "guided": "Guided: draw more, keep those the embedding predicts most accurate (no data needed)",
    "subsample": "Subsample: draw more, keep the best on validation data",
    "bootstrap": "Bootstrap: keep the best, refit the sampler on them, repeat",
    "diverse": "Diverse: draw more, keep the draws that lower the ensemble's validation NLL, one at a time (greedy "
    "ensemble selection: members that err differently; a model may be kept twice)",
}
ANCHOR_SOURCES = ("map selection", "best checkpoints", "one epoch")
SHORT_NAMES = {"generated": "Generated", "anchors": "Anchors", "random_init": "Random init"}  # metric labels fit
SPREAD_HELP = (
    "how far from the anchors to sample, in units of their typical spacing (the median distance from an anchor to "
    "its nearest other anchor in the embedding): 0 decodes the anchors themselves, 1 goes as far as the next "
    "anchor typically is. Larger: newer models, usually less accurate as generated."
)

workspace = page_start(
    "Generate",
    "New models from the hyper-representation: sample latent codes from the density of the anchors' "
    "embeddings, decode them into weights, then fine-tune them beside random initialisation and the anchors.",
)
zoo_table = require_zoo_table(workspace)
run = require_run(workspace)
note = method_named(AERunFiles.of(workspace, run).kind()).sampling_note
if note:
    st.caption(f"`{run}`: {note}")
selected = session.selection(workspace, run)
anchor_key = session.state(workspace, keys.ANCHOR_SOURCE)  # this workspace's state: ui/keys.py
results_first_key = session.state(workspace, keys.RESULTS_FIRST)
samples_run_key = session.state(workspace, keys.SAMPLES_RUN)


def anchor_rule() -> str | None:
    """The anchors, as the engine's rule string; None (with an error box) for an empty map selection."""
    default = st.session_state.get(anchor_key) or ("map selection" if selected else "best checkpoints")
    source = st.radio("Anchors", ANCHOR_SOURCES, index=ANCHOR_SOURCES.index(default), horizontal=True)
    st.session_state[anchor_key] = source
    if source == "map selection":
        st.caption(f"{len(selected)} checkpoints selected on the Explore page (autoencoder run `{run}`).")
        return "ids:" + ",".join(str(i) for i in selected) if selected else None
    if source == "best checkpoints":
        fraction = st.slider("Best fraction by validation accuracy", 0.05, 1.0, 0.3, 0.05)
        return f"top:{fraction}"
    epochs = sorted(zoo_table["epoch"].unique().to_list())
    return f"epoch:{st.selectbox('Epoch', epochs, index=len(epochs) - 1)}"


def warn_about(rule: str | None) -> None:
    """Warnings for anchors that make a poor generation (too few, identical, at chance), before it runs."""
    if rule is None:
        return
    zoos = or_stop(session.zoos, workspace)
    anchors = or_stop(resolve_anchors, zoos, combined_table(zoos), rule)
    for message in anchor_warnings(anchors):
        st.warning(f"Anchors: {message}.", icon=":material/warning:")


def describe_anchors(result: SamplesRun) -> str:
    kind, _, value = result.anchors["rule"].partition(":")
    path_t = result.config.get("path_t")
    if path_t is not None:
        generated = result.config.get("path_to")
        a, b = (end_label(e) for e in [*result.anchors["ids"], *([generated] if generated else [])])
        return f"the point t = {path_t:g} of the latent path from {a} to {b}"
    if kind == "ids":
        return "a map selection"
    if kind == "top":
        return f"the best {float(value):.0%} by validation accuracy"
    return f"every checkpoint of epoch {value}"


def live_curves(job: Job) -> None:
    curves = job.info.get("curves")
    if isinstance(curves, pl.DataFrame) and curves.height:
        st.plotly_chart(curves_figure(curves), width="stretch", key=keys.LIVE_CURVES)


def show_result(result: SamplesRun) -> None:
    curves = result.curves_table()
    novelty_table = result.novelty_table()
    st.subheader(f"Run `{result.name}`")
    kept = result.selection.get("history")
    st.caption(
        f"{counted(result.n, 'model')} by {result.method} from {counted(result.anchors['count'], 'anchor')} "
        f"({describe_anchors(result)}), fine-tuned on {result.dataset}"
        + (f" (transfer from {result.source_dataset})" if result.transfer else "")
        + (
            f"; {result.selection['mode']} selection kept models of {kept[-1]['kept_mean']:.1%} mean "
            f"{result.selection.get('scored_by', 'validation accuracy')} out of draws of {kept[-1]['drawn_mean']:.1%}"
            if kept
            else ""
        )
    )
    if calibration := result.selection.get("spread_calibration"):
        st.caption(f"Chosen for this zoo: {describe_calibration(calibration)}.")
    if fidelity := result.selection.get("anchor_fidelity"):
        st.caption(f"Anchors: {describe_fidelity(fidelity)}.")
    first = {g: v[0] for g, v in result.curves.items()}
    last = {g: v[-1] for g, v in result.curves.items()}
    ensemble = ensemble_metric(result)
    cols = st.columns(5 if ensemble else 4)
    for col, (group, name) in zip(cols, SHORT_NAMES.items(), strict=False):
        epochs = len(result.curves[group]) - 1
        notes = [f"as is: {n}" for n in [accuracy_note(result, group, 0)] if n]
        notes += [f"after {counted(epochs, 'epoch')}: {n}" for n in [accuracy_note(result, group, -1)] if n and epochs]
        what = (
            anchors_help(result.extra, result.anchors["count"])
            if group == "anchors"
            else f"{GROUP_STYLE[group][0]}: mean test accuracy before fine-tuning; the change is in percentage points"
        )
        col.metric(
            f"{name}, as is",
            f"{first[group]:.1%}",
            delta=change_after(first[group], last[group], epochs),
            help=what + "".join(f"; {n}" for n in notes),
        )
        if notes:
            col.caption(notes[0])
    iou_note = novelty_note(result)
    cols[3].metric(
        "Error overlap with the zoo",
        f"{result.novelty['max_iou_median']:.2f}",
        help="median over generated models of the largest IoU of their misclassified test images with any zoo "
        f"model's; among zoo models: {result.novelty['zoo_max_iou_median']:.2f}; 1 = a copy"
        + (f"; {iou_note} (bootstrap over models)" if iou_note else ""),
    )
    if iou_note:
        cols[3].caption(iou_note)
    if ensemble:
        ensemble_metric_cell(cols[4], ensemble)
    if caption := intervals_caption(result):
        st.caption(caption)
    left, right = st.columns(2)
    with left:
        if result.curves["generated"][1:]:
            st.markdown("**Fine-tuning curves** (band: ±1 std over models)")
            show_simple = st.toggle("Show the simple weight-space baselines", value=True)
            st.plotly_chart(curves_figure(curves, show_simple), width="stretch")
        else:  # one point per group: the metrics above say it all
            st.markdown("**Not fine-tuned** (0 epochs): the accuracies as generated are the figures above.")
    with right:
        st.markdown("**Novelty**: are the generated models new, or copies of zoo models?")
        st.plotly_chart(novelty_figure(novelty_table, result.extra.get("noise_frontier")), width="stretch")
        st.caption(
            f"Median nearest-zoo L2 distance: {result.novelty['min_l2_median']:.2f} "
            f"(between zoo models: {result.novelty['zoo_min_l2_median']:.2f})."
        )
        frontier = result.extra.get("noise_frontier") or []
        if frontier:
            st.caption(frontier_caption(frontier))
        if kept := frontier_selection(frontier):
            st.caption(f"The noise line's draws were kept as the generated models were ({kept}): like for like.")
    ensemble_section(result)
    with st.expander("Per generated model"):
        st.dataframe(result.samples_table(), hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    if c1.button("See them on the map"):
        session.switch_page("views/explore.py")
    if c2.button("Export these models", type="primary"):
        st.session_state[session.state(workspace, keys.EXPORT_RUN)] = result.name
        session.switch_page("views/export.py")


def ensemble_metric_cell(col, ensemble: dict) -> None:
    """The generated models' ensemble of all n against the source anchors' ensemble of as many."""
    points = 100 * (ensemble["acc"] - ensemble["anchors_acc"])
    col.metric(
        f"Ensemble of {ensemble['n']}",
        f"{ensemble['acc']:.1%}",
        delta=f"{points:+.1f} points vs anchors",
        help=f"test accuracy of the averaged softmax of all {ensemble['n']} generated models, as generated; the "
        f"ensemble of their {ensemble['n']} source anchors: {ensemble['anchors_acc']:.1%}. Below: its NLL (nats, "
        "lower is better) against the anchors' ensemble",
    )
    col.caption(f"NLL {ensemble['nll']:.3f}, {ensemble['nll'] - ensemble['anchors_nll']:+.3f} vs anchors")
    if "finetuned_acc" in ensemble:  # like for like after fine-tuning: the anchors trained alike
        tuned = 100 * (ensemble["finetuned_acc"] - ensemble["anchors_finetuned_acc"])
        col.caption(f"fine-tuned {ensemble['finetuned_acc']:.1%}, {tuned:+.1f} points vs anchors fine-tuned alike")


def ensemble_section(result: SamplesRun) -> None:
    """The run's models as ensembles of 1, 2, 4, ... members beside the baselines' ensembles; for a run without
    them, a button that evaluates them in the background (the run's "ensemble" job)."""
    if result.ensembles is None and result.n < 2:
        return
    st.subheader("As an ensemble", help=groups_help())
    _, running = watch(workspace, ensemble_job(result.name), stoppable=False)
    if result.ensembles is None:
        st.caption(
            "Average the models' softmax, and compare with their anchors, anchor + noise, averages of anchors and "
            "a deep ensemble."
        )
        clicked = not running and st.button("Evaluate as an ensemble")
        if clicked and start_ensembles(workspace, result.name, result.n):
            st.rerun()  # into the job's progress
        return
    figure = st.radio("Ensemble figure", list(FIGURES), format_func=lambda f: FIGURES[f][0], horizontal=True)
    st.plotly_chart(ensemble_figure(result.ensembles, figure), width="stretch")
    st.caption(ensemble_caption(result.ensemble_settings, result.n))


def settings_form(rule: str | None) -> SampleConfig | None:
    """The generation's settings; a checked config once submitted (None, with an error box, on bad input)."""
    defaults = SampleConfig()
    with st.form(keys.form(session.workspace_id(workspace), "generate")):
        c1, c2, c3 = st.columns(3)
        method = c1.selectbox(
            "Sampler",
            METHODS,
            index=METHODS.index(defaults.method),
            format_func=lambda m: SAMPLERS[m].description.split(":")[0].split(" (")[0],
            help="\n".join(f"- {SAMPLERS[m].description}" for m in METHODS),
        )
        chosen = c1.checkbox(
            "Choose the spread for this zoo",
            defaults.spread is None,
            help=f"the largest spread whose draws, kept as the selection keeps them, keep {defaults.spread_keep:.0%} "
            "of their source anchors' validation accuracy (the trial is shown with the results); uncheck to set the "
            "spread below",
        )
        spread = c1.slider("Spread (when not chosen for the zoo)", 0.0, 4.0, 1.0, 0.05, help=SPREAD_HELP)
        n = c1.number_input("Models to generate", 1, 256, defaults.n)
        epochs = c2.number_input("Fine-tuning epochs", 0, 50, defaults.finetune_epochs)
        source = or_stop(workspace.manifest).get("dataset", {}).get("name", "?")
        targets = [f"the zoo's own ({source})", *[d for d in ("digits", "shapes") if d != source], "local folder"]
        target = c2.selectbox("Fine-tune on", targets, help="another dataset is a transfer task (fresh output layer)")
        folder = c3.text_input("Local dataset folder (for 'local folder')", "")
        seed = c3.number_input("Seed", 0, 2**31 - 1, defaults.seed)
        selection = c1.selectbox(
            "Selection",
            SELECTIONS,
            index=SELECTIONS.index(defaults.selection),
            format_func=lambda m: SELECTION_HELP.get(m, m).split(":")[0],
            help="\n".join(f"- {SELECTION_HELP.get(m, m)}" for m in SELECTIONS),
        )
        candidates = c2.number_input(
            "Candidates per kept model", 1, 32, defaults.candidates, help="guided, subsample, bootstrap and diverse"
        )
        rounds = c3.number_input("Bootstrap rounds", 1, 10, defaults.rounds)
        faithful = c2.checkbox(
            "Only anchors the autoencoder reproduces",
            defaults.anchor_fidelity > 0,
            help=f"leave out anchors whose own decodes keep less than {defaults.anchor_fidelity:.0%} of their "
            "validation accuracy: every draw around them would lose it too (the results say how many were left out)",
        )
        ensemble = c3.checkbox(
            "Also evaluate as an ensemble",
            defaults.ensemble,
            help="ensembles of 1, 2, 4, ... of the generated models beside source anchors, anchor + noise and a deep "
            "ensemble: up to 6 x n more models evaluated on the test split (a run can also be evaluated later)",
        )
        if not st.form_submit_button("Generate", type="primary"):
            return None
    try:
        if rule is None:
            raise UserError("the map selection is empty: select a region on the Explore page or choose other anchors")
        dataset = None if target == targets[0] else (folder.strip() if target == "local folder" else target)
        if target == "local folder" and not dataset:
            raise UserError("give the local dataset folder's path")
        return SampleConfig(
            method=method,
            spread=None if chosen else float(spread),
            anchors=rule,
            n=int(n),
            finetune_epochs=int(epochs),
            dataset=dataset,
            seed=int(seed),
            selection=selection,
            candidates=int(candidates),
            rounds=int(rounds),
            ensemble=bool(ensemble),
            anchor_fidelity=defaults.anchor_fidelity if faithful else 0.0,
        )
    except UserError as exc:
        st.error(str(exc))
        return None


def generation_form() -> None:
    """Anchors, their warnings and the settings; a valid submit starts the job and reruns into its progress."""
    rule = anchor_rule()
    warn_about(rule)
    config = settings_form(rule)
    if config is None:
        return
    if start_generation(workspace, run, config, f"Generating {config.n} models"):
        st.session_state.pop(results_first_key, None)
        st.rerun()


def results() -> None:
    previous = session.samples_runs(workspace, run)
    if not previous:
        return
    names = [r.name for r in previous]
    wanted = st.session_state.get(samples_run_key)
    st.header("Results")
    shown = st.selectbox(
        "Samples run",
        names,
        index=names.index(wanted) if wanted in names else 0,
        format_func=lambda n: f"{n} ({next(r.created for r in previous if r.name == n)})",
    )
    show_result(next(r for r in previous if r.name == shown))


def comparison() -> None:
    """Several samples runs of this autoencoder run side by side: one table, their curves, one novelty plane."""
    previous = session.samples_runs(workspace, run)
    if len(previous) < 2:
        return
    st.header("Compare runs")
    names = [r.name for r in previous]
    chosen = st.multiselect(
        "Runs to compare", names, default=names[:3], key=session.state(workspace, keys.COMPARE_RUNS)
    )
    runs = [r for r in previous if r.name in chosen]
    if not runs:
        st.info("Pick runs to compare.")
        return
    shown = comparison_rows(comparison_table(runs))
    st.dataframe(shown, hide_index=True, width="stretch", height=35 * (shown.height + 1) + 3)  # every row in view
    st.caption("; ".join(f"{name}: {meaning}" for name, meaning in MEANINGS.items()) + ".")
    left, right = st.columns(2)
    with left:
        st.markdown("**Generated models, fine-tuned** (mean test accuracy)")
        st.plotly_chart(comparison_curves(runs), width="stretch", key=keys.COMPARE_CURVES)
    with right:
        st.markdown("**Novelty**: each run's generated models")
        st.plotly_chart(comparison_novelty(runs), width="stretch", key=keys.COMPARE_NOVELTY)


job, running = watch(workspace, "generate", live=live_curves, stoppable=False)
seen_key = session.state(workspace, keys.GENERATE_JOB_SEEN)
if job and not running and job.status == "done" and st.session_state.get(seen_key) != id(job):
    st.session_state[seen_key] = id(job)
    st.session_state[samples_run_key] = job.result.name
    st.session_state[results_first_key] = True

if not running and st.session_state.get(results_first_key):
    # Just generated: the results come first, in view where the progress bar was, and the form follows.
    if job and job.status == "done":
        st.success(f"Generated `{job.result.name}` in {format_seconds(job.elapsed())}.", icon=":material/check:")
    results()
    comparison()
    st.header("Generate again")
    generation_form()
elif not running:
    generation_form()
    results()
    comparison()
