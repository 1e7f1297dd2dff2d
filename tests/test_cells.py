"""The notebook is the conversation: a real kernel driven the way JupyterLab drives it.

JupyterLab sends every execute request with the cell's id (``cellId`` in its metadata) and the
ids of cells deleted since (``deletedCells``); ``KernelClient.execute`` sends neither, so
:func:`execute` builds the request itself. nbclient and papermill send no cell ids and, unless
their caller sets ``JPY_SESSION_NAME``, nothing that says which notebook runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from clarifai_magic.store import Store, StoredMessage
from clarifai_magic.testing import OfflineServer, http_error

from .conftest import TEST_PAT
from .kernel_util import Execution, Kernel

NOTEBOOK = {
    "setup": "%load_ext clarifai_magic",
    "intro": "%%clarifai\nMy name is Ada and I count in threes.",
    "ask": "%%clarifai\nWhat is my name?",
    "more": "%%clarifai\nCount to nine for me.",
}
REPLACED = "Replaced this cell's earlier exchange in 'main'."


def execute(
    kernel: Kernel, code: str, cell_id: str | None = None, deleted: list[str] | None = None
) -> Execution:
    """Run ``code`` as JupyterLab would run the cell ``cell_id``; wait until it is done."""
    metadata: dict[str, Any] = {}
    if cell_id is not None:
        metadata["cellId"] = cell_id
    if deleted:
        metadata["deletedCells"] = deleted
    content = {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    msg = kernel.kc.session.msg("execute_request", content, metadata=metadata)
    kernel.kc.shell_channel.send(msg)
    run = kernel.collect(msg["header"]["msg_id"])
    assert run.error is None, run.error
    return run


def run_all(kernel: Kernel) -> dict[str, Execution]:
    return {cell_id: execute(kernel, code, cell_id) for cell_id, code in NOTEBOOK.items()}


def stored(kernel_env: dict[str, str]) -> list[StoredMessage]:
    with Store(Path(kernel_env["CLARIFAI_MAGIC_HOME"]) / "conversations.db") as store:
        conv = store.conversation(kernel_env["JPY_SESSION_NAME"], "main", create=False)
        return store.messages(conv) if conv else []


def contents(messages: list[Any]) -> list[str]:
    return [
        (m.message if isinstance(m, StoredMessage) else m)["content"].split("\n")[0]
        for m in messages
    ]


def sent(server: OfflineServer) -> list[list[dict[str, Any]]]:
    return [request.json["messages"] for request in server.chat_requests]


def test_restart_and_run_all_leaves_the_conversation_of_one_run(
    server: OfflineServer, kernel: Kernel, kernel_env: dict[str, str]
) -> None:
    first = run_all(kernel)
    first_requests = sent(server)
    first_store = [m.message for m in stored(kernel_env)]
    assert len(first_requests) == 3 and len(first_store) == 6
    assert not any(REPLACED in run.last_markdown for run in list(first.values())[1:])

    for _ in range(2):  # Restart & Run All, twice
        server.clear()
        kernel.restart()
        again = run_all(kernel)
        assert sent(server) == first_requests  # same count, same content, same tokens
        assert [m.message for m in stored(kernel_env)] == first_store
        for cell_id in ("intro", "ask", "more"):
            assert REPLACED in again[cell_id].last_markdown


def test_rerunning_a_cell_replaces_its_exchange_in_place(
    server: OfflineServer, kernel: Kernel, kernel_env: dict[str, str]
) -> None:
    run_all(kernel)
    server.clear()
    edited = execute(kernel, "%%clarifai\nWhat is my name, once more?", "ask")
    # Only what stands before the cell's exchange went with it, not the later cell's.
    assert contents(sent(server)[0]) == [
        "My name is Ada and I count in threes.",
        "**Offline reply** from `gpt-4o`. You said:",
        "What is my name, once more?",
    ]
    assert REPLACED in edited.last_markdown
    questions = [m.message["content"] for m in stored(kernel_env) if m.message["role"] == "user"]
    assert questions == [
        "My name is Ada and I count in threes.",
        "What is my name, once more?",
        "Count to nine for me.",
    ]
    assert len(stored(kernel_env)) == 6


def test_a_failed_rerun_keeps_the_earlier_exchange(
    server: OfflineServer, kernel: Kernel, kernel_env: dict[str, str]
) -> None:
    run_all(kernel)
    before = [m.message for m in stored(kernel_env)]
    server.enqueue(http_error(400, message="bad request"))
    msg_content = {"code": "%%clarifai\nWhat is my name?", "silent": False}
    msg = kernel.kc.session.msg("execute_request", msg_content, metadata={"cellId": "ask"})
    kernel.kc.shell_channel.send(msg)
    failed = kernel.collect(msg["header"]["msg_id"])
    assert failed.error is not None  # the cell fails, with its explanation above
    assert REPLACED not in failed.last_markdown
    assert [m.message for m in stored(kernel_env)] == before


def test_a_deleted_cells_exchange_is_no_longer_sent(
    server: OfflineServer, kernel: Kernel, kernel_env: dict[str, str]
) -> None:
    run_all(kernel)
    # JupyterLab says which cells went with the next execution, whatever that cell is.
    execute(kernel, "x = 1", "after", deleted=["ask"])
    server.clear()
    execute(kernel, "%%clarifai\nWhat did I ask you to do?", "last")
    assert [m for m in contents(sent(server)[0]) if not m.startswith("**")] == [
        "My name is Ada and I count in threes.",
        "Count to nine for me.",
        "What did I ask you to do?",
    ]
    kept = stored(kernel_env)
    assert [m.hidden for m in kept if m.message["content"] == "What is my name?"] == [True]
    history = execute(kernel, "%clarifai history", "show")
    assert "What is my name?" in history.last_markdown  # kept in the history


def test_two_questions_of_one_cell_are_both_kept(
    server: OfflineServer, kernel: Kernel, kernel_env: dict[str, str]
) -> None:
    execute(kernel, NOTEBOOK["setup"], "setup")
    loop = 'for q in ["red", "blue"]:\n    %clarifai -- Name a {q} fruit.'
    for _ in range(2):  # and a later execution of the cell replaces both
        server.clear()
        execute(kernel, loop, "loop")
        assert [contents(m)[::2] for m in sent(server)] == [
            ["Name a red fruit."],
            ["Name a red fruit.", "Name a blue fruit."],
        ]
        questions = [m.message["content"] for m in stored(kernel_env)][::2]
        assert questions == ["Name a red fruit.", "Name a blue fruit."]


def test_a_cell_without_an_id_appends(
    server: OfflineServer, kernel: Kernel, kernel_env: dict[str, str]
) -> None:
    execute(kernel, NOTEBOOK["setup"])
    for _ in range(2):
        execute(kernel, "%%clarifai\nOne more thing.")
    execute(kernel, NOTEBOOK["intro"], "intro")
    assert [m.message["content"] for m in stored(kernel_env)][::2] == [
        "One more thing.",
        "One more thing.",
        "My name is Ada and I count in threes.",
    ]
    assert len(sent(server)[-1]) == 5


def _notebook(path: Path, question: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext clarifai_magic"),
        nbformat.v4.new_code_cell(f"%%clarifai\n{question}"),
    ]
    nbformat.write(nb, path)


def test_unidentified_notebooks_in_one_folder_do_not_share_history(
    server: OfflineServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("JPY_SESSION_NAME", "CLARIFAI_MODEL", "CLARIFAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLARIFAI_MAGIC_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("CLARIFAI_PAT", TEST_PAT)
    monkeypatch.setenv("CLARIFAI_API_BASE", server.api_base)
    outputs = []
    for name in ("first", "second"):
        path = tmp_path / f"{name}.ipynb"
        _notebook(path, f"This is the {name} notebook.")
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
        outputs.append(str(nb.cells[1].outputs))
    assert [contents(m) for m in sent(server)] == [
        ["This is the first notebook."],
        ["This is the second notebook."],
    ]
    assert "kept for this kernel only" in outputs[1]
    assert "ClarifaiMagics.notebook" in outputs[1]
