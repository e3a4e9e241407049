"""The app starts and shows a zoo summary, or the command that makes one."""

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def test_app_starts_without_a_workspace(tmp_path, monkeypatch):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert at.title[0].value == "Hyper-representation workbench"


def test_app_summarises_the_default_workspace(tiny_zoo_workspace, tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(ROOT / "app.py", app_dir / "app.py")
    shutil.copytree(tiny_zoo_workspace.root, app_dir / "workspaces" / "digits")
    at = AppTest.from_file(str(app_dir / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert [m.value for m in at.metric][:2] == ["6", "18"]
