"""Streamlit entry point: `streamlit run app.py`.

Makes sure the default digits workspace exists (unpacked from assets/, or built with progress when the pack is
missing), puts the workspace picker in the sidebar and hands over to the pages. Pages only wire core/
functions to widgets.
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from core.default import ASSET, NAME, build_default, unpack_default
from core.errors import UserError
from core.runtime import sleep_while_waiting, tune_cpu_allocator
from core.store.workspace import Workspace
from ui import keys, session
from ui.shutdown import exit_promptly_on_stop
from ui.widgets import start, watch

# The icon is a file of ours: a ":material/..." page icon makes the browser fetch it from fonts.gstatic.com, which
# fails offline (the navigation's material icons come from the font Streamlit bundles, so they stay).
ICON = Path(__file__).resolve().parent / "assets" / "icon.png"
st.set_page_config(page_title="Hyper-representation workbench", page_icon=str(ICON), layout="wide")
sleep_while_waiting()  # before the engine (torch) loads, in the background
tune_cpu_allocator()
exit_promptly_on_stop()  # a stop while a job runs in torch would otherwise abort the process (ui/shutdown.py)
session.warm_up()


@st.cache_resource
def unpack_lock() -> threading.Lock:
    """One unpack at a time in this server: tabs opened together at the first start must not share a build folder."""
    return threading.Lock()


def ensure_default_workspace() -> None:
    """Unpack the shipped default workspace, or build it in the background and show its progress."""
    root = session.workspaces_root()
    default = Workspace(root / NAME)
    if default.exists():
        return
    if ASSET.exists():
        with st.spinner("Unpacking the default digits workspace..."), unpack_lock():
            try:
                if not default.exists():  # another tab may have unpacked it while this one waited
                    unpack_default(default)
            except UserError as exc:
                st.error(f"Could not unpack the default workspace: {exc}")
                st.stop()
        return
    st.title("Hyper-representation workbench")
    st.write(
        "Building the default workspace: a zoo of 256 small CNNs on digits, the autoencoder trained on it, "
        "and its map. This happens once (a few minutes on two CPU cores); later starts load it from disk."
    )
    job = session.registry().get(session.key(default), "bootstrap")
    if job is None or (not job.running and st.button("Try again (resumes where it stopped)")):
        start(default, "bootstrap", "Building the default workspace", _build(default))
    watch(default, "bootstrap")
    st.stop()


def _build(default: Workspace):
    def work(on_progress, should_stop):
        build_default(default, session.device(), on_progress, should_stop)

    return work


def workspace_picker() -> None:
    """The sidebar's workspace picker over the session's workspace (keys.WORKSPACE), which the URL carries too.

    The widget only shows and changes the choice: its own state may be dropped by Streamlit on a page change, so
    it is set from the choice on every run, and its change callback writes the choice."""
    names = session.workspace_names(session.workspaces_root())
    asked = st.query_params.get(keys.WORKSPACE_PARAM)
    session.open_workspace(session.pick_workspace(names, asked, st.session_state.get(keys.WORKSPACE)))
    st.session_state[keys.WORKSPACE_PICKER] = st.session_state[keys.WORKSPACE]
    with st.sidebar:
        st.selectbox(
            "Workspace",
            names,
            key=keys.WORKSPACE_PICKER,
            on_change=lambda: session.open_workspace(st.session_state[keys.WORKSPACE_PICKER]),
            help=f"Folders under {session.workspaces_root()}; make a new one on the Zoo page.",
        )
        device = session.warm_up().get("device")
        st.caption(f"Computing on **{device}**." if device else "Loading the engine...")
        workspace = session.current()
        if workspace:
            session.precompute_zoo_errors(workspace)
        busy = workspace and session.registry().running(session.key(workspace))
        if busy:
            st.info(f"Running: {busy.label}")


ensure_default_workspace()
workspace_picker()
navigation = st.navigation(
    [
        st.Page("views/zoo.py", title="Zoo", icon=":material/grid_view:"),
        st.Page("views/autoencoder.py", title="Autoencoder", icon=":material/model_training:"),
        st.Page("views/explore.py", title="Explore", icon=":material/scatter_plot:", default=True),
        st.Page("views/generate.py", title="Generate", icon=":material/auto_awesome:"),
        st.Page("views/export.py", title="Export", icon=":material/download:"),
    ]
)
navigation.run()
