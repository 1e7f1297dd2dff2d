"""End to end in a real ipykernel (jupyter_client / nbclient) against the offline server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from clarifai_magic.testing import OfflineServer, text

from .conftest import TEST_PAT
from .kernel_util import Kernel


def answer_displays(run: Any, *types: str) -> list[dict[str, Any]]:
    """The run's display messages of ``types`` (default both), without the page script's: shown
    once per kernel with the first answer, then emptied, it is not part of the answer's stream."""
    script = {
        m["content"]["transient"]["display_id"]
        for m in run.of_type("display_data")
        if "application/javascript" in m["content"]["data"]
    }
    return [
        m
        for m in run.of_type(*(types or ("display_data", "update_display_data")))
        if m["content"].get("transient", {}).get("display_id") not in script
    ]


def test_stream_in_a_real_kernel_is_coalesced_and_ends_as_one_output(
    kernel: Kernel, server: OfflineServer
) -> None:
    answer = "Columns: **region**, units, revenue. " * 40
    server.enqueue(text(answer, chunk_size=3, delay=0.002))
    assert kernel.run("%load_ext clarifai_magic").error is None
    run = kernel.run("%%clarifai\nExplain the columns.")
    assert run.reply["content"]["status"] == "ok"
    messages = answer_displays(run)
    chunks = len(answer) // 3
    assert len(messages) < chunks / 5, "updates must be coalesced, not one per chunk"
    # Sealed pieces of its long line went to outputs of their own while it streamed; at the end
    # one output holds the whole answer and every other one is left empty, so the notebook
    # keeps the answer once.
    last: dict[str, dict[str, Any]] = {}
    for m in messages:
        last[m["content"]["transient"]["display_id"]] = m["content"]["data"]
    shown = [data for data in last.values() if data]
    assert len(shown) == 1, [sorted(d) for d in last.values()]
    assert shown[0]["text/markdown"].startswith(answer.rstrip())
    assert "gpt-4o" in shown[0]["text/markdown"]


def test_kernel_interrupt_stops_the_stream_and_keeps_the_partial_answer(
    kernel_env: dict[str, str],
) -> None:
    # A server of its own, so its open connections are this kernel's alone.
    with OfflineServer() as server:
        kernel = Kernel({**kernel_env, "CLARIFAI_API_BASE": server.api_base})
        try:
            server.enqueue(text("tick " * 400, chunk_size=5, delay=0.05))  # ~20 s unless stopped
            kernel.run("%load_ext clarifai_magic")
            msg_id = kernel.start("%%clarifai\nCount slowly.")
            kernel.wait_for(
                msg_id,
                lambda m: m["msg_type"] == "update_display_data" and "tick" in str(m["content"]),
            )
            interrupted_at = time.monotonic()
            kernel.km.interrupt_kernel()
            run = kernel.collect(msg_id, timeout=30)
            took = time.monotonic() - interrupted_at
            assert took < 5, f"interrupt took {took:.1f}s"  # generous: the machine is shared
            markdown = run.last_markdown
            assert "Interrupted" in markdown and markdown.startswith("tick")
            # The cell fails (so a Run All stops here) with one line, not a traceback.
            assert run.error["traceback"] == ["Interrupted: the partial answer above is kept."]
            # The HTTP response was closed: the server saw the connection go.
            deadline = time.monotonic() + 5
            while server.open_connections and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.open_connections == 0
        finally:
            kernel.shutdown()


def test_format_code_sends_a_set_next_input_payload(kernel: Kernel, server: OfflineServer) -> None:
    server.enqueue(text("```python\nimport math\nprint(math.pi)\n```"))
    kernel.run("%load_ext clarifai_magic")
    run = kernel.run("%%clarifai -f code\nPrint pi")
    payloads = run.reply["content"]["payload"]
    assert {
        "source": "set_next_input",
        "text": "import math\nprint(math.pi)",
        "replace": False,
    } in payloads


def long_answer(blocks: int) -> str:
    """Markdown of many blocks, with code and blank lines inside fences, as long answers are."""
    parts = []
    for n in range(blocks):
        parts.append(f"## Step {n}\n\nThis step explains item {n} with `code` and **bold** words.")
        parts.append(f"```python\ndef step_{n}(x):\n\n    return x * {n}\n```")
        parts.append(f"- first point of {n}\n- second point\n\n| a | b |\n|---|---|\n| {n} | 1 |")
    return "\n\n".join(parts)


def test_a_long_answer_streams_its_bytes_about_once(kernel: Kernel, server: OfflineServer) -> None:
    answer = long_answer(40)
    server.enqueue(text(answer, chunk_size=4, delay=0.002))
    assert kernel.run("%load_ext clarifai_magic").error is None
    run = kernel.run("%%clarifai --no-history\nExplain every step.")
    assert run.reply["content"]["status"] == "ok"
    sent = sum(
        len(json.dumps(m["content"]["data"], ensure_ascii=False).encode())
        for m in answer_displays(run)
    )
    assert sent <= 3 * len(answer.encode()), f"{sent / len(answer.encode()):.2f}x the answer"
    created = answer_displays(run, "display_data")
    assert len(created) > 1, "finished blocks go to outputs of their own, sent once"
    # At the end the last output holds the whole answer and the others are emptied, all of them
    # by one message (they share a display id): the answer's end is not a burst of updates.
    last: dict[str, dict[str, Any]] = {}
    for message in answer_displays(run):
        last[message["content"]["transient"]["display_id"]] = message["content"]["data"]
    tail = created[-1]["content"]["transient"]["display_id"]
    assert answer in last.pop(tail)["text/markdown"]
    assert last and all(data == {} for data in last.values())
    after_final = answer_displays(run)[-2:]
    assert after_final[0]["content"]["transient"]["display_id"] == tail
    assert after_final[1]["content"]["data"] == {}


def test_saved_notebook_holds_the_final_answer_as_markdown(
    server: OfflineServer,
    kernel_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in kernel_env.items():
        monkeypatch.setenv(name, value)
    answer = "## Summary\n\nThe **mean** is 3.5 and the median is 3.\n\n" + long_answer(12)
    server.enqueue(text(answer, chunk_size=4, delay=0.001, reasoning="Compute both."))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext clarifai_magic"),
        nbformat.v4.new_code_cell("values = [1, 2, 3, 4, 5, 6]"),
        nbformat.v4.new_code_cell("%%clarifai\nSummarise {values}."),
    ]
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    outputs: list[Any] = saved.cells[2].outputs
    assert all(o.output_type == "display_data" for o in outputs)
    # One Markdown output holds the whole answer; the outputs that held its blocks while it
    # streamed are left empty (every front end shows nothing for them).
    shown = [o for o in outputs if o.data]
    assert len(shown) == 1 and outputs[-1] is shown[0]
    markdown = outputs[-1].data["text/markdown"]
    assert answer in markdown
    assert "<summary>Thinking</summary>" in markdown and "Compute both." in markdown
    assert TEST_PAT not in path.read_text()
    assert (
        server.chat_requests[-1].json["messages"][-1]["content"] == "Summarise [1, 2, 3, 4, 5, 6]."
    )


def test_a_tool_without_type_hints_fails_its_cell_with_one_line(kernel: Kernel) -> None:
    run = kernel.run("from clarifai_magic import tool\n@tool\ndef double(x):\n    return 2 * x")
    traceback = run.error["traceback"]
    assert len(traceback) == 1 and traceback[0].startswith("ToolDeclarationError: ")
    assert "'x'" in traceback[0] and "type hint" in traceback[0]


def test_chat_with_an_unknown_model_fails_its_cell_with_one_paragraph(kernel: Kernel) -> None:
    run = kernel.run("import clarifai_magic\nclarifai_magic.Chat(model='no/such/thing/at/all')")
    traceback = run.error["traceback"]
    assert len(traceback) == 1 and "Traceback" not in traceback[0]
    assert "no/such/thing/at/all" in traceback[0]
