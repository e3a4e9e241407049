"""Streamlit entry point: `streamlit run app.py`. Pages only wire core/ functions to widgets."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.errors import UserError
from core.workspace import Workspace
from core.zoo import load_zoo, zoo_info

DEFAULT_WORKSPACE = Path(__file__).parent / "workspaces" / "digits"

st.set_page_config(page_title="Hyper-representation workbench", layout="wide")
st.title("Hyper-representation workbench")
st.caption("Learn from populations of trained networks (model zoos) and generate new, working ones.")

workspace = Workspace(DEFAULT_WORKSPACE)
if not workspace.exists():
    st.info(
        f"No zoo yet in `{DEFAULT_WORKSPACE.relative_to(Path(__file__).parent)}`. Make one with\n\n"
        f"`.venv/bin/python -m core zoo generate --workspace {DEFAULT_WORKSPACE.relative_to(Path(__file__).parent)}`"
    )
else:
    try:
        info = zoo_info(load_zoo(workspace))
    except UserError as exc:
        st.error(str(exc))
    else:
        cols = st.columns(4)
        cols[0].metric("Models", info["models"])
        cols[1].metric("Checkpoints", info["checkpoints"])
        cols[2].metric("Parameters per model", info["n_params"])
        cols[3].metric("Mean test accuracy", f"{info['test_acc']['mean']:.1%}")
