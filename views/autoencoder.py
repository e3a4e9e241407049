"""Autoencoder: train the hyper-representation on the zoo (live loss curves, stop and resume), or pick a
finished run and read its evaluation."""

from __future__ import annotations

from dataclasses import fields

import polars as pl
import streamlit as st

from core.errors import UserError
from core.rep.loop import OBJECTIVES, TrainConfig
from core.rep.methods import KINDS, METHODS
from core.store.files import read_json
from core.store.runs import AERunFiles, ae_run_statuses
from ui import keys, session
from ui.figures import LOSS_COLUMNS, loss_figure
from ui.jobs import Job
from ui.texts import held_out_note, loss_caption
from ui.widgets import or_stop, page_start, run_picker, start, watch

OBJECTIVE_TITLES = {"generate": "Generate models", "probe": "Probe properties"}

workspace = page_start(
    "Autoencoder",
    "The hyper-representation: a transformer autoencoder over the zoo's weights, one token per neuron, whose "
    "embedding of a model predicts its accuracy, epoch and generalisation gap.",
)
or_stop(session.zoos, workspace, hint="Generate or import a zoo on the Zoo page first.")


def eval_tables(result: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(reconstruction figures, probe R^2 table: one row per feature set, one column per property)."""
    figures = {
        "reconstruction R² (held-out models)": result["recon_r2"],
        "accuracy kept by reconstructions (mean ratio)": result.get("recon_acc_ratio"),
        "share of reconstructions keeping ≥90% accuracy": result.get("recon_keep90_fraction"),
    }
    if "recon_acc_ratio_recalibrated" in result:
        figures["accuracy kept, BatchNorm statistics re-estimated"] = result["recon_acc_ratio_recalibrated"]
    reconstruction = pl.DataFrame({"figure": list(figures), "value": list(figures.values())})
    labels = {"embedding": "embedding (ours)", "weights": "flat weights W", "stats": "weight statistics s(W)"}
    if "aggregation" in result:
        labels["embedding"] = f"embedding (ours, by {result['aggregation']})"
    probes = {labels.get(k, k): v for k, v in result["probe_r2"].items()} | {
        f"  embedding by {how}": scores for how, scores in result.get("probe_r2_by_aggregation", {}).items()
    }
    table = pl.DataFrame([{"features": name, **scores} for name, scores in probes.items()])
    return reconstruction, table


def live_losses(job: Job) -> None:
    rows = [{"epoch": r["done"], **{k: r[k] for k in LOSS_COLUMNS if k in r}} for r in job.history if "loss" in r]
    if rows:
        st.plotly_chart(loss_figure(pl.DataFrame(rows)), width="stretch", key=keys.LIVE_LOSSES)


def show_run(name: str) -> None:
    run = or_stop(session.ae_run, workspace, name)
    left, right = st.columns(2)
    with left:
        st.subheader("Training")
        for warning in run.files.read_config().get("warnings", []):  # the learning check's
            if isinstance(warning, str):
                st.warning(warning)
        if run.history.height:
            st.plotly_chart(loss_figure(run.history), width="stretch")
            train = run.train_config
            st.caption(loss_caption(train.gamma, train.structure_weight, train.behaviour_weight, train.layer_norm))
        st.caption(f"Run folder: `{run.folder}`")
    with right:
        st.subheader("Evaluation on held-out models")
        _, evaluating = watch(workspace, "eval", stoppable=False)
        if run.files.eval.exists():
            result = read_json(run.files.eval)
            reconstruction, probes = eval_tables(result)
            measured_on, too_few = held_out_note(result)
            st.caption(measured_on)
            if too_few:
                st.warning(too_few, icon=":material/warning:")
            st.dataframe(reconstruction, hide_index=True, width="stretch")
            if result.get("recon_acc_note"):  # why the accuracy kept is empty (as `ae eval` says it)
                st.caption(f"Accuracy kept by reconstructions: not measured ({result['recon_acc_note']})")
            st.markdown("**Linear probes (R² on held-out models)**: embedding against the two baselines")
            st.dataframe(probes, hide_index=True, width="stretch")
            for note in result.get("probe_notes", {}).values():  # why a baseline's row is empty
                st.caption(f"Flat weights W: {note}")
            if len(run.method.aggregations) > 1:
                aggregation_form(run)
        elif not evaluating and st.button("Evaluate this run"):

            def work(on_progress, should_stop):
                from core.rep.evaluate import evaluate_run  # lazy: the engine loads in the background

                return evaluate_run(workspace, name, session.device())

            if start(workspace, "eval", f"Evaluating {name}", work):
                st.rerun()


def aggregation_form(run) -> None:
    """Re-map the run with another embedding: SANE's token latents or the per-neuron encoder's token states pooled
    another way, or the per-neuron latent itself (the probe rows above compare them)."""
    _, remapping = watch(workspace, "embed", stoppable=False)
    if remapping:
        return
    left, right = st.columns([2, 1])
    choices = run.method.aggregations
    how = left.selectbox(
        "Map embedding: latent, or token states pooled by",
        choices,
        index=choices.index(run.aggregation),
        key=session.state(workspace, f"aggregation-{run.name}"),
    )
    if how != run.aggregation and right.button("Re-map the run", key=f"remap-{run.name}"):

        def work(on_progress, should_stop):
            from core.rep.embed import set_aggregation  # lazy: the engine loads in the background

            return set_aggregation(workspace, run, session.zoos(workspace), how, session.device())

        if start(workspace, "embed", f"Re-mapping {run.name} with the {how} aggregation", work):
            st.rerun()


# The kind's settings offered on the page, in this order (each where the kind's config has it).
KIND_SETTINGS = ("latent_dim", "d_model", "token_width", "window", "halo")


def kind_inputs(config_type: type, columns) -> dict:
    """Number inputs for the kind's settings among KIND_SETTINGS, labelled by their help text, at the config's
    defaults."""
    settings = {f.name: f for f in fields(config_type) if f.name in KIND_SETTINGS}
    values = {}
    for column, name in zip(columns * 2, [n for n in KIND_SETTINGS if n in settings], strict=False):
        label = settings[name].metadata["help"]
        values[name] = column.number_input(label[0].upper() + label[1:], 0, 8192, settings[name].default)
    return values


def train_form() -> None:
    kind = st.radio("Kind", KINDS, format_func=lambda k: METHODS[k].title, key=session.state(workspace, keys.AE_KIND))
    objective = st.radio(
        "Objective",
        tuple(OBJECTIVES),
        format_func=lambda objective: f"{OBJECTIVE_TITLES[objective]} (γ {OBJECTIVES[objective]:g})",
        horizontal=True,
        key=session.state(workspace, keys.AE_OBJECTIVE),
        help="The best embedding for probes and the best decoder for generation are not one run (README, "
        "'Choices worth knowing'): the objective sets the contrastive weight γ below.",
    )
    config_type, train_defaults = METHODS[kind].config_type, TrainConfig()
    with st.form(keys.form(session.workspace_id(workspace), "train-ae")):
        c1, c2, c3, c4 = st.columns(4)
        epochs = c1.number_input("Epochs", 1, 2000, train_defaults.epochs)
        sizes = kind_inputs(config_type, [c1, c2, c3])
        gamma = c2.slider("Contrastive weight γ", 0.0, 1.0, OBJECTIVES[objective])
        permute = c3.slider("Permutation augmentation p", 0.0, 1.0, train_defaults.permute_probability)
        erase = c3.slider("Random erasing p", 0.0, 1.0, train_defaults.erase_probability)
        layer_norm = c4.checkbox("Layer-wise loss normalisation", value=train_defaults.layer_norm)
        align = c4.checkbox("Align the zoo first", value=train_defaults.align)
        seed = c4.number_input("Seed", 0, 2**31 - 1, train_defaults.seed)
        submitted = st.form_submit_button("Train autoencoder", type="primary")
    if not submitted:
        return
    try:
        ae = config_type(**{name: int(value) for name, value in sizes.items()})
        train = TrainConfig(
            epochs=int(epochs),
            objective=objective,
            gamma=float(gamma),
            permute_probability=float(permute),
            erase_probability=float(erase),
            layer_norm=layer_norm,
            align=align,
            seed=int(seed),
        )
    except (UserError, ValueError) as exc:
        st.error(str(exc))
        return

    def work(on_progress, should_stop):
        from core.pipeline import train_and_map  # lazy: the engine loads in the background

        return train_and_map(workspace, ae, train, None, session.device(), on_progress, should_stop).name

    if start(workspace, "ae", "Training the autoencoder", work):
        st.rerun()


runs = ae_run_statuses(workspace)
st.header("Train")
st.write(
    "Runs are named by their settings: training again with the same settings resumes a stopped run, "
    "or simply loads a finished one."
)
job, training = watch(workspace, "ae", live=live_losses)
applied = session.state(workspace, keys.AE_JOB_APPLIED)
if job and not training and job.status == "done" and st.session_state.get(applied) != id(job):
    # Once: select the new run and say so; on later reruns the box would stand beside newer messages.
    st.session_state[applied] = id(job)
    session.choose_run(workspace, job.result)
    st.success(f"Trained `{job.result}` in {job.elapsed():.0f} s.")
if not training:
    train_form()

st.header("Runs")
finished = session.finished_runs(workspace)
if runs:
    kinds = [AERunFiles.of(workspace, r).kind() for r in runs]
    st.dataframe(
        pl.DataFrame({"run": list(runs), "kind": kinds, "status": list(runs.values())}),
        hide_index=True,
        width="stretch",
    )
if not finished:
    st.info("No finished run yet: train one above.")
    st.stop()
chosen = session.chosen_run(workspace, finished)
show_run(run_picker(workspace, "Run to explore and generate from", finished, chosen))
