"""Explore: the zoo's embeddings as a UMAP map; lasso or box a region to sample new models from it."""

from __future__ import annotations

import polars as pl
import streamlit as st

from ui import keys, session
from ui.figures import (
    COLOURINGS,
    end_label,
    map_figure,
    map_table,
    path_figure,
    selected_checkpoints,
    selection_summary,
    zoomed_table,
)
from ui.widgets import or_stop, page_start, require_run, require_zoo_table, run_picker, start_generation

ZOOM_AXES = ("selection's PCA 1 (no unit)", "selection's PCA 2 (no unit)")
PICK_SHOWN = 8  # a map selection up to this size is shown in the pick list; a larger one would fill the column

workspace = page_start(
    "Explore",
    "Every checkpoint of the zoo is a point: its hyper-representation, mapped to 2-D with UMAP. "
    "Lasso or box a region (the tools at the chart's top right) to sample new models from it; with the pan or "
    "zoom tool, click one checkpoint to decode it or for the latent path to a generated model; pick exactly two "
    "(by model and epoch, in the list under Selection) for the latent path between them.",
)
zoo_table = require_zoo_table(workspace)
chosen = require_run(workspace)
if not session.selection(workspace, chosen):  # the landing page: say where to begin until something is selected
    st.info(
        "**Start here.** This workbench learns a representation of a whole zoo of trained networks and generates "
        "new ones from it. 1. Lasso or box a region of good models on the map (or pick checkpoints by model and "
        "epoch). 2. **Generate from this selection**: new models, decoded and fine-tuned beside baselines. "
        "3. **Export** them. Your own zoo and autoencoder: the Zoo and Autoencoder pages.",
        icon=":material/flag:",
    )
runs = session.finished_runs(workspace)
# Controls a third of the map's width: at 1.3 to 4 the chosen runs' names were cut ("neighb…") in the list's chips.
controls, chart = st.columns([1.8, 4])
with controls:
    run = run_picker(workspace, "Autoencoder run", runs, chosen)
    colour = st.selectbox("Colour by", list(COLOURINGS), key=keys.MAP_COLOUR)
    samples = session.samples_points(workspace, run)
    if samples is not None:
        names = samples["samples_run"].unique(maintain_order=True).to_list()
        shown = st.multiselect(
            "Generated runs",
            names,
            default=names,
            help="models generated from this autoencoder run: one marker per run, coloured by accuracy as "
            "generated; a click on a run in the legend hides it too",
        )
        samples = samples.filter(pl.col("samples_run").is_in(shown))

embeddings = or_stop(session.embeddings, workspace, run)
table = map_table(embeddings, zoo_table)
selection_key = keys.selection(session.workspace_id(workspace), run)
map_key, path_key = session.state(workspace, keys.MAP), session.state(workspace, keys.PATH)
path_t_key = session.state(workspace, keys.PATH_T)
selected = session.selection(workspace, run)
with controls:
    zoom = st.toggle(
        "Zoom into the selection",
        key=session.state(workspace, keys.ZOOM),
        disabled=len(selected) < 3,
        help="re-project only the selected checkpoints (PCA of their embeddings), so the structure inside one "
        "region shows; a selection drawn here narrows the zoom further; clear the selection to go back",
    )
zoomed = zoom and len(selected) >= 3
shown_table = zoomed_table(table, embeddings, selected) if zoomed else table


def keep_selection() -> None:
    """Copy the chart's selection into our own key: the chart's resets whenever its figure changes."""
    st.session_state[selection_key] = selected_checkpoints(st.session_state[map_key].selection, shown_table)


def pick_list() -> None:
    """Checkpoints picked by model and epoch: the way to select exactly two (a box at the map's scale catches more).
    It shows a small selection made on the map too; a pick replaces the selection."""
    pick_key = keys.picked(selection_key)
    if sorted(st.session_state.get(pick_key, [])) != selected:  # the selection came from the map: show it if small
        st.session_state[pick_key] = selected if len(selected) <= PICK_SHOWN else []  # (before the widget exists)
    label = {
        c: f"model {m} / epoch {e} ({a:.0%})"
        for c, m, e, a in table.select("checkpoint", "model_id", "epoch", "test_acc").sort("checkpoint").rows()
    }
    st.multiselect(
        "Pick checkpoints (model / epoch)",
        list(label),
        format_func=label.get,
        key=pick_key,
        on_change=lambda: st.session_state.update({selection_key: sorted(st.session_state[pick_key])}),
        placeholder="type a model id to find its epochs",
        help="pick exactly two for the latent path between them, one to decode it; the pick replaces the map's "
        f"selection, and a selection of up to {PICK_SHOWN} made on the map shows here (test accuracy in brackets)",
    )


def latent_path_of(ends: tuple[int, int | str]):
    """The path's accuracies (core/gen/path.py): a few seconds, so it runs in the page, with a spinner."""
    from core.gen.path import STEPS, latent_path  # lazy: it imports torch, which the first page (this one) needs not

    with st.spinner("Decoding the path..."):
        return or_stop(latent_path, workspace, run, ends, STEPS, session.device())


def show_path() -> None:
    """The latent path asked for last on this run of this workspace, below the map, and a point of it to decode."""
    shown = st.session_state.get(path_key)
    if not shown or shown[0] != run:
        return
    _, ends, path = shown
    accuracy = dict(zip(path["t"].round(6).to_list(), path["latent"].to_list(), strict=True))
    middle = list(accuracy)[len(accuracy) // 2]
    start, end = (end_label(e) for e in ends)
    st.subheader(f"Latent path: {start} to {end}")
    at = st.session_state.get(path_t_key, middle)
    st.plotly_chart(path_figure(path, ends, at), width="stretch", key=keys.PATH_CHART)
    st.caption(
        "Red: models decoded along the straight line between the two embeddings (its ends are the models' "
        "reconstructions). Blue: the straight line between their aligned weights; a dip is the loss barrier."
    )
    at = st.select_slider(
        "Position t on the path",
        list(accuracy),
        value=middle,
        format_func=lambda t: f"{t:g} (decoded: {accuracy[t]:.0%})",
        key=path_t_key,
        help=f"0 is the code of {start}, 1 that of {end}; the dotted line marks it on the chart",
    )
    if st.button(
        "Decode the point at t",
        help="the model decoded at this point of the latent line: its accuracy, novelty against the zoo, and export, "
        "on the Generate page",
    ):
        decode(ends, f"Decoding t = {at:g} on the path from {start} to {end}", at)


def decode(ends: tuple[int | str, ...], label: str, path_t: float | None = None) -> None:
    """Decode one model and show it: a generation of one at spread 0, not fine-tuned, at one checkpoint's code or
    (with `path_t`) at the point t of the latent line between two models' codes (checkpoints, or a checkpoint and
    a generated model RUN:I)."""
    from core.gen.config import SampleConfig  # lazy: it imports torch, which the first page (this one) needs not

    rule = "ids:" + ",".join(str(e) for e in ends if isinstance(e, int))
    generated = next((e for e in ends if isinstance(e, str)), None)
    config = SampleConfig(
        anchors=rule,
        n=1,
        spread=0.0,
        finetune_epochs=0,
        baselines=False,
        selection="none",
        path_t=path_t,
        path_to=generated,
    )
    if start_generation(workspace, run, config, label):
        st.session_state.pop(session.state(workspace, keys.RESULTS_FIRST), None)
        session.switch_page("views/generate.py")


def path_to_generated(checkpoint: int) -> None:
    """A generated model of the runs shown on the map, and the latent path from the selected checkpoint to it."""
    if samples is None or not samples.height:
        return
    models = samples.select("samples_run", "sample", "acc_epoch0").rows()
    accuracy = {f"{name}:{index}": acc for name, index, acc in models}
    chosen = st.selectbox(
        "Generated model",
        list(accuracy),
        format_func=lambda ref: f"{end_label(ref)} ({accuracy[ref]:.0%})",
        key=session.state(workspace, keys.PATH_TO),
        help="a model of the generated runs shown on the map (accuracy as generated), for the latent path from "
        "this checkpoint to it",
    )
    if st.button(
        "Latent path to this generated model",
        help="decode the straight line between the checkpoint's embedding and the generated model's (its weights "
        "encoded by this autoencoder run), beside the straight line between their weights",
    ):
        st.session_state[path_key] = (run, (checkpoint, chosen), latent_path_of((checkpoint, chosen)))


with chart:
    st.plotly_chart(
        map_figure(shown_table, colour, axes=ZOOM_AXES) if zoomed else map_figure(table, colour, samples, selected),
        key=map_key,
        on_select=keep_selection,
        # Points: with the pan or zoom tool, a click selects one checkpoint (Streamlit
        # turns clicks off while the lasso or box tool is active).
        selection_mode=("points", "lasso", "box"),
        width="stretch",
    )

with controls:
    st.subheader("Selection")
    pick_list()
    summary = selection_summary(table, selected)
    if not summary["checkpoints"]:
        st.write("Nothing selected yet. Draw a lasso or a box around a region of the map, or pick checkpoints above.")
    else:
        st.metric("Checkpoints", summary["checkpoints"])
        st.metric("Models", summary["models"])
        st.metric("Test accuracy", f"{summary['acc_mean']:.1%}", help="mean of the selection")
        st.caption(f"range {summary['acc_min']:.1%} to {summary['acc_max']:.1%}")
        st.caption("epochs: " + ", ".join(f"{e} ({n})" for e, n in summary["epochs"].items()))
        if summary["checkpoints"] == 1 and st.button(
            "Decode this checkpoint",
            help="the model the autoencoder reconstructs at this point (its own code, no noise): its accuracy, "
            "novelty against the zoo, and export, on the Generate page",
        ):
            decode((selected[0],), f"Decoding checkpoint {selected[0]}")
        if summary["checkpoints"] == 1:
            path_to_generated(selected[0])
        if summary["checkpoints"] == 2 and st.button(
            "Latent path between these two",
            help="decode the straight line between their embeddings, beside the straight line between their weights",
        ):
            st.session_state[path_key] = (run, tuple(selected), latent_path_of(tuple(selected)))
        if st.button("Generate from this selection", type="primary"):
            st.session_state[session.state(workspace, keys.ANCHOR_SOURCE)] = "map selection"
            st.session_state.pop(session.state(workspace, keys.RESULTS_FIRST), None)  # a new selection: form first
            session.switch_page("views/generate.py")
        if st.button("Clear selection"):
            st.session_state[selection_key] = []
            st.rerun()

show_path()
if selected:
    with st.expander(f"The {len(selected)} selected checkpoints"):
        st.dataframe(table.filter(table["checkpoint"].is_in(selected)), hide_index=True, width="stretch")
