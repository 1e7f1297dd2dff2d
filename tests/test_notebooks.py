"""The teaching notebooks run top to bottom in a real kernel, with and without an account."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from clarifai_magic.testing import OfflineServer

from .conftest import TEST_PAT

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def execute(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> nbformat.NotebookNode:
    for name in ("CLARIFAI_PAT", "CLARIFAI_API_BASE", "CLARIFAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLARIFAI_MAGIC_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"cell failed: {cell.source}\n{output}"
            parts.append(output.get("text", ""))
            parts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(parts)


def test_there_are_teaching_notebooks() -> None:
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_an_account(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = outputs_text(execute(path, tmp_path, monkeypatch, {}))
    assert "Offline mode on" in text and "SCRIPTED" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_with_an_account(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: OfflineServer
) -> None:
    text = outputs_text(
        execute(
            path,
            tmp_path,
            monkeypatch,
            {"CLARIFAI_PAT": TEST_PAT, "CLARIFAI_API_BASE": server.api_base},
        )
    )
    assert "Using Clarifai with the PAT from CLARIFAI_PAT" in text
    assert server.chat_requests, "the questions went to the (stand-in) Clarifai endpoint"
    assert TEST_PAT not in text
