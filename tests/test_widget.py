"""The chat panel with real ipywidgets objects, against the offline server (no browser here;
tests/browser drives it in JupyterLab)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from clarifai_magic.chat_log import LogEntry
from clarifai_magic.page_script import SEND_MARK
from clarifai_magic.testing import OfflineServer, http_error, text, tool_calls
from clarifai_magic.widget import ChatPanel

from .test_magic import run


def messages(panel: ChatPanel) -> list[LogEntry]:
    """The messages in the panel's log, as the page is sent them."""
    return list(panel.log.entries.values())


def shown(entry: LogEntry) -> str:
    """A message's Markdown as drawn: its sealed blocks and tail joined."""
    return entry.markdown()


def markdown_of(entry: LogEntry) -> str:
    """A message's Markdown, without its "You"/"Model" label."""
    return shown(entry).split("\n\n", 1)[1]


def test_a_question_streams_into_the_panel_and_joins_the_conversation(
    shell: Any, server: OfflineServer
) -> None:
    server.enqueue(text("Earlier answer."))
    run(shell, "%%clarifai\nEarlier question")
    session = shell._clarifai_magics.session
    panel = ChatPanel(session)
    # The cells' conversation is there already.
    assert [markdown_of(b) for b in messages(panel)] == [
        "Earlier question",
        "Earlier answer.",
    ]
    server.enqueue(text("The **panel** answer.", chunk_size=2))
    panel.prompt.value = "And now?"
    panel.send_button.click()
    panel.worker.join(timeout=30)
    assert panel.prompt.value == ""
    assert markdown_of(messages(panel)[-2]).endswith("And now?")
    answer = markdown_of(messages(panel)[-1])
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
    while "tick" not in markdown_of(messages(panel)[-1]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not panel.stop_button.disabled
    panel.stop_button.click()
    worker.join(timeout=5)
    assert not worker.is_alive()
    answer = markdown_of(messages(panel)[-1])
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

    def asked() -> list[Any]:
        return list(panel.asks.children)

    while time.monotonic() < deadline and not asked():
        time.sleep(0.05)
    [question] = asked()
    label, run_button, _skip = question.children
    assert "wipe" in label.value
    run_button.click()
    worker.join(timeout=20)
    assert server.chat_requests[-1].json["messages"][-1]["content"] == "wiped t"
    answers = [m for m in messages(panel) if m.kind == "assistant"]
    assert markdown_of(answers[-1]).count("Wiped.") == 1
    assert "Approved." in label.value
    assert panel.asks.children == ()  # answered and done: the answer's tool block says it ran


def test_no_pat_is_said_in_the_panel(shell: Any, server: OfflineServer, monkeypatch: Any) -> None:
    monkeypatch.delenv("CLARIFAI_PAT")
    panel = ChatPanel(shell._clarifai_magics.session, chat="nopat")
    panel.send("Hello").join(timeout=10)
    assert "CLARIFAI_PAT" in shown(messages(panel)[-1])
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
    stored = markdown_of(messages(panel)[-1])
    assert stored == "Stored &lt;img src=x onerror=alert(1)> and `<b>`"
    server.enqueue(text(f"New {hostile}", chunk_size=3))
    panel.send(f"Ask {hostile}").join(timeout=30)
    question, answer = (markdown_of(b) for b in messages(panel)[-2:])
    assert question == "Ask &lt;img src=x onerror=alert(1)> and `<b>`"
    assert answer.startswith("New &lt;img src=x onerror=alert(1)> and `<b>`")


def test_a_long_answer_is_clipped_in_the_panel_with_a_notice(
    shell: Any, server: OfflineServer
) -> None:
    panel = ChatPanel(shell._clarifai_magics.session, chat="panel-long", max_display_chars=5_000)
    server.enqueue(text("word " * 4_000, chunks=20))
    panel.send("Talk").join(timeout=30)
    drawn = shown(messages(panel)[-1])
    assert len(drawn) <= 5_000
    assert drawn.startswith("**Model**\n\nword word")
    assert "too long to show in full here (20,000 characters" in drawn
    # The conversation keeps all of it.
    session = shell._clarifai_magics.session
    stored = session.store.messages(session.conversation("panel-long", create=False))
    assert len(stored[-1].message["content"]) >= 19_999


def _wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_long_slow_answer_is_sent_about_once(shell: Any, server: OfflineServer) -> None:
    """Append-only: finished blocks are sealed and sent once; redraws stay near the new text."""
    paragraph = "A sentence of the answer that goes on for a while. " * 6
    content = "\n\n".join(f"{n}. {paragraph}" if n % 3 else f"## Part {n}" for n in range(1, 41))
    content += "\n\n```python\nprint('done')\n```\n\nThe end."
    panel = ChatPanel(shell._clarifai_magics.session, chat="long", list_models=False)
    server.enqueue(text(content, chunk_size=6, delay=0.002))
    panel.send("Write a lot").join(timeout=60)
    view = panel.views[-1]
    answer = messages(panel)[-1]
    assert view.stats.seals > 3, "finished blocks were sealed and sent once each"
    # Its list items were sealed in two (seams), so the whole answer replaced them at the end.
    assert answer.sealed == []
    joined = view.text()
    assert joined.startswith("**Model**\n\n1. A sentence") and "The end." in joined
    assert "## Part 3" in joined and "gpt-4o" in joined  # the footer
    assert view.stats.bytes_sent <= 3 * len(content.encode())
    # Its code block gets Copy and "Insert into a new cell" (drawn by the page, tests/browser).
    assert answer.code == [("python", "print('done')")]


def test_switching_chats_while_an_answer_streams_keeps_it_for_its_own_conversation(
    shell: Any, server: OfflineServer, monkeypatch: Any
) -> None:
    failures: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    panel = ChatPanel(shell._clarifai_magics.session, chat="first", list_models=False)
    server.enqueue(text("tick " * 60, chunk_size=5, delay=0.02))
    worker = panel.send("Count")
    _wait_for(lambda: "tick" in shown(messages(panel)[-1]))
    panel.switch_chat("second")  # the log now shows another conversation
    worker.join(timeout=30)
    assert not worker.is_alive() and messages(panel) == []
    assert failures == [] and not panel.send_button.disabled  # ready for the next question
    panel.switch_chat("first")  # the answer went on, into its own conversation
    assert markdown_of(messages(panel)[-1]).startswith("tick tick")
    assert [m.kind for m in messages(panel)] == ["user", "assistant"]


def test_enter_from_the_page_sends_the_question(shell: Any, server: OfflineServer) -> None:
    panel = ChatPanel(shell._clarifai_magics.session, chat="enter", list_models=False)
    server.enqueue(text("Sent by Enter."))
    # What the page script does on Enter: the text typed, then the send mark, as one value.
    panel.prompt.value = "line one\nline two" + SEND_MARK
    panel.worker.join(timeout=30)
    assert panel.prompt.value == ""
    assert server.chat_requests[-1].json["messages"][-1]["content"] == "line one\nline two"
    assert markdown_of(messages(panel)[-2]) == "line one  \nline two"  # a hard break
    assert markdown_of(messages(panel)[-1]).startswith("Sent by Enter.")


def test_switching_model_system_prompt_and_new_conversation(
    shell: Any, server: OfflineServer
) -> None:
    session = shell._clarifai_magics.session
    session.settings.aliases["fast"] = "qwen/qwenLM/models/Qwen3-14B"
    panel = ChatPanel(session, chat="picker")
    panel.models_listed.join(timeout=20)
    values = [value for _label, value in panel.model_picker.options]
    assert "fast" in values and "anthropic/completion/models/claude-sonnet-4" in values
    assert panel.model_picker.value == "openai/chat-completion/models/gpt-4o"

    panel.model_picker.value = "anthropic/completion/models/claude-sonnet-4"
    assert "claude-sonnet-4" in panel.header.value
    panel.system.value = "Answer in French."
    server.enqueue(text("Bonjour."))
    panel.send("Hello").join(timeout=30)
    request = server.chat_requests[-1].json
    assert request["model"].endswith("anthropic/completion/models/claude-sonnet-4")
    assert request["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert "claude-sonnet-4" in markdown_of(messages(panel)[-1])  # the footer

    name = panel.new_chat()
    assert name == "chat-1" and panel.chat_picker.value == "chat-1"
    assert messages(panel) == [] and panel.system.value == ""
    server.enqueue(text("Fresh."))
    panel.send("Anyone here?").join(timeout=30)
    assert [m["role"] for m in server.chat_requests[-1].json["messages"]] == ["user"]
    # Back to the first conversation: its messages and system prompt come back.
    panel.chat_picker.value = "picker"
    assert [markdown_of(b) for b in messages(panel)][0] == "Hello"
    assert panel.system.value == "Answer in French."
    assert "chat-1" in panel.chat_picker.options


def test_errors_are_shown_in_the_panel(shell: Any, server: OfflineServer) -> None:
    panel = ChatPanel(shell._clarifai_magics.session, chat="errors", list_models=False)
    server.enqueue(http_error(400, message="Model does not accept <b>this</b>"))
    panel.send("Break").join(timeout=30)
    answer = shown(messages(panel)[-1])
    assert "Model does not accept &lt;b>this&lt;/b>" in answer
    assert not panel.send_button.disabled and panel.stop_button.disabled
    panel.model = "no-such-model"
    panel.send("Again").join(timeout=30)
    error = messages(panel)[-1]
    assert error.kind == "error" and "Unknown model" in shown(error)


def test_chat_api_shows_a_panel_as_the_last_expression(shell: Any, server: OfflineServer) -> None:
    out = run(
        shell,
        "import clarifai_magic\n"
        "def shout(word: str) -> str:\n"
        '    """Say it loud."""\n'
        "    return word.upper()\n"
        "clarifai_magic.Chat(model='gpt-4o', tools=[shout], chat='api')\n",
    )
    assert out.result.success, out.stdout + out.stderr
    kinds = [set(o.data) for o in out.outputs]
    assert {"application/vnd.jupyter.widget-view+json"} <= kinds[0] | {"text/plain"}
    assert any("application/javascript" in k for k in kinds)  # Enter sends, Copy copies


def test_the_page_script_runs_once_per_kernel_and_leaves_nothing_to_save(
    kernel: Any, server: OfflineServer
) -> None:
    """The script (Enter, Copy, Insert) reaches the page with its first answer and with each
    panel, and is emptied at once: a saved notebook holds no code to run on reopen."""

    def scripts(run: Any) -> list[str]:
        shown = [
            m["content"]["transient"]["display_id"]
            for m in run.of_type("display_data")
            if "application/javascript" in m["content"]["data"]
        ]
        for display_id in shown:  # each is emptied by the next message about it
            about = [
                m
                for m in run.displays
                if m["content"].get("transient", {}).get("display_id") == display_id
            ]
            assert [m["msg_type"] for m in about] == ["display_data", "update_display_data"]
            assert about[1]["content"]["data"] == {}
        return shown

    server.enqueue(text("First."), text("Second."), text("Third."))
    assert kernel.run("%load_ext clarifai_magic").error is None
    first = kernel.run("%%clarifai\nOne")
    second = kernel.run("%%clarifai\nTwo")
    assert "Second." in second.last_markdown
    assert len(scripts(first)) == 1 and scripts(second) == []
    assert len(scripts(kernel.run("%clarifai chat"))) == 1
    # A reloaded page talks to the kernel under a new session id: it gets the script again.
    kernel.kc.session.session = "reloaded-page"
    third = kernel.run("%%clarifai\nThree")
    assert "Third." in third.last_markdown
    assert len(scripts(third)) == 1


def test_the_log_sends_new_text_only_and_replays_itself_to_a_new_view(
    kernel: Any, server: OfflineServer
) -> None:
    """In a real kernel: what the page is sent while an answer streams (numbered operations, each
    with only new text), and the replay a view that starts later (a reloaded page) asks for."""
    answer = "\n\n".join(f"Paragraph {n} of the answer, long enough to seal." for n in range(12))
    server.enqueue(text(answer, chunk_size=7, delay=0.01))
    assert kernel.run("%load_ext clarifai_magic").error is None
    asked = kernel.run(
        "from clarifai_magic.widget import ChatPanel\n"
        "_session = get_ipython()._clarifai_magics.session\n"
        "_panel = ChatPanel(_session, chat='log', list_models=False)\n"
        "_panel.send('Hi').join()\n"
        "print(_panel.log.comm.comm_id)"
    )
    assert asked.error is None, asked.error
    comm_id = asked.stdout.strip()

    def operations(run: Any) -> list[dict[str, Any]]:
        return [
            m["content"]["data"]["content"]
            for m in run.of_type("comm_msg")
            if m["content"]["comm_id"] == comm_id and m["content"]["data"]["method"] == "custom"
        ]

    ops = operations(asked)
    assert [op["seq"] for op in ops] == list(range(ops[0]["seq"], ops[0]["seq"] + len(ops)))
    assert [op["op"] for op in ops[:2]] == ["add", "add"]
    assert ops[0]["md"] == "**You**\n\nHi"
    sealed = [op["sealed"] for op in ops if op["op"] == "frame" and "sealed" in op]
    assert len(sealed) >= 2  # finished paragraphs went once each, not redrawn
    assert "".join(sealed).count("Paragraph 1 ") == 1
    sent = sum(len(json.dumps(op)) for op in ops)
    assert sent <= 3 * len(answer) + 2_000  # the label, footer and message framing on top

    content = {"op": "hello", "nonce": "v2"}
    hello = kernel.kc.session.msg(
        "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}}
    )
    kernel.kc.shell_channel.send(hello)
    reply = kernel.wait_for(
        hello["header"]["msg_id"],
        lambda m: m["msg_type"] == "comm_msg" and m["content"]["data"]["content"]["op"] == "replay",
    )
    replay = operations(reply)[-1]
    assert replay["to"] == "v2" and replay["seq"] == ops[-1]["seq"]
    user, model = replay["ops"]
    assert (user["kind"], user["md"]) == ("user", "**You**\n\nHi")
    assert model["kind"] == "assistant" and model["md"].startswith("**Model**\n\nParagraph 0")
    assert "Paragraph 11 of the answer" in model["md"] and "gpt-4o" in model["md"]  # the footer
