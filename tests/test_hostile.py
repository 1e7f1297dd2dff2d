"""A hostile or broken endpoint: endless streams, floods of tool calls, streams that stop short,
a server (or a tool) that echoes the PAT. Real IPython, real ``openai`` client, real HTTP."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from clarifai_magic.config import Credentials, Secret
from clarifai_magic.engine import Transcript, TurnOptions, run_turn
from clarifai_magic.options import Limits
from clarifai_magic.session import Ask, Session, Settings
from clarifai_magic.store import Store
from clarifai_magic.testing import OfflineServer, endless, text, tool_calls
from clarifai_magic.tools import ToolRunner

from .conftest import TEST_PAT
from .kernel_util import Kernel
from .test_magic import everything, final_markdown, run

MODEL = "https://clarifai.com/openai/chat-completion/models/gpt-4o"


def stored(env: Path, chat: str = "main") -> list[Any]:
    """The messages of a conversation, read back through a second connection to the file."""
    with Store(env / "home" / "conversations.db") as store:
        notebooks = store.notebooks()
        assert len(notebooks) == 1
        conv = store.conversation(notebooks[0].notebook_key, chat, create=False)
        return store.messages(conv) if conv else []


def store_bytes(env: Path) -> bytes:
    home = env / "home"
    return b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())


def test_an_endless_stream_stops_at_the_answer_limit_and_keeps_what_arrived(
    shell: Any, server: OfflineServer, env: Path
) -> None:
    shell.user_ns.pop("answer", None)
    shell.run_line_magic("config", "ClarifaiMagics.max_answer_chars = 100_000")
    shell.run_line_magic("config", "ClarifaiMagics.max_partial_chars = 20_000")
    try:
        server.enqueue(endless("spam ", seconds=20))
        out = run(shell, "%%clarifai --out answer\nSay something.")
    finally:
        shell.run_line_magic("config", "ClarifaiMagics.max_answer_chars = 1_000_000")
        shell.run_line_magic("config", "ClarifaiMagics.max_partial_chars = 200_000")
    assert not out.result.success
    markdown = final_markdown(out)
    assert "passed 100,000 characters" in markdown and "max_answer_chars" in markdown
    assert markdown.startswith("spam spam")
    assert "answer" not in shell.user_ns  # --out is never set from a cut-off answer
    # No display carried more than the answer limit's worth of Markdown.
    sizes = [len(o.data.get("text/markdown", "")) for o in out.outputs]
    assert max(sizes) < 200_000
    messages = stored(env)
    assert [m.message["role"] for m in messages] == ["user", "assistant"]
    partial = messages[-1]
    assert partial.partial
    assert partial.message["content"].startswith("spam spam")
    assert 20_000 <= len(partial.message["content"]) < 20_100
    assert "more characters were not stored" in partial.message["content"]


def test_a_flood_of_tool_calls_ends_the_turn_without_running_any(
    shell: Any, server: OfflineServer
) -> None:
    ran: list[int] = []
    shell.user_ns["ran"] = ran

    def bump() -> str:
        """Count a call."""
        ran.append(1)
        return "ok"

    shell.user_ns["bump"] = bump
    server.enqueue(tool_calls([(f"c{i}", "bump", "{}") for i in range(10_000)], whole=True))
    out = run(shell, "%%clarifai --tools bump\nBump a lot.")
    assert not out.result.success
    assert ran == []
    markdown = final_markdown(out)
    assert "more than 64 tool calls" in markdown and "max_tool_calls" in markdown
    assert len(server.chat_requests) == 1  # nothing went back to the model


def test_a_stream_that_ends_without_a_finish_reason_is_marked_incomplete(
    shell: Any, server: OfflineServer, env: Path
) -> None:
    shell.user_ns.pop("answer", None)
    cut = dataclasses.replace(text("The first half of an ans", finish_reason=None), done=False)
    server.enqueue(cut)
    out = run(shell, "%%clarifai --out answer\nTell me all of it.")
    assert not out.result.success
    markdown = final_markdown(out)
    assert markdown.startswith("The first half of an ans")
    assert "no finish reason" in markdown and "Incomplete" in markdown
    assert "answer" not in shell.user_ns
    assert "incomplete" in out.stderr + str(out.result.error_in_exec)
    messages = stored(env)
    assert messages[-1].partial and messages[-1].message["content"] == "The first half of an ans"


def test_a_pat_echoed_by_the_server_is_scrubbed_from_every_frame_the_store_and_out(
    shell: Any, server: OfflineServer, env: Path
) -> None:
    # Split in 3-character chunks, so the PAT arrives in pieces across many chunks.
    server.enqueue(
        text(
            f"Your key is {TEST_PAT}. Keep {TEST_PAT} safe.",
            reasoning=f"The header said {TEST_PAT}",
            chunk_size=3,
        )
    )
    out = run(shell, "%%clarifai --out answer\nWhat is my key?")
    assert out.result.success, out.stderr
    assert TEST_PAT not in everything(out)
    # Not even its first half, in any intermediate frame.
    assert TEST_PAT[: len(TEST_PAT) // 2] not in everything(out)
    assert "Your key is ********. Keep ******** safe." in final_markdown(out)
    assert shell.user_ns["answer"] == "Your key is ********. Keep ******** safe."
    assert TEST_PAT.encode() not in store_bytes(env)


def test_secrets_in_tool_errors_and_results_never_reach_the_model_the_cell_or_the_store(
    shell: Any, server: OfflineServer, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weather_key = "wk-0123456789abcdef"
    monkeypatch.setenv("WEATHER_KEY", weather_key)
    shell.run_line_magic("config", "ClarifaiMagics.secret_env_vars = ['WEATHER_KEY']")

    def leaky_error() -> str:
        """Fails, quoting the PAT."""
        import os

        raise PermissionError(f"token {os.environ['CLARIFAI_PAT']} was refused")

    def leaky_result() -> str:
        """Returns a configured secret."""
        import os

        return f"using {os.environ['WEATHER_KEY']}"

    shell.user_ns.update(leaky_error=leaky_error, leaky_result=leaky_result)
    server.enqueue(
        tool_calls([("c1", "leaky_error", "{}"), ("c2", "leaky_result", "{}")]),
        text("Done."),
    )
    try:
        out = run(shell, "%%clarifai --tools leaky_error,leaky_result\nGo.")
    finally:
        shell.run_line_magic("config", "ClarifaiMagics.secret_env_vars = []")
    assert out.result.success, out.stderr
    sent_back = json.dumps(server.chat_requests[-1].json["messages"])
    for secret in (TEST_PAT, weather_key):
        assert secret not in sent_back
        assert secret not in everything(out)
        assert secret.encode() not in store_bytes(env)
    assert "token ******** was refused" in sent_back
    assert "using ********" in sent_back


class RecordingView:
    def __init__(self) -> None:
        self.final: Transcript | None = None

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        if final:
            self.final = transcript


def test_an_answer_the_store_cannot_take_is_shown_and_its_question_not_left_behind(
    server: OfflineServer, env: Path
) -> None:
    session = Session(notebook_key=lambda: "nb.ipynb")
    try:
        conv = session.conversation()
        assert conv is not None
        # A full disk, as SQLite sees it: the file may not grow past its current pages.
        db = sqlite3.connect(session.store.path)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.close()
        session.store._conn.db.execute(f"PRAGMA max_page_count = {pages + 2}")
        answer = "A long answer. " * 20_000
        server.enqueue(text(answer, chunk_size=3000))
        view = RecordingView()
        transcript = session.ask(Ask(content="Explain at length."), lambda: view)
        assert transcript.answer == answer  # shown in full
        assert any("could not be saved" in n for n in transcript.notices)
        assert session.store.messages(conv) == []  # the question went with its answer
    finally:
        session.close()


def test_the_engine_bounds_a_hostile_stream_when_used_directly(server: OfflineServer) -> None:
    server.enqueue(endless("x", seconds=20, reasoning=True))
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    saved: list[tuple[list[dict[str, Any]], bool]] = []
    with client, ToolRunner() as runner:
        transcript = run_turn(
            client,
            [{"role": "user", "content": "q"}],
            TurnOptions(model=MODEL, limits=Limits(max_answer_chars=50_000)),
            RecordingView(),
            runner=runner,
            on_messages=lambda messages, partial, usage: saved.append((messages, partial)),
        )
    assert transcript.status == "error"
    assert "50,000 characters" in (transcript.error or "")
    assert 50_000 < len(transcript.rounds[-1].stream.reasoning) < 60_000


def test_stopping_a_hostile_stream_in_a_real_kernel(kernel_env: dict[str, str]) -> None:
    with OfflineServer() as server:
        kernel = Kernel({**kernel_env, "CLARIFAI_API_BASE": server.api_base})
        try:
            server.enqueue(endless("flood ", seconds=30))
            kernel.run("%load_ext clarifai_magic")
            kernel.run("%config ClarifaiMagics.max_answer_chars = 1_000_000_000")
            msg_id = kernel.start("%%clarifai\nNever stop.")
            kernel.wait_for(
                msg_id,
                lambda m: m["msg_type"] == "update_display_data" and "flood" in str(m["content"]),
            )
            time.sleep(1.0)  # let it run at full speed for a moment
            interrupted_at = time.monotonic()
            kernel.km.interrupt_kernel()
            execution = kernel.collect(msg_id, timeout=30)
            took = time.monotonic() - interrupted_at
            assert took < 5, f"interrupt took {took:.1f}s"  # generous; the benchmark measures it
            assert execution.error["traceback"] == [
                "Interrupted: the partial answer above is kept."
            ]
            assert "Interrupted" in execution.last_markdown
            deadline = time.monotonic() + 5
            while server.open_connections and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.open_connections == 0
            assert kernel.run("print('still here')").stdout == "still here\n"
        finally:
            kernel.shutdown()


def test_credentials_repr_and_secret_never_show_the_value() -> None:
    creds = Credentials(Secret(TEST_PAT), "test", "http://127.0.0.1")
    assert TEST_PAT not in repr(creds) and TEST_PAT not in f"{creds}"
    assert Session(notebook_key=lambda: "x", settings=Settings()).redactor(creds).redact(
        f"a {TEST_PAT} b"
    ) == ("a ******** b")


def test_one_question_reads_the_clarifai_cli_config_once(
    shell: Any, server: OfflineServer, env: Path
) -> None:
    """The secrets for interpolation and the credentials for the request come from one read."""
    config = env / ".config" / "clarifai" / "config"
    config.parent.mkdir(parents=True)
    config.write_text("current_context: a\ncontexts:\n  a:\n    env:\n      CLARIFAI_PAT: p\n")
    opened: list[str] = []
    recording = [False]

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if recording[0] and event == "open" and str(args[0]) == str(config):
            opened.append(event)

    sys.addaudithook(audit)  # permanent in this process; inert once ``recording`` is off
    server.enqueue(text("Fine."))
    recording[0] = True
    try:
        out = run(shell, "%%clarifai\nHow is {__name__}?")
    finally:
        recording[0] = False
    assert out.result.success, out.stderr
    assert len(opened) == 1, f"the CLI config was read {len(opened)} times for one question"
