"""A request's options: declared once with bounds, parsed IPython's way, carried to the client."""

from __future__ import annotations

from typing import Any

import pytest

from clarifai_magic.options import OptionError, RequestOptions
from clarifai_magic.testing import OfflineServer, text

from .test_magic import run


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
