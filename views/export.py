"""Export: a samples run as a zip bundle (weight files, a standalone model.py, a model card)."""

from __future__ import annotations

import json
import tempfile
import zipfile
from io import BytesIO
from pathlib import Path

import streamlit as st

from core.errors import UserError
from core.store.workspace import Workspace
from ui import keys, session
from ui.widgets import page_start

workspace = page_start(
    "Export",
    "Take generated models home: one weight file per model (as generated and after fine-tuning), a plain-PyTorch "
    "model.py that loads them, and a model card with their provenance and accuracy.",
)


@st.cache_data(max_entries=16, show_spinner="Building the bundle...")
def bundle(root: str, samples_run: str, fmt: str, stamp: int) -> bytes:
    from core.gen.export import export_samples  # lazy: the engine loads in the background

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bundle.zip"
        export_samples(Workspace(root), samples_run, fmt, out)
        return out.read_bytes()


runs = session.samples_runs(workspace)
if not runs:
    st.info("No generated models yet in this workspace: make some on the Generate page.")
    st.stop()
names = [r.name for r in runs]
wanted = st.session_state.get(session.state(workspace, keys.EXPORT_RUN))
name = st.selectbox(
    "Samples run",
    names,
    index=names.index(wanted) if wanted in names else 0,
    format_func=lambda n: next(
        f"{n}: {r.n} models by {r.method} on {r.dataset} ({r.created})" for r in runs if r.name == n
    ),
)
fmt = st.radio(
    "Format", ("safetensors", "pt"), horizontal=True, help="pt: plain torch state dicts (load with weights_only=True)"
)
result_path = next(r for r in runs if r.name == name).result_path
try:
    data = bundle(str(workspace.root), name, fmt, result_path.stat().st_mtime_ns)
except (UserError, OSError) as exc:
    st.error(str(exc))
    st.stop()

st.download_button(
    f"Download {name}-{fmt}.zip ({len(data) / 1e3:.0f} kB)",
    data=data,
    file_name=f"{name}-{fmt}.zip",
    mime="application/zip",
    type="primary",
    icon=":material/download:",
)
with zipfile.ZipFile(BytesIO(data)) as archive:
    card = json.loads(archive.read("card.json"))
    members = archive.namelist()
st.subheader("Model card")
st.json(card, expanded=1)
st.caption(f"{len(members)} files: " + ", ".join(members[:6]) + (" ..." if len(members) > 6 else ""))
