"""``%%clarifai`` in a real in-process IPython shell against the offline server over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from IPython.utils.capture import capture_output

from clarifai_magic.testing import (
    OfflineServer,
    drop,
    http_error,
    mid_stream_error,
    raw,
    text,
)

from .conftest import TEST_PAT

GPT4O = "https://clarifai.com/openai/chat-completion/models/gpt-4o"


def run(shell: Any, cell: str) -> Any:
    with capture_output() as captured:
        result = shell.run_cell(cell)
    captured.result = result
    return captured


def final_markdown(captured: Any) -> str:
    displays = [o for o in captured.outputs if "text/markdown" in o.data]
    assert displays, "no Markdown display was published"
    return displays[-1].data["text/markdown"]


def display_ids(captured: Any) -> set[str]:
    return {o.transient.get("display_id") for o in captured.outputs if o.transient}


def everything(captured: Any) -> str:
    return captured.stdout + captured.stderr + json.dumps([o.data for o in captured.outputs])


def test_cell_streams_markdown_into_one_display(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("# Title\n\nThe **answer** is 42.", chunk_size=2))
    shell.user_ns["df_name"] = "sales"
    out = run(
        shell, "%%clarifai -m openai/chat-completion/models/gpt-4o\nExplain {df_name}'s columns."
    )
    assert out.result.success, out.stderr
    body = server.chat_requests[-1].json
    assert body["model"] == GPT4O
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][-1] == {"role": "user", "content": "Explain sales's columns."}
    assert server.chat_requests[-1].headers["authorization"] == f"Bearer {TEST_PAT}"
    # One display, created once and then only updated.
    assert len(display_ids(out)) == 1
    assert [o.update for o in out.outputs][0] is False
    assert all(o.update for o in out.outputs[1:])
    markdown = final_markdown(out)
    assert markdown.startswith("# Title\n\nThe **answer** is 42.")
    assert "gpt-4o" in markdown and "tokens" in markdown and "tok/s" in markdown
    assert out.outputs[-1].data["text/plain"] == "# Title\n\nThe **answer** is 42."


def test_updates_are_coalesced_not_one_per_chunk(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("word " * 2000, chunk_size=1))
    out = run(shell, "%%clarifai\nLong answer please")
    assert final_markdown(out).startswith("word word")
    # 10,000 chunks arrive; the frame budget allows at most a few dozen updates here.
    assert len(out.outputs) < 100


def test_reasoning_goes_to_a_collapsed_thinking_section(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("Four.", reasoning="2 plus 2 is 4."))
    markdown = final_markdown(run(shell, "%%clarifai\nWhat is 2+2?"))
    assert "<details><summary>Thinking</summary>" in markdown
    thinking, answer = markdown.split("</details>", 1)
    assert "2 plus 2 is 4." in thinking and "Four." in answer and "Four." not in thinking


def test_think_tags_in_content_are_split_out(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("Four.", reasoning="adding", think_tags=True))
    out = run(shell, "%%clarifai\nWhat is 2+2?")
    assert out.outputs[-1].data["text/plain"] == "Four."
    assert "<think>" not in final_markdown(out)


def test_usage_on_finish_chunk_and_missing_usage(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("a", usage=(7, 1), usage_on="finish"))
    assert "7 in / 1 out tokens" in final_markdown(run(shell, "%%clarifai\nq"))
    server.enqueue(text("b", usage_on=None))
    assert "token usage not reported" in final_markdown(run(shell, "%%clarifai\nq"))


def test_options_are_sent(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("ok"))
    out = run(shell, '%%clarifai  -m  gpt-4o   -s "You are terse."  -t 0.2 --max-tokens 50\nHi')
    assert out.result.success, out.stderr
    body = server.chat_requests[-1].json
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}


def test_no_interpolate_sends_braces(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("ok"))
    shell.user_ns["x"] = 5
    run(shell, "%%clarifai --no-interpolate\nvalue {x}")
    assert server.chat_requests[-1].json["messages"][-1]["content"] == "value {x}"


def test_line_magic_one_liner_with_options_and_apostrophes(
    shell: Any, server: OfflineServer
) -> None:
    server.enqueue(text("Paris."))
    # A trailing "?" would be IPython's help syntax, so one-liners end otherwise.
    out = run(shell, "%clarifai -t 0.5 What's the capital of France -- in one word")
    assert out.result.success, out.stderr
    body = server.chat_requests[-1].json
    assert body["messages"][-1]["content"] == "What's the capital of France -- in one word"
    assert body["temperature"] == 0.5
    assert "Paris." in final_markdown(out)


def test_format_code_puts_code_in_next_cell(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("Here you go:\n```python\nprint('hi')\n```\n"))
    shell.rl_next_input = None
    run(shell, "%%clarifai -f code --out snippet\nWrite hello world")
    # A terminal shell pre-fills the next prompt; a kernel sends a set_next_input payload.
    assert shell.rl_next_input == "print('hi')"
    assert shell.user_ns["snippet"] == "print('hi')"


def test_format_json_and_out(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text('```json\n{"a": [1, 2]}\n```'))
    run(shell, "%%clarifai -f json --out data\nGive JSON")
    assert shell.user_ns["data"] == {"a": [1, 2]}
    server.enqueue(text("plain words"))
    run(shell, "%%clarifai --out answer\nq")
    assert shell.user_ns["answer"] == "plain words"


def test_alias_and_default_model(shell: Any, server: OfflineServer) -> None:
    out = run(shell, "%clarifai alias claude anthropic/completion/models/claude-sonnet-4")
    assert "claude ->" in out.stdout
    server.enqueue(text("ok"), text("ok"))
    run(shell, "%%clarifai -m claude\nq")
    assert server.chat_requests[-1].json["model"].endswith("/claude-sonnet-4")
    run(shell, "%config ClarifaiMagics.default_model = 'qwen/qwenLM/models/Qwen3-14B'")
    run(shell, "%%clarifai\nq")
    assert server.chat_requests[-1].json["model"].endswith("/Qwen3-14B")
    out = run(shell, "%clarifai alias --remove claude")
    assert "Removed" in out.stdout


def test_models_lists_server_models_with_capabilities(shell: Any, server: OfflineServer) -> None:
    server.models = [
        "https://clarifai.com/me/app/models/custom-llm",
        "openai/chat-completion/models/gpt-4o",
    ]
    out = run(shell, "%clarifai models")
    table = everything(out)
    assert "me/app/models/custom-llm" in table
    assert "qwen/qwen-VL/models/Qwen2_5-VL-7B-Instruct" in table


def test_help_lists_options_and_commands(shell: Any) -> None:
    out = run(shell, "%clarifai help")
    for word in (
        "--model",
        "--format",
        "--tools",
        "%clarifai models",
        "%clarifai alias",
        "%clarifai login",
    ):
        assert word in out.stdout


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("%%clarifai -f yaml", "invalid choice"),
        ("%%clarifai -t hot", "not a number"),
        ("%%clarifai -t 5", "between 0 and 2"),
        ("%%clarifai --max-tokens -5", "at least 1"),
        ("%%clarifai --max-rounds 0", "at least 1"),
        ("%%clarifai --out 1bad", "needs a variable name"),
        ("%%clarifai --out In", "overwrite IPython's own In"),
        ("%%clarifai --chat ''", "--chat needs a name"),
        ('%%clarifai -s "unclosed', "quotes"),
        ("%%clarifai --bogus", "unrecognized"),
        ("%%clarifai -m not/a/model", "Unknown model"),
    ],
)
def test_invalid_options_give_a_clear_message_not_a_traceback(
    shell: Any, server: OfflineServer, line: str, fragment: str
) -> None:
    out = run(shell, line + "\nHello")
    assert fragment in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert not server.chat_requests


def test_no_pat_says_how_to_set_it(
    shell: Any, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLARIFAI_PAT")
    out = run(shell, "%%clarifai\nHello")
    assert not out.result.success
    assert "CLARIFAI_PAT" in out.stdout and "%clarifai login" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert not server.chat_requests


def test_login_prompts_without_echo(
    shell: Any, server: OfflineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "typed-pat-000111")
    # CLARIFAI_PAT is set (stale, say): a PAT typed at login replaces it for the session.
    out = run(shell, "%clarifai login")
    assert "typed-pat-000111" not in everything(out)
    server.enqueue(text("ok"))
    run(shell, "%%clarifai\nq")
    assert server.chat_requests[-1].headers["authorization"] == "Bearer typed-pat-000111"


@pytest.mark.parametrize(
    ("script", "fragment"),
    [
        (http_error(401), "rejected the Personal Access Token"),
        (http_error(403, message="no access"), "not allowed"),
        (http_error(404, message="model not found"), "%clarifai models"),
        (http_error(400, message="max_tokens too large"), "max_tokens too large"),
    ],
)
def test_http_errors_give_one_clear_paragraph(
    shell: Any, server: OfflineServer, script: Any, fragment: str
) -> None:
    server.enqueue(script)
    out = run(shell, "%%clarifai\nHello")
    markdown = final_markdown(out)
    assert fragment in markdown
    assert "Traceback" not in everything(out)
    assert TEST_PAT not in everything(out)


def test_429_is_retried_honouring_retry_after_then_succeeds(
    shell: Any, server: OfflineServer
) -> None:
    server.enqueue(
        http_error(429, headers={"Retry-After": "0.1"}), http_error(503), text("finally")
    )
    out = run(shell, "%%clarifai\nHello")
    assert len(server.chat_requests) == 3
    assert out.outputs[-1].data["text/plain"] == "finally"


def test_a_pending_retry_is_shown_while_it_waits(shell: Any, server: OfflineServer) -> None:
    server.enqueue(http_error(429, headers={"Retry-After": "1"}), text("made it"))
    out = run(shell, "%%clarifai\nHello")
    shown = [o.data["text/markdown"] for o in out.outputs]
    assert any(
        "rate-limiting requests (HTTP 429); trying again in 1 s (1 of 3)" in m for m in shown
    )
    assert "trying again" not in shown[-1] and shown[-1].startswith("made it")


def test_429_gives_up_clearly(shell: Any, server: OfflineServer) -> None:
    server.enqueue(*[http_error(429, headers={"Retry-After": "0.01"}) for _ in range(4)])
    out = run(shell, "%%clarifai\nHello")
    assert len(server.chat_requests) == 4  # first try + 3 retries
    assert "HTTP 429" in final_markdown(out)


@pytest.mark.parametrize("shape", ["openai", "clarifai"])
def test_mid_stream_error_keeps_streamed_text(
    shell: Any, server: OfflineServer, shape: str
) -> None:
    server.enqueue(mid_stream_error("The first half ", shape=shape, message="GPU fell over"))
    markdown = final_markdown(run(shell, "%%clarifai\nHello"))
    assert markdown.startswith("The first half")
    assert "GPU fell over" in markdown and "Error" in markdown


def test_dropped_connection_keeps_streamed_text(shell: Any, server: OfflineServer) -> None:
    server.enqueue(drop("Half an answer "))
    markdown = final_markdown(run(shell, "%%clarifai\nHello"))
    assert markdown.startswith("Half an answer")
    assert "connection to Clarifai dropped" in markdown


def test_empty_and_null_choices_chunks(shell: Any, server: OfflineServer) -> None:
    server.enqueue(
        raw(
            [
                {"choices": []},
                {
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ]
                },
                {"choices": None},
                {"choices": [{"index": 0, "delta": {"content": "fine"}, "finish_reason": "stop"}]},
            ]
        )
    )
    out = run(shell, "%%clarifai\nHello")
    assert out.outputs[-1].data["text/plain"] == "fine"


def test_pat_never_appears_anywhere(shell: Any, server: OfflineServer, env: Any) -> None:
    server.enqueue(http_error(401), text("ok"))
    outs = [
        run(shell, "%%clarifai\nHello"),
        run(shell, "%%clarifai\nAgain"),
        run(shell, "%clarifai history"),
    ]
    outs.append(run(shell, "%clarifai chats"))
    for out in outs:
        assert TEST_PAT not in everything(out)
    magics = shell._clarifai_magics
    assert TEST_PAT not in repr(magics.session.credentials())
    for path in (env / "home").rglob("*"):
        if path.is_file():
            assert TEST_PAT.encode() not in path.read_bytes(), path


def test_terminal_ipython_prints_plain_text_as_it_streams(
    shell: Any, server: OfflineServer
) -> None:
    run(shell, "%config ClarifaiMagics.display_mode = 'terminal'")
    server.enqueue(text("Plain **answer**.", reasoning="hmm"))
    out = run(shell, "%%clarifai\nHi")
    assert not out.outputs, "no rich display in a terminal"
    assert "[thinking] hmm" in out.stdout
    assert "Plain **answer**." in out.stdout and "gpt-4o" in out.stdout


def test_format_text_and_out(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("a <b> c"))
    out = run(shell, "%%clarifai -f text --out t\nq")
    assert shell.user_ns["t"] == "a <b> c"
    assert "<pre>a &lt;b&gt; c</pre>" in final_markdown(out)


def test_loading_the_extension_does_not_import_openai() -> None:
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'clarifai_magic')\n"
        "assert 'clarifai' in ip.magics_manager.magics['cell']\n"
        "heavy = ('openai', 'httpx', 'pydantic', 'PIL', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_line_is_not_expanded_by_ipython(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("ok"))
    shell.user_ns["price"] = 9
    run(shell, "%clarifai --no-interpolate what is {1+1} and $price")
    assert server.chat_requests[-1].json["messages"][-1]["content"] == "what is {1+1} and $price"


def test_a_failed_request_does_not_leave_its_question_behind(
    shell: Any, server: OfflineServer
) -> None:
    server.enqueue(http_error(404), text("Here it is."))
    run(shell, "%clarifai -- explain X")
    run(shell, "%clarifai -- explain X")
    assert server.chat_requests[-1].json["messages"] == [{"role": "user", "content": "explain X"}]


def test_an_open_code_fence_cannot_swallow_the_error_and_footer(
    shell: Any, server: OfflineServer
) -> None:
    server.enqueue(mid_stream_error("Here:\n```python\nx = 1\n"))
    markdown = final_markdown(run(shell, "%%clarifai\ncode"))
    code_end = markdown.index("```", markdown.index("```python") + 3)
    assert code_end < markdown.index("**Error.**") < markdown.index("<sub")


def test_reasoning_shows_code_as_written_and_cannot_close_the_section(
    shell: Any, server: OfflineServer
) -> None:
    server.enqueue(text("Done.", reasoning='Try `print("a < b")` </details> here'))
    markdown = final_markdown(run(shell, "%%clarifai\nq"))
    assert '`print("a < b")`' in markdown
    assert markdown.count("</details>") == 1 and "&lt;/details>" in markdown


def test_empty_and_cut_off_answers_are_explained(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("", finish_reason="stop"))
    assert "The model sent no text." in final_markdown(run(shell, "%%clarifai\nq"))
    server.enqueue(text("It was the best of", finish_reason="length"))
    assert "raise --max-tokens" in final_markdown(run(shell, "%%clarifai\nq"))


def test_unloading_removes_the_magic(shell: Any) -> None:
    shell.run_line_magic("unload_ext", "clarifai_magic")
    try:
        assert "clarifai" not in shell.magics_manager.magics["line"]
        assert "clarifai" not in shell.magics_manager.magics["cell"]
    finally:
        shell.run_line_magic("load_ext", "clarifai_magic")
        shell.run_line_magic("config", "ClarifaiMagics.display_mode = 'cell'")
