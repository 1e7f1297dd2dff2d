"""The chat panel with real ipywidgets objects, against the offline server (no browser here;
tests/browser drives it in JupyterLab)."""

from __future__ import annotations

import time
from typing import Any

from clarifai_magic.testing import OfflineServer, text, tool_calls
from clarifai_magic.widget import ChatPanel

from .test_magic import run


def markdown_of(bubble: Any) -> str:
    """A message's Markdown, without its "You"/"Model" label."""
    return bubble.outputs[0]["data"]["text/markdown"].split("\n\n", 1)[1]


def test_a_question_streams_into_the_panel_and_joins_the_conversation(
    shell: Any, server: OfflineServer
) -> None:
    server.enqueue(text("Earlier answer."))
    run(shell, "%%clarifai\nEarlier question")
    session = shell._clarifai_magics.session
    panel = ChatPanel(session)
    # The cells' conversation is there already.
    assert [markdown_of(b) for b in panel.messages.children] == [
        "Earlier question",
        "Earlier answer.",
    ]
    server.enqueue(text("The **panel** answer.", chunk_size=2))
    panel.prompt.value = "And now?"
    panel.send_button.click()
    panel.worker.join(timeout=30)
    assert panel.prompt.value == ""
    assert markdown_of(panel.messages.children[-2]).endswith("And now?")
    answer = markdown_of(panel.messages.children[-1])
    assert answer.startswith("The **panel** answer.") and "gpt-4o" in answer
    assert [m["content"] for m in server.chat_requests[-1].json["messages"]] == [
        "Earlier question",
        "Earlier answer.",
        "And now?",
    ]
    assert not panel.send_button.disabled and panel.stop_button.disabled


def test_stop_ends_the_stream_and_keeps_the_partial_answer(
    shell: Any, server: OfflineServer
) -> None:
    panel = ChatPanel(shell._clarifai_magics.session, chat="panel-stop")
    server.enqueue(text("tick " * 400, chunk_size=5, delay=0.05))
    worker = panel.send("Count slowly")
    deadline = time.monotonic() + 20
    while "tick" not in markdown_of(panel.messages.children[-1]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not panel.stop_button.disabled
    panel.stop_button.click()
    worker.join(timeout=5)
    assert not worker.is_alive()
    answer = markdown_of(panel.messages.children[-1])
    assert answer.startswith("tick") and "Interrupted" in answer


def test_confirm_tools_ask_inside_the_panel(shell: Any, server: OfflineServer) -> None:
    run(
        shell,
        "from clarifai_magic import tool\n"
        "@tool(confirm=True)\n"
        "def wipe(table: str) -> str:\n"
        '    """Delete a table."""\n'
        "    return f'wiped {table}'\n",
    )
    panel = ChatPanel(
        shell._clarifai_magics.session,
        chat="panel-tools",
        tools=lambda: shell._clarifai_magics.session.offered_tools("wipe", shell.user_ns),
    )
    server.enqueue(tool_calls([("call_1", "wipe", '{"table": "t"}')]), text("Wiped."))
    worker = panel.send("Wipe t")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
        hasattr(c, "children") and len(c.children) == 3 for c in panel.messages.children
    ):
        time.sleep(0.05)
    [question] = [c for c in panel.messages.children if hasattr(c, "children")]
    label, run_button, _skip = question.children
    assert "wipe" in label.value
    run_button.click()
    worker.join(timeout=20)
    assert server.chat_requests[-1].json["messages"][-1]["content"] == "wiped t"
    answers = [c for c in panel.messages.children if "clarifai-chat-assistant" in c._dom_classes]
    assert markdown_of(answers[-1]).count("Wiped.") == 1
    assert "Approved." in label.value


def test_no_pat_is_said_in_the_panel(shell: Any, server: OfflineServer, monkeypatch: Any) -> None:
    monkeypatch.delenv("CLARIFAI_PAT")
    panel = ChatPanel(shell._clarifai_magics.session, chat="nopat")
    panel.send("Hello").join(timeout=10)
    assert "CLARIFAI_PAT" in markdown_of(panel.messages.children[-1])
    assert not server.chat_requests


def test_chat_command_shows_a_panel(shell: Any, server: OfflineServer) -> None:
    out = run(shell, "%clarifai chat side -m gpt-4o")
    assert out.result.success, out.stdout + out.stderr
    assert any("application/vnd.jupyter.widget-view+json" in o.data for o in out.outputs)
    out = run(shell, "%clarifai chat side -m nonsense-model")
    assert not out.result.success and "Unknown model" in out.stdout


def test_the_panel_escapes_stored_and_new_messages(shell: Any, server: OfflineServer) -> None:
    hostile = "<img src=x onerror=alert(1)> and `<b>`"
    server.enqueue(text(f"Stored {hostile}"))
    run(shell, "%%clarifai --chat panel-hostile\nFirst")
    panel = ChatPanel(shell._clarifai_magics.session, chat="panel-hostile")
    stored = markdown_of(panel.messages.children[-1])
    assert stored == "Stored &lt;img src=x onerror=alert(1)> and `<b>`"
    server.enqueue(text(f"New {hostile}", chunk_size=3))
    panel.send(f"Ask {hostile}").join(timeout=30)
    question, answer = (markdown_of(b) for b in panel.messages.children[-2:])
    assert question == "Ask &lt;img src=x onerror=alert(1)> and `<b>`"
    assert answer.startswith("New &lt;img src=x onerror=alert(1)> and `<b>`")


def test_a_long_answer_is_clipped_in_the_panel_with_a_notice(
    shell: Any, server: OfflineServer
) -> None:
    panel = ChatPanel(shell._clarifai_magics.session, chat="panel-long", max_display_chars=5_000)
    server.enqueue(text("word " * 4_000, chunks=20))
    panel.send("Talk").join(timeout=30)
    shown = panel.messages.children[-1].outputs[0]["data"]["text/markdown"]
    assert len(shown) <= 5_000
    assert shown.startswith("**Model**\n\nword word")
    assert "too long to show in full here (20,000 characters" in shown
    # The conversation keeps all of it.
    session = shell._clarifai_magics.session
    stored = session.store.messages(session.conversation("panel-long", create=False))
    assert len(stored[-1].message["content"]) >= 19_999
