"""A request's options: declared once with bounds, parsed IPython's way, carried to the client."""

from __future__ import annotations

from typing import Any

import pytest

from clarifai_magic.options import OptionError, RequestOptions
from clarifai_magic.testing import OfflineServer, http_error, text

from .test_magic import final_markdown, run


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 2.5}, "--temperature 2.5 is out of range: use a value between 0 and 2."),
        ({"temperature": -0.1}, "--temperature -0.1 is out of range"),
        ({"max_tokens": 0}, "--max-tokens 0 is out of range: use a value at least 1."),
        ({"max_rounds": 0}, "--max-rounds 0 is out of range"),
        ({"temperature": "hot"}, "--temperature: 'hot' is not a number."),
    ],
)
def test_bounds_are_checked_when_a_record_is_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError) as caught:
        RequestOptions(**kwargs)
    assert message in str(caught.value)


def test_the_client_gets_only_what_was_asked_for() -> None:
    plain = RequestOptions().completion_kwargs(model="m", messages=[], stream=False)
    assert plain == {"model": "m", "messages": [], "stream": False}
    tuned = RequestOptions(temperature=0, max_tokens=5).completion_kwargs(
        model="m", messages=[], stream=True, tools=[{"type": "function"}]
    )
    assert tuned["temperature"] == 0 and tuned["max_tokens"] == 5
    assert tuned["stream_options"] == {"include_usage": True}
    assert tuned["tool_choice"] == "auto"


def test_cell_magic_help_is_the_real_option_list(shell: Any) -> None:
    doc = shell.find_cell_magic("clarifai").__doc__
    assert doc.startswith("::\n\n  %clarifai") or "usage: %clarifai" in doc
    for option in ("--model", "--temperature", "--max-tokens", "--tools", "--schema", "--chat"):
        assert option in doc
    assert "Ask a Clarifai-hosted model" in doc
    help_text = run(shell, "%clarifai help").stdout
    assert "--temperature" in help_text
    assert "%clarifai history" in help_text and "show a conversation" in help_text


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("%clarifai -t 3 Say hi", "--temperature"),
        ("%clarifai --max-tokens 0 Say hi", "--max-tokens"),
        ("%clarifai --frobnicate Say hi", "--frobnicate"),
        ("%clarifai -m", "-m needs a value"),
    ],
)
def test_a_bad_option_is_a_usage_error_naming_it(
    shell: Any, server: OfflineServer, line: str, named: str
) -> None:
    out = run(shell, line)
    assert not out.result.success
    assert named in str(out.result.error_in_exec)
    assert server.chat_requests == []


def test_leading_options_then_a_prompt_with_quotes_and_dashes(
    shell: Any, server: OfflineServer
) -> None:
    server.enqueue(text("ok"), text("ok"))
    out = run(shell, "%clarifai -t 0.5 --max-tokens 9 What's a -5 degree day like?  ")
    assert out.result.success, out.stderr
    body = server.chat_requests[-1].json
    assert body["temperature"] == 0.5 and body["max_tokens"] == 9
    assert body["messages"][-1]["content"] == "What's a -5 degree day like?"
    run(shell, "%clarifai -- -t is not an option here")
    assert server.chat_requests[-1].json["messages"][-1]["content"] == "-t is not an option here"


def test_model_options_reach_the_request_body(shell: Any, server: OfflineServer) -> None:
    server.enqueue(text("ok"))
    line = (
        "%%clarifai -o top_p=0.9 -o seed=7 -o 'stop=[\"END\"]' -o reasoning_effort=high"
        " -o logit_bias={}\nHi"
    )
    out = run(shell, line)
    assert out.result.success, out.stderr
    body = server.chat_requests[-1].json
    assert body["top_p"] == 0.9 and body["seed"] == 7 and body["stop"] == ["END"]
    assert body["reasoning_effort"] == "high" and body["logit_bias"] == {}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("top_p=1.5", "-o top_p 1.5 is out of range: use a value between 0 and 1."),
        ("seed=soon", "-o seed: 'soon' is not a number."),
        ("temperature=0.2", "-o temperature is not needed: use -t instead."),
        ("top_p", "-o needs KEY=VALUE"),
    ],
)
def test_bad_model_options_are_refused_before_any_request(
    shell: Any, server: OfflineServer, option: str, message: str
) -> None:
    out = run(shell, f"%%clarifai -o {option}\nHi")
    assert not out.result.success
    assert message in str(out.result.error_in_exec)
    assert server.chat_requests == []


def test_a_model_option_the_server_refuses_is_named_in_the_error(
    shell: Any, server: OfflineServer
) -> None:
    server.enqueue(http_error(400, message="Unrecognized request argument supplied: frobnicate"))
    out = run(shell, "%%clarifai -o frobnicate=3\nHi")
    assert not out.result.success
    markdown = final_markdown(out)
    assert "Unrecognized request argument supplied: frobnicate" in markdown
    assert "The request carried -o frobnicate" in markdown
    assert server.chat_requests[-1].json["frobnicate"] == 3


@pytest.mark.parametrize("name", ["int", "dict", "NotAClass"])
def test_schema_must_name_a_class_with_fields(shell: Any, server: OfflineServer, name: str) -> None:
    shell.user_ns["NotAClass"] = 42
    out = run(shell, f"%%clarifai --schema {name}\nHi")
    assert not out.result.success
    error = str(out.result.error_in_exec)
    assert "--schema needs a pydantic model" in error
    assert "not defined" not in error
    assert server.chat_requests == []
