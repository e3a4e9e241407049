"""Zoo: what the workspace's model zoo holds; generate a new zoo or import one into a new workspace."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.cluster import ADDRESSES, ClusterConfig
from core.errors import UserError
from core.names import checked_path_text
from core.parsing import float_list, int_list
from core.store.workspace import Workspace
from core.zoo.arch import ACTIVATIONS
from core.zoo.generate import ZooConfig
from core.zoo.model_zoo import combined_table, zoo_info
from core.zoo.population import INITS
from core.zoo.tasks import parse_task
from ui import keys, paging, session
from ui.figures import accuracy_histogram
from ui.widgets import start, watch

st.title("Zoo")
st.caption("A model zoo: many small networks trained from different seeds and settings, saved at several epochs.")

workspace = session.current()


def show_zoo(workspace: Workspace) -> None:
    try:
        zoos = session.zoos(workspace)
    except UserError as exc:
        st.info(f"Workspace `{workspace.root.name}` has no usable zoo yet ({exc}). Generate or import one below.")
        return
    info = zoo_info(zoos)
    table = combined_table(zoos)
    cols = st.columns(4)
    cols[0].metric("Models", info["models"])
    cols[1].metric("Checkpoints", info["checkpoints"])
    cols[2].metric("Parameters per model", " / ".join(f"{a['n_params']:,}" for a in info["architectures"].values()))
    cols[3].metric("Mean test accuracy", f"{info['test_acc']['mean']:.1%}")
    # Names as text, not metrics: a metric's large font cut "cnn-small" to "cnn-s…" in a sixth of the page.
    st.markdown(f"**Architecture** `{info['architecture']}` · **dataset** `{info['dataset']}`")
    for problem in info["skipped"]:
        st.warning(f"Skipped on load: {problem}")
    st.subheader("Test accuracy by saved epoch")
    st.plotly_chart(accuracy_histogram(table), width="stretch")
    st.subheader("Checkpoints")
    show_table_pages(workspace.models_table_path)


def show_table_pages(path: Path) -> None:
    """The checkpoint table a page at a time, read from the file by slice (ui/paging.py): a zoo of any size."""
    rows = paging.row_count(path)
    pages = paging.page_count(rows)
    page = st.number_input("Page", 1, pages, 1, key=keys.ZOO_PAGE) if pages > 1 else 1
    first = (page - 1) * paging.PAGE_ROWS
    st.caption(f"rows {min(first + 1, rows):,} to {min(first + paging.PAGE_ROWS, rows):,} of {rows:,}")
    st.dataframe(paging.read_page(path, page - 1), hide_index=True, width="stretch", height=320)


def target_workspace(name: str) -> Workspace:
    """A new workspace under the app's root: never overwrite a zoo that is already there."""
    target = Workspace(session.workspaces_root() / session.valid_workspace_name(name))
    if target.exists():
        raise UserError(f"workspace '{target.root.name}' already has a zoo; choose a new name")
    return target


def _listed(values: tuple) -> str:
    return ",".join(str(v) for v in values)


def generate_form() -> None:
    d = ZooConfig()  # every default below is the engine's
    with st.form("generate-zoo"):
        name = st.text_input("New workspace name", value="my-zoo", key=keys.ZOO_NAME)
        c1, c2, c3, c4 = st.columns(4)
        dataset = c1.selectbox("Dataset", ["digits", "shapes", "local folder"], help="digits: scikit-learn's 8x8")
        folder = c1.text_input("Local folder (MNIST-family IDX or CIFAR-10 binary)", value="")
        # No widget bounds but 0: the engine's own checks (core/limits.py) answer a bad count with an error box; a
        # widget bound would only turn the field red and drop the submit silently.
        models = c2.number_input("Models", 0, None, d.models, step=16)
        epochs = c2.number_input("Epochs", 0, None, d.epochs)
        save_epochs = c3.text_input(
            "Saved epochs",
            "",
            placeholder="0, 1, E/4, E/2, E",
            help="comma-separated; 0 is the initialisation; empty: derived from the epochs as the CLI does (the "
            "init, the first epoch, a quarter, half and the last)",
        )
        init_seeds = c3.number_input(
            "Shared initialisations", 0, None, d.init_seeds, help="how many initial weight draws the models share"
        )
        batch_size = c4.number_input("Batch size", 0, None, d.batch_size)
        seed = c4.number_input("Seed", 0, 2**31 - 1, d.seed)
        address = c4.text_input("Ray cluster", "", help=f"empty: train here; else shards as Ray tasks on {ADDRESSES}")
        st.markdown("**Variations** (each model draws one value from each list)")
        # Two rows: in a fifth of the form a chosen value was cut short ("kaimin…").
        v1, v2, v3 = st.columns(3)
        lrs = v1.text_input("Learning rates", _listed(d.lrs))
        wds = v2.text_input("Weight decays", _listed(d.weight_decays))
        dropouts = v3.text_input("Dropout rates", _listed(d.dropouts))
        v4, v5 = st.columns(2)
        inits = v4.multiselect("Initialisation", INITS, default=list(d.inits))
        activations = v5.multiselect("Activations", ACTIVATIONS, default=list(d.activations))
        submitted = st.form_submit_button("Generate zoo", type="primary")
    if not submitted:
        return
    new_attempt()
    try:
        target = target_workspace(name)
        source = folder.strip() if dataset == "local folder" else dataset
        if not source:
            raise UserError("dataset: give the local folder's path")
        config = ZooConfig(
            dataset=source,
            models=int(models),
            epochs=int(epochs),
            save_epochs=int_list(save_epochs, "saved epochs") or None,  # None: derived from the epochs
            batch_size=int(batch_size),
            seed=int(seed),
            inits=tuple(inits),
            lrs=float_list(lrs, "learning rates"),
            weight_decays=float_list(wds, "weight decays"),
            dropouts=float_list(dropouts, "dropout rates"),
            activations=tuple(activations),
            init_seeds=int(init_seeds),
        )
        cluster = ClusterConfig(address.strip()) if address.strip() else None
    except UserError as exc:
        st.error(str(exc))
        return

    def work(on_progress, should_stop):
        from core.zoo.generate import generate_zoo  # lazy: the engine loads in the background

        generate_zoo(target, config, session.device(), on_progress, should_stop, cluster=cluster)
        return target.root.name

    started(start(target, "zoo", f"Training {config.models} models on {config.dataset}", work), target)


def import_form() -> None:
    with st.form("import-zoo"):
        source = st.text_input("Folder holding the model folders (public model-zoo layout)", value="")
        dataset = st.text_input(
            "Dataset the zoo was trained on (digits, shapes or a local folder; optional, needed to fine-tune)", ""
        )
        name = st.text_input("New workspace name", value="imported", key=keys.IMPORT_NAME)
        submitted = st.form_submit_button("Import zoo", type="primary")
    if not submitted:
        return
    new_attempt()
    try:
        target = target_workspace(name)
        if not source.strip() or not Path(checked_path_text(source.strip(), "folder")).expanduser().is_dir():
            raise UserError(f"{source.strip() or '(empty)'}: not a folder")  # at most 4,096 bytes, checked above
        if dataset.strip():
            parse_task(dataset.strip())
    except UserError as exc:
        st.error(str(exc))
        return

    def work(on_progress, should_stop):
        from core.zoo.public import import_public_zoo  # lazy: the engine loads in the background

        report = import_public_zoo(source.strip(), target, dataset.strip() or None, on_progress)
        return {"workspace": target.root.name, "models": report.models, "problems": report.problems}

    started(start(target, "zoo", f"Importing {source.strip()}", work), target)


def started(job, target: Workspace) -> None:
    """Remember the job's workspace and rerun at once: the job's panel is drawn above the forms, so without the
    rerun the page would show nothing until the user next touched it."""
    if job:
        st.session_state[keys.ZOO_TARGET] = target.root.name
        st.rerun()


def new_attempt() -> None:
    """A submitted form is a new attempt: the last zoo job's outcome (ready, failed or stopped) goes, so that it
    never stands beside this attempt's own message. A job still running stays in view."""
    name = st.session_state.get(keys.ZOO_TARGET)
    job = name and session.registry().get(session.key(Workspace(session.workspaces_root() / name)), "zoo")
    if not (job and job.running):
        outcome.empty()
        st.session_state.pop(keys.ZOO_TARGET, None)


def show_new_zoo_job() -> None:
    name = st.session_state.get(keys.ZOO_TARGET)
    if not name:
        return
    target = Workspace(session.workspaces_root() / name)
    job, running = watch(target, "zoo")
    if job and not running and job.status == "done":
        result = job.result if isinstance(job.result, dict) else {"workspace": job.result, "problems": []}
        st.success(f"Zoo ready in workspace `{name}` ({format(job.elapsed(), '.0f')} s).")
        for problem in result.get("problems", []):
            st.warning(f"Skipped: {problem}")
        if st.button(f"Open workspace {name}", type="primary"):
            session.open_workspace(name)
            st.session_state.pop(keys.ZOO_TARGET)
            st.rerun()


if workspace is not None:
    show_zoo(workspace)
else:
    st.info("No workspace yet: generate or import a zoo below.")

st.header("New zoo")
outcome = st.empty()  # the last zoo job's panel, cleared by a new attempt (`new_attempt`)
with outcome.container():
    show_new_zoo_job()
generate_tab, import_tab = st.tabs(["Generate", "Import from a folder"])
with generate_tab:
    generate_form()
with import_tab:
    import_form()
