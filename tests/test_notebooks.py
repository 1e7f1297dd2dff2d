"""The teaching notebooks run top to bottom in a real kernel, with and without an account, and
Binder's requirements give a JupyterLab that draws the widgets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from clarifai_magic.testing import OfflineServer

from .conftest import TEST_PAT

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def execute(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> tuple[nbformat.NotebookNode, Path]:
    """Runs a copy of the notebook in a folder of its own (so the files it writes, such as an
    exported app.py, land there and not in the repository); returns it and that folder."""
    for name in ("CLARIFAI_PAT", "CLARIFAI_API_BASE", "CLARIFAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    copy = folder / path.name
    shutil.copyfile(path, copy)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLARIFAI_MAGIC_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("JPY_SESSION_NAME", str(copy))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return nb, folder


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"cell failed: {cell.source}\n{output}"
            parts.append(output.get("text", ""))
            parts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(parts)


def shell_runs(nb: nbformat.NotebookNode) -> list[str]:
    """What each `!command` line of the notebook printed (an exported program's run)."""
    return [
        "".join(o.get("text", "") for o in cell.outputs)
        for cell in nb.cells
        if cell.cell_type == "code" and re.search(r"^!", cell.source, re.MULTILINE)
    ]


def files_holding(folder: Path, secret: str) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and secret in p.read_text("utf-8")]


def test_there_are_teaching_notebooks() -> None:
    assert len(NOTEBOOKS) >= 5
    assert [p.name[:3] for p in NOTEBOOKS] == [f"{i:02d}-" for i in range(1, len(NOTEBOOKS) + 1)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_says_what_you_learn_and_how_long(path: Path) -> None:
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    assert "You will learn" in first.source
    assert re.search(r"\*\*Time:\*\* about \d+ minutes", first.source)
    assert "offline auto" in first.source and "SCRIPTED" in first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_links_lead_to_notebooks_of_the_series(path: Path) -> None:
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    links = re.findall(r"\]\(([^)]+\.ipynb)\)", text)
    for link in links:
        assert (path.parent / link).is_file(), f"{path.name} links to a missing {link}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_saved_without_outputs(path: Path) -> None:
    """What git holds is the lesson, not one run of it: no outputs, no execution counts."""
    raw = json.loads(path.read_text("utf-8"))
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name}: outputs saved in {cell['source']}"
            assert cell["execution_count"] is None, f"{path.name}: {cell['source']}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_an_account(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb, _ = execute(path, tmp_path, monkeypatch, {})
    text = outputs_text(nb)
    assert "Offline mode on" in text and "SCRIPTED" in text
    assert "Traceback" not in text
    for printed in shell_runs(nb):
        # An exported program, run against the offline server, streams its scripted answer.
        assert "Offline reply" in printed, printed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_an_account(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: OfflineServer
) -> None:
    nb, folder = execute(
        path,
        tmp_path,
        monkeypatch,
        {"CLARIFAI_PAT": TEST_PAT, "CLARIFAI_API_BASE": server.api_base},
    )
    text = outputs_text(nb)
    assert "Using Clarifai with the PAT from CLARIFAI_PAT" in text
    assert server.chat_requests, "the questions went to the (stand-in) Clarifai endpoint"
    assert TEST_PAT not in text
    assert not files_holding(folder, TEST_PAT), "the PAT was written into a file"
    for printed in shell_runs(nb):
        assert "Offline reply" in printed, printed  # the stand-in account's answer
        assert TEST_PAT not in printed


# Installing JupyterLab into a fresh venv takes about a minute and a half on 2 cores.
@pytest.mark.timeout(420)
def test_binder_requirements_give_jupyterlab_with_the_widget_extension(tmp_path: Path) -> None:
    """What Binder does: `pip install -r binder/requirements.txt` from the repository's root,
    here on the local Python (runtime.txt names the Python Binder uses)."""
    assert re.fullmatch(r"python-3\.\d+", (ROOT / "binder/runtime.txt").read_text().strip())
    # A copy of what the install reads, so `-e .` leaves the shared checkout untouched.
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, repo / name)
    for name in ("clarifai_magic", "binder"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
    install = subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [bin_dir / "jupyter", "labextension", "list"], capture_output=True, text=True
    )
    extensions = listed.stdout + listed.stderr
    # ipywidgets' (the panel's controls) and anywidget's (its message log), both enabled.
    for name in ("@jupyter-widgets/jupyterlab-manager", "anywidget"):
        assert re.search(rf"{re.escape(name)} v\S+ \S*enabled", extensions), extensions
    loads = subprocess.run(
        [
            bin_dir / "python",
            "-c",
            "import clarifai_magic.chat_log, ipywidgets, pandas, PIL, numpy",
        ],
        capture_output=True,
        text=True,
    )
    assert loads.returncode == 0, loads.stderr
