"""The offline server (clarifai_magic.offline), over real HTTP, with the real ``openai`` client."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Literal

import jsonschema
import openai
import pydantic
import pytest
from IPython.utils.capture import capture_output

from clarifai_magic.models import model_id, resolve_model, short_path
from clarifai_magic.offline import (
    BASE_PATH,
    OfflineServer,
    drop,
    http_error,
    mid_stream_error,
    raw,
    text,
    tool_calls,
)
from clarifai_magic.prompt import extract_code
from clarifai_magic.structured import (
    instruction_for,
    parse_json_answer,
    parse_structured,
    response_format_for,
)

MODEL = "openai/chat-completion/models/gpt-4o"
USER = [{"role": "user", "content": "Say hello"}]  # 9 chars: auto prompt usage is 9 // 4 == 2


@pytest.fixture
def srv():
    with OfflineServer() as server:
        yield server


@pytest.fixture
def client(srv):
    with openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0) as c:
        yield c


def stream(client, messages=USER, **kwargs):
    """Every chunk the client yields for one streamed request."""
    return list(
        client.chat.completions.create(model=MODEL, messages=messages, stream=True, **kwargs)
    )


def content_of(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def tool_deltas(chunks):
    return [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]


def arguments_by_index(chunks):
    joined: dict[int, str] = {}
    for delta in tool_deltas(chunks):
        joined[delta.index] = joined.get(delta.index, "") + (delta.function.arguments or "")
    return joined


# -- text -----------------------------------------------------------------------------------


def test_text_stream_reassembles_exactly_with_final_usage_chunk(srv, client):
    content = "Héllo, wörld! 👋 Multi-byte text\nacross chunks ✓"
    srv.enqueue(text(content, chunk_size=3))

    chunks = stream(client)

    assert content_of(chunks) == content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.model for c in chunks} == {MODEL}
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    pieces = len(range(0, len(content), 3))
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (2, pieces)
    assert last.usage.total_tokens == 2 + pieces


def test_text_in_a_given_number_of_chunks(srv, client):
    srv.enqueue(text("abcdefghij", chunks=3, usage=(7, 5)))

    chunks = stream(client)

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert [c.choices[0].delta.content for c in content_chunks] == ["abc", "def", "ghij"]
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 5)


def test_usage_on_finish_chunk_and_null_before(srv, client):
    srv.enqueue(text("four five six", usage=(3, 4), usage_on="finish"))

    chunks = stream(client)

    assert all(c.choices for c in chunks)  # no trailing choices == [] chunk
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])
    assert all("usage" in c.model_fields_set for c in chunks)  # sent as an explicit null


def test_no_usage_at_all(srv, client):
    srv.enqueue(text("quiet", usage_on=None))

    chunks = stream(client)

    assert content_of(chunks) == "quiet"
    assert all(c.usage is None and c.choices for c in chunks)


def test_empty_first_chunk_and_no_role_chunk(srv, client):
    srv.enqueue(text("hi", empty_first=True, role_first=False, chunk_size=10))

    chunks = stream(client)

    first = chunks[0].choices[0].delta
    assert (first.role, first.content, first.tool_calls) == (None, None, None)
    assert chunks[1].choices[0].delta.content == "hi"


def test_reasoning_content_streams_before_content(srv, client):
    srv.enqueue(text("The answer is 4.", reasoning="2 plus 2 is 4, so...", chunk_size=5))

    chunks = stream(client)

    kinds = []
    for c in chunks:
        if not c.choices:
            continue
        extra = c.choices[0].delta.model_extra or {}
        if extra.get("reasoning_content"):
            kinds.append(("reasoning", extra["reasoning_content"]))
        elif c.choices[0].delta.content:
            kinds.append(("content", c.choices[0].delta.content))
    reasoning = "".join(t for k, t in kinds if k == "reasoning")
    assert reasoning == "2 plus 2 is 4, so..."
    assert content_of(chunks) == "The answer is 4."
    assert kinds.index(("content", "The a")) > max(
        i for i, k in enumerate(kinds) if k[0] == "reasoning"
    )


def test_reasoning_in_think_tags(srv, client):
    srv.enqueue(text("Four.", reasoning="add them", think_tags=True))

    chunks = stream(client)

    assert content_of(chunks) == "<think>add them</think>Four."
    contents = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "<think>" in contents and "</think>" in contents  # tags travel as whole tokens


# -- tool calls -----------------------------------------------------------------------------


def test_tool_call_fragments_concatenate(srv, client):
    args = json.dumps({"city": "Paris", "unit": "celsius"})
    srv.enqueue(tool_calls([("call_1", "get_weather", args)], split=4))

    chunks = stream(client, tools=[{"type": "function", "function": {"name": "get_weather"}}])

    deltas = tool_deltas(chunks)
    head, rest = deltas[0], deltas[1:]
    assert (head.index, head.id, head.type) == (0, "call_1", "function")
    assert (head.function.name, head.function.arguments) == ("get_weather", "")
    assert len(rest) == 4
    assert all(d.id is None and d.function.name is None for d in rest)
    assert json.loads(arguments_by_index(chunks)[0]) == {"city": "Paris", "unit": "celsius"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"


def test_text_before_tool_call_starts_at_index_one(srv, client):
    srv.enqueue(
        tool_calls(
            [("toolu_1", "lookup", '{"q": "x"}')], text_before="Let me check.", first_index=1
        )
    )

    chunks = stream(client)

    assert content_of(chunks) == "Let me check."
    first_tool_chunk = next(
        i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.tool_calls
    )
    last_text_chunk = max(
        i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content
    )
    assert last_text_chunk < first_tool_chunk
    assert {d.index for d in tool_deltas(chunks)} == {1}
    assert arguments_by_index(chunks) == {1: '{"q": "x"}'}


def test_interleaved_parallel_calls(srv, client):
    calls = [("call_a", "f", '{"a": 1, "b": 2}'), ("call_b", "g", '{"z": "last"}')]
    srv.enqueue(tool_calls(calls, interleave=True, split=2))

    chunks = stream(client)

    indices = [d.index for d in tool_deltas(chunks)]
    assert indices == [0, 1, 0, 1, 0, 1]
    heads = [d for d in tool_deltas(chunks) if d.id]
    assert [(d.index, d.id, d.function.name) for d in heads] == [
        (0, "call_a", "f"),
        (1, "call_b", "g"),
    ]
    assert arguments_by_index(chunks) == {0: '{"a": 1, "b": 2}', 1: '{"z": "last"}'}


def test_whole_calls_in_one_delta_each(srv, client):
    calls = [("call_a", "f", '{"a": 1}'), ("call_b", "g", "{}")]
    srv.enqueue(tool_calls(calls, whole=True))

    chunks = stream(client)

    deltas = tool_deltas(chunks)
    assert [(d.index, d.id, d.function.name, d.function.arguments) for d in deltas] == [
        (0, "call_a", "f", '{"a": 1}'),
        (1, "call_b", "g", "{}"),
    ]


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (503, openai.InternalServerError),
    ],
)
def test_http_errors_raise_matching_exceptions(srv, client, status, error):
    srv.enqueue(http_error(status, message=f"nope {status}", headers={"Retry-After": "0"}))

    with pytest.raises(error) as info:
        stream(client)

    assert info.value.status_code == status
    assert f"nope {status}" in str(info.value)
    assert info.value.response.headers["retry-after"] == "0"
    assert info.value.body["code"] == status


def test_http_error_with_custom_body(srv, client):
    srv.enqueue(http_error(502, body="<html>Bad gateway</html>"))

    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=MODEL, messages=USER)

    assert "Bad gateway" in info.value.response.text


def test_mid_stream_error_openai_shape_raises_after_partial_text(srv, client):
    srv.enqueue(mid_stream_error("partial answer", message="GPU on fire"))
    received = []

    with pytest.raises(openai.APIError) as info:
        for c in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
            received.append(c)

    assert "GPU on fire" in str(info.value)
    assert not isinstance(info.value, openai.APIStatusError)
    assert content_of(received) == "partial answer"


def test_mid_stream_error_clarifai_shape_yields_chunk_without_choices(srv, client):
    srv.enqueue(mid_stream_error("so far", shape="clarifai", message="OOM"))

    chunks = stream(client)

    assert content_of(chunks) == "so far"
    failed = chunks[-1]
    assert failed.choices is None
    assert failed.model_extra["description"] == "Model prediction failed"
    assert failed.model_extra["details"] == "OOM"
    assert failed.model_extra["code"] == 21317


def test_drop_raises_connection_error_after_partial_text(srv, client):
    srv.enqueue(drop("half an ans"))
    received = []

    with pytest.raises(openai.APIConnectionError):
        for c in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
            received.append(c)

    assert content_of(received) == "half an ans"
    # The server is still fine afterwards.
    assert content_of(stream(client)).startswith("**Offline reply**")


def test_raw_chunks_get_the_missing_envelope(srv, client):
    srv.enqueue(
        raw(
            [
                {"choices": [{"index": 0, "delta": {"content": "A"}, "finish_reason": None}]},
                {"id": "custom", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
            ]
        )
    )

    chunks = stream(client)

    assert [c.id for c in chunks][1] == "custom"
    assert chunks[0].model == MODEL and chunks[0].object == "chat.completion.chunk"
    assert content_of(chunks) == "A"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_raw_non_json_data_line_makes_the_client_fail(srv, client):
    srv.enqueue(raw(["not json"]))

    with pytest.raises(json.JSONDecodeError):
        stream(client)


# -- non-streaming --------------------------------------------------------------------------


def test_non_streaming_text_answer(srv, client):
    srv.enqueue(text("Complete answer.", reasoning="thinking", usage=(10, 3)))

    reply = client.chat.completions.create(model=MODEL, messages=USER)

    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert reply.choices[0].message.content == "Complete answer."
    assert reply.choices[0].message.model_extra["reasoning_content"] == "thinking"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (10, 3)


def test_non_streaming_tool_calls(srv, client):
    calls = [("call_a", "f", '{"a": 1}'), ("call_b", "g", '{"b": 2}')]
    srv.enqueue(tool_calls(calls, interleave=True))

    reply = client.chat.completions.create(model=MODEL, messages=USER, stream=False)

    message = reply.choices[0].message
    assert message.content is None
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("call_a", "f", '{"a": 1}'),
        ("call_b", "g", '{"b": 2}'),
    ]
    assert reply.choices[0].finish_reason == "tool_calls"


def test_non_streaming_mid_stream_error_is_a_server_error(srv, client):
    srv.enqueue(mid_stream_error(message="broke"))

    with pytest.raises(openai.InternalServerError, match="broke"):
        client.chat.completions.create(model=MODEL, messages=USER)


# -- routes, records, auth ------------------------------------------------------------------


def test_models_list_and_retrieve(srv, client):
    srv.models = ["https://clarifai.com/qwen/qwenLM/models/Qwen3-14B", "plain-id"]

    listed = client.models.list()

    assert [m.id for m in listed] == srv.models
    assert [m.owned_by for m in listed][0] == "qwen"
    assert client.models.retrieve(srv.models[0]).id == srv.models[0]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("missing")


def test_requests_are_recorded_with_json_bodies(srv, client):
    srv.enqueue(text("one"))
    stream(client, stream_options={"include_usage": True})
    client.models.list()

    assert [(r.method, r.path) for r in srv.requests] == [
        ("POST", "/v2/ext/openai/v1/chat/completions"),
        ("GET", "/v2/ext/openai/v1/models"),
    ]
    chat = srv.chat_requests
    assert len(chat) == 1
    assert chat[0].json["model"] == MODEL
    assert chat[0].json["messages"] == USER
    assert chat[0].json["stream"] is True
    assert chat[0].headers["authorization"] == "Bearer test"
    assert "test" not in repr(chat[0])  # the token stays out of reprs and assertion output
    assert srv.requests[1].json is None

    srv.clear()
    assert srv.requests == [] and srv.pending == 0


def test_requests_are_recorded_before_the_answer(srv, client):
    seen = []

    def responder(request):
        seen.append([r.json for r in srv.chat_requests])
        return text("ok")

    srv.responder = responder
    stream(client)

    assert seen == [[{"model": MODEL, "messages": USER, "stream": True}]]


def test_scripts_play_in_order_then_the_default_echo(srv, client):
    srv.enqueue(text("first"), text("second"))
    parts = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this image"},
    ]

    answers = [content_of(stream(client)) for _ in range(2)]
    echo = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "earlier"}, {"role": "user", "content": parts}],
    )

    assert answers == ["first", "second"]
    assert srv.pending == 0
    reply = echo.choices[0].message.content
    assert "> Describe\n> this image" in reply
    assert "gpt-4o" in reply
    assert "earlier" not in reply
    assert echo.usage is not None


def test_default_echo_streams_word_by_word(client):
    chunks = stream(client, messages=[{"role": "user", "content": "two words"}])

    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "> two words" in "".join(pieces)
    assert all(len(p.split()) == 1 for p in pieces if p.strip())
    assert chunks[-1].usage.completion_tokens == len(pieces)


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Basic dXNlcg=="])
def test_missing_token_is_401_and_keeps_the_queue(srv, authorization):
    srv.enqueue(text("kept"))
    body = json.dumps({"model": MODEL, "messages": USER}).encode()
    request = urllib.request.Request(srv.base_url + "/chat/completions", data=body)
    request.add_header("Content-Type", "application/json")
    if authorization is not None:
        request.add_header("Authorization", authorization)

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)

    assert info.value.code == 401
    assert json.loads(info.value.read())["error"]["type"] == "authentication_error"
    assert srv.pending == 1
    assert len(srv.chat_requests) == 1  # recorded even though refused


def test_require_token(srv):
    srv.require_token = "abc"
    wrong = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
    right = openai.OpenAI(base_url=srv.base_url, api_key="abc", max_retries=0)

    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=MODEL, messages=USER)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()

    assert right.chat.completions.create(model=MODEL, messages=USER).choices


def test_without_recording_nothing_is_kept():
    with OfflineServer(record=False) as server:
        server.enqueue(text("not kept"))
        with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
            assert content_of(stream(c)) == "not kept"
            assert c.models.list().data
        assert server.requests == [] and server.chat_requests == []


def test_unknown_path_is_a_404_json_error(srv):
    request = urllib.request.Request(srv.api_base + "/v1/chat/completions", data=b"{}")

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)

    assert info.value.code == 404
    assert json.loads(info.value.read())["error"]["code"] == 404


def test_chunked_request_body(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    body = json.dumps({"model": MODEL, "messages": USER}).encode()
    conn.request(
        "POST",
        BASE_PATH + "/chat/completions",
        body=iter([body[:10], body[10:]]),
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    reply = json.loads(conn.getresponse().read())
    conn.close()

    assert srv.chat_requests[0].json == {"model": MODEL, "messages": USER}
    assert "> Say hello" in reply["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n-5\r\n",
        b"Content-Length: lots\r\n\r\n{}",
        b"Content-Length: -3\r\n\r\n{}",
    ],
)
def test_malformed_body_framing_is_a_400_and_prints_nothing(srv, capfd, framing):
    head = f"POST {BASE_PATH}/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(head.encode() + framing)
        received = b""
        while chunk := sock.recv(65536):  # the server closes: the body's end is unknown
            received += chunk

    status_line, _, rest = received.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert b"connection: close" in rest.lower()
    assert b"Malformed request body" in rest
    assert capfd.readouterr().err == ""


def test_http_1_0_stream_is_unframed_and_closes(srv):
    srv.enqueue(text("old client", usage_on=None))
    body = json.dumps({"model": MODEL, "messages": USER, "stream": True}).encode()
    head = (
        f"POST {BASE_PATH}/chat/completions HTTP/1.0\r\nAuthorization: Bearer t\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        received = b""
        while chunk := sock.recv(65536):  # the server closes when done
            received += chunk

    headers, _, payload = received.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in headers.lower()
    events = [line for line in payload.split(b"\n\n") if line]
    assert events[-1] == b"data: [DONE]"
    texts = [json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1]]
    assert "".join(texts) == "old client"


def test_responder_failure_reaches_stderr_without_the_request(srv, client, capfd):
    def broken(request):
        raise RuntimeError("responder bug")

    srv.responder = broken
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "secret prompt"}]
        )

    err = capfd.readouterr().err
    assert "RuntimeError: responder bug" in err
    assert "secret prompt" not in err and "Bearer" not in err


def test_server_prints_nothing(srv, client, capfd):
    srv.enqueue(drop("x"))
    with pytest.raises(openai.APIConnectionError):
        stream(client, messages=[{"role": "user", "content": "secret prompt"}])
    stream(client, messages=[{"role": "user", "content": "secret prompt"}])
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")

    out, err = capfd.readouterr()
    assert out == "" and err == ""


# -- scale, keep-alive, concurrency, stopping ------------------------------------------------


def test_twenty_thousand_chunk_stream(srv, client):
    content = "".join(chr(ord("a") + i % 26) for i in range(20_000))
    srv.enqueue(text(content, chunk_size=1))

    chunks = stream(client)

    assert content_of(chunks) == content
    assert chunks[-1].usage.completion_tokens == 20_000


def test_many_mixed_requests_share_the_connection_pool(srv, client):
    for i in range(30):
        kind = i % 3
        if kind == 0:
            srv.enqueue(text(f"streamed {i}"))
            assert content_of(stream(client)) == f"streamed {i}"
        elif kind == 1:
            srv.enqueue(text(f"whole {i}"))
            reply = client.chat.completions.create(model=MODEL, messages=USER)
            assert reply.choices[0].message.content == f"whole {i}"
        else:
            srv.enqueue(http_error(429, headers={"Retry-After": "0"}))
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model=MODEL, messages=USER)

    assert len(srv.chat_requests) == 30
    # Finished requests do not leave server connections behind (the pool keeps at most one).
    deadline = time.monotonic() + 10
    while srv.open_connections > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.open_connections <= 1


def test_concurrent_streams_are_served_at_the_same_time(srv):
    arrived: list[str] = []
    gate = threading.Event()
    lock = threading.Lock()

    def responder(request):
        question = request["messages"][-1]["content"]
        with lock:
            arrived.append(question)
        gate.wait(timeout=30)  # every request is held here until all four are in flight
        return text(f"answer to {question}", delay=0.005)

    srv.responder = responder
    results: list[str] = []

    def run(i: int) -> None:
        with openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0) as c:
            answer = content_of(stream(c, messages=[{"role": "user", "content": f"q{i}"}]))
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 15
        while len(arrived) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        # A single-threaded server would hold only the first request here.
        assert sorted(arrived) == ["q0", "q1", "q2", "q3"]
        assert srv.open_connections == 4
    finally:
        gate.set()
        for t in threads:
            t.join(timeout=30)

    assert sorted(results) == [f"answer to q{i}" for i in range(4)]


def test_abandoned_delayed_stream_frees_its_connection_silently(srv, capfd):
    srv.enqueue(text("x" * 2000, chunk_size=1, delay=0.01))
    with openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0) as c:
        response = c.chat.completions.create(model=MODEL, messages=USER, stream=True)
        received = [next(iter(response)) for _ in range(3)]
        response.close()  # the user interrupted the cell
        assert len(received) == 3

        deadline = time.monotonic() + 10
        while srv.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.open_connections == 0
    assert capfd.readouterr().err == ""


def test_hold_delays_the_first_event(srv):
    srv.enqueue(text("late").hold(30))
    impatient = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0, timeout=0.3)

    with pytest.raises(openai.APITimeoutError):
        stream(impatient)


def test_stop_during_a_delayed_stream_is_prompt():
    server = OfflineServer().start()
    server.enqueue(text("x" * 1000, chunk_size=1, delay=0.05))
    c = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    received = []
    failed = []

    def consume():
        try:
            for chunk in c.chat.completions.create(model=MODEL, messages=USER, stream=True):
                received.append(chunk)
        except openai.APIError as err:
            failed.append(err)

    reader = threading.Thread(target=consume)
    reader.start()
    deadline = time.monotonic() + 10
    while len(received) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)

    started = time.monotonic()
    server.stop()
    elapsed = time.monotonic() - started
    reader.join(timeout=10)

    assert elapsed < 2
    assert len(received) >= 3
    assert failed and isinstance(failed[0], openai.APIConnectionError)
    assert server.open_connections == 0
    with pytest.raises(openai.APIConnectionError):
        c.models.list()


# The offline server's own name, and the one tests and older docs use.
@pytest.mark.parametrize("module", ["clarifai_magic.offline", "clarifai_magic.testing"])
def test_standalone_module_serves_until_ctrl_c(tmp_path, module):
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,  # the installed package, not whatever sits in the current directory
    )
    try:
        base_url = proc.stdout.readline().strip()
        hint = proc.stdout.readline()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v2/ext/openai/v1")
        c = openai.OpenAI(base_url=base_url, api_key="any", max_retries=0)
        assert (
            "> ping"
            in c.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "ping"}]
            )
            .choices[0]
            .message.content
        )
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "CLARIFAI_API_BASE=http://127.0.0.1:" in hint
    assert out == ""


def test_default_responder_calls_an_offered_tool_then_reports_its_result(client):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["C", "F"]},
                    "days": {"type": "integer", "default": 3},
                },
                "required": ["city", "unit"],
            },
        },
    }
    question = [{"role": "user", "content": "Weather?"}]
    first = client.chat.completions.create(model="m", messages=question, tools=[tool])
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "offline example", "unit": "C"}
    answered = [
        *question,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "name": "get_weather", "content": "21 C"},
    ]
    second = client.chat.completions.create(model="m", messages=answered, tools=[tool])
    assert "`get_weather` returned: 21 C" in second.choices[0].message.content


def test_default_responder_fills_tool_arguments_from_defs_refs(client):
    pydantic = pytest.importorskip("pydantic")

    class Address(pydantic.BaseModel):
        city: str
        zip_code: int

    class Order(pydantic.BaseModel):
        item: str
        size: Literal["S", "M"] | None = None
        ship_to: Address
        gift_to: Address | None = None
        tags: list[Address] = []

    tool = {
        "type": "function",
        "function": {"name": "order", "parameters": Order.model_json_schema()},
    }
    assert "$defs" in tool["function"]["parameters"]  # the refs this test is about

    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Order"}], tools=[tool]
    )

    [call] = reply.choices[0].message.tool_calls
    order = Order.model_validate_json(call.function.arguments)
    assert order.ship_to == Address(city="offline example", zip_code=1)


NODE = {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}


@pytest.mark.parametrize(
    ("arg", "defs", "expected"),
    [
        ({"type": "string", "enum": []}, {}, "offline example"),
        ({"$ref": "#/$defs/Missing"}, {}, {}),
        ({"$ref": "#/$defs/Node"}, {"$defs": {"Node": NODE}}, {"next": {}}),  # recursive
        ({"$ref": "#/definitions/N"}, {"definitions": {"N": {"type": "integer"}}}, 1),
    ],
)
def test_tool_arguments_for_unusual_schemas(client, arg, defs, expected):
    parameters = {"type": "object", "properties": {"arg": arg}, "required": ["arg"], **defs}
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}

    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "go"}], tools=[tool]
    )

    [call] = reply.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"arg": expected}


def test_default_responder_reports_only_the_latest_tool_round(client):
    def call_turn(call_id):
        function = {"name": "lookup", "arguments": "{}"}
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": function}],
        }

    history = [
        {"role": "user", "content": "first question"},
        call_turn("call_1"),
        {"role": "tool", "tool_call_id": "call_1", "name": "lookup", "content": "old result"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
        call_turn("call_2"),
        {"role": "tool", "tool_call_id": "call_2", "name": "lookup", "content": "new result"},
    ]

    reply = client.chat.completions.create(model="m", messages=history)

    content = reply.choices[0].message.content
    assert "`lookup` returned: new result" in content
    assert "old result" not in content


# ---------------------------------------------------------------- the headline features offline
# The stand-in model answers --schema, -f json and -f code in forms the magic accepts.


def ask(client, messages, **kwargs):
    """The content of one streamed answer, as the magic receives it."""
    return content_of(stream(client, messages=messages, **kwargs))


def schema_format(schema, *, name="Answer"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def check_valid(schema, value):
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
        value
    )


def obj(properties, **extra):
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


TREE = {
    "$defs": {
        "Node": obj(
            {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
            }
        )
    },
    "$ref": "#/$defs/Node",
}

SCHEMAS = {
    "enum-and-const": obj({"colour": {"enum": ["red", "green"]}, "kind": {"const": "fruit"}}),
    "formats": obj(
        {
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email"},
            "id": {"type": "string", "format": "uuid"},
            "flag": {"type": "boolean"},
        }
    ),
    "number-bounds": obj(
        {
            "share": {"type": "number", "minimum": 0, "maximum": 1},
            "positive": {"type": "number", "exclusiveMinimum": 0},
            "negative": {"type": "integer", "maximum": -5},
            "big": {"type": "integer", "minimum": 1000},
            "quarter": {"type": "number", "multipleOf": 0.25, "minimum": 3.1},
            "only_eight": {"type": "integer", "exclusiveMinimum": 7, "exclusiveMaximum": 9},
        }
    ),
    "string-constraints": obj(
        {
            "code": {"type": "string", "pattern": r"^[A-Z]{3}-\d{2}$"},
            "short": {"type": "string", "maxLength": 3},
            "long": {"type": "string", "minLength": 40},
        }
    ),
    "arrays": obj(
        {
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "minItems": 2,
                "maxItems": 2,
            },
            "distinct": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": 3,
                "uniqueItems": True,
            },
            "empty": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
        }
    ),
    "unions": obj(
        {
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 5}]},
            "either": {"oneOf": [{"type": "string", "enum": ["a"]}, {"type": "number"}]},
            "type_list": {"type": ["null", "boolean"]},
        }
    ),
    "recursive-refs": TREE,
    "all-of": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]},
        ]
    },
    "open-map": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 2}},
    "top-level-array": {"type": "array", "items": {"enum": ["x", "y"]}, "minItems": 1},
}


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_a_json_schema_response_format_gets_schema_valid_json_and_nothing_else(client, schema):
    content = ask(client, USER, response_format=schema_format(schema))

    value = json.loads(content)  # the whole answer is the JSON: no marker, no fence
    check_valid(schema, value)
    assert value not in (None, {}, [])  # an example, not an empty shell


def test_schema_answers_fill_what_the_schema_asks_for(client):
    tree = json.loads(ask(client, USER, response_format=schema_format(TREE)))
    bounds = json.loads(ask(client, USER, response_format=schema_format(SCHEMAS["number-bounds"])))
    strings = json.loads(
        ask(client, USER, response_format=schema_format(SCHEMAS["string-constraints"]))
    )

    # A recursive schema is filled once, then ends where the schema allows.
    assert tree["name"] == "offline example"
    assert tree["children"][0]["children"] == [] and tree["children"][0]["parent"] is None
    assert tree["parent"]["name"] == "offline example"
    assert bounds["only_eight"] == 8 and bounds["quarter"] == 3.25
    assert strings["code"] == "AAA-11"


class Line(pydantic.BaseModel):
    description: str
    quantity: int = pydantic.Field(ge=1)
    unit_price: float = pydantic.Field(gt=0)


class Status(enum.Enum):
    DRAFT = "draft"
    SENT = "sent"


class Invoice(pydantic.BaseModel):
    number: str = pydantic.Field(pattern=r"^INV-\d{4}$")
    issued: datetime.date
    due: datetime.datetime | None = None
    currency: Literal["EUR", "USD"]
    status: Status
    lines: list[Line] = pydantic.Field(min_length=1)
    notes: str = ""


@dataclasses.dataclass
class Folder:
    name: str
    tags: set[str]
    sizes: dict[str, int]
    parent: Folder | None = None


@pytest.mark.parametrize("cls", [Invoice, Folder], ids=["pydantic", "dataclass"])
def test_schema_answers_validate_as_the_magic_validates_them(client, cls):
    by_format = ask(client, USER, response_format=response_format_for(cls))
    # A model that rejects response_format is asked in words, with the schema in the prompt.
    in_words = ask(client, [{"role": "system", "content": instruction_for(cls)}, *USER])

    for content in (by_format, in_words):
        result = parse_structured(content, cls)
        assert result.ok, result.describe_errors()
        assert isinstance(result.value, cls)


def test_schema_answers_come_whole_without_streaming_too(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=USER, response_format=response_format_for(Invoice)
    )

    invoice = Invoice.model_validate_json(reply.choices[0].message.content)
    assert invoice.currency == "EUR" and invoice.lines[0].quantity >= 1


def json_answer(content):
    result = parse_json_answer(content)
    assert result.ok, result.describe_errors()
    return result.value


def test_json_object_and_questions_asking_for_json_get_a_scripted_json_object(client):
    asked_json = [{"role": "user", "content": "List three fruits as JSON."}]
    told_json = [{"role": "system", "content": "Reply in json only."}, *USER]

    answers = [
        json.loads(ask(client, USER, response_format={"type": "json_object"})),
        json.loads(ask(client, asked_json)),
        json.loads(ask(client, told_json)),
    ]

    for answer in answers:
        assert answer["scripted"] is True  # says it is scripted, inside the JSON
        assert "offline server" in answer["note"]
    assert answers[1]["question"] == "List three fruits as JSON."


def test_only_the_latest_question_decides_the_answer_s_form(client):
    earlier = [
        {"role": "user", "content": "Give me JSON"},
        {"role": "assistant", "content": "{}"},
        {"role": "user", "content": "Now say hello"},
    ]

    content = ask(client, earlier)

    assert content.startswith("**Offline reply**") and "> Now say hello" in content


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Write a Python function that returns the median."}],
        [{"role": "user", "content": "Show me code to read a CSV file"}],
        [
            {"role": "system", "content": "Answer with one fenced code block."},
            {"role": "user", "content": "Median of a list"},
        ],
    ],
    ids=["python-function", "code", "system-hint"],
)
def test_questions_asking_for_code_get_a_fenced_block_that_compiles(client, messages):
    content = ask(client, messages)

    code = extract_code(content)
    assert content.startswith("**Offline reply**")  # the marker, outside the code block
    assert "```python\n" in content and code is not None
    compile(code, "<answer>", "exec")
    assert "scripted" in code  # the code says so too, in a comment
    assert "Offline reply" not in code


def test_a_question_that_asks_for_nothing_special_is_still_quoted(client):
    content = ask(client, [{"role": "user", "content": "Write a haiku about autumn"}])

    assert "> Write a haiku about autumn" in content and "```" not in content


def test_after_tool_results_a_json_answer_carries_them(client):
    call = {"id": "call_1", "type": "function", "function": {"name": "mean", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "Mean of 1 and 3, as JSON"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "name": "mean", "content": "2.0"},
    ]

    answer = json_answer(ask(client, messages))
    invoice = parse_structured(
        ask(client, messages, response_format=response_format_for(Invoice)), Invoice
    )

    assert answer["tool_results"] == [{"tool": "mean", "returned": "2.0"}]
    assert invoice.ok, invoice.describe_errors()


# ------------------------------------------------------------- through the magic, as a user


def run(shell, cell):
    with capture_output() as captured:
        result = shell.run_cell(cell)
    assert result.success, captured.stdout + captured.stderr
    return captured


def test_every_model_the_server_lists_can_be_used_with_dash_m(shell, server):
    with openai.OpenAI(base_url=server.base_url, api_key="t", max_retries=0) as c:
        listed = [m.id for m in c.models.list()]
    assert "https://clarifai.com/openai/chat-completion/models/gpt-oss-120b" in listed

    for url in listed:
        for name in (model_id(url), short_path(url), url):
            run(shell, f"%clarifai -m {name} -- hello there")
            assert server.chat_requests[-1].json["model"] == url, name
            assert resolve_model(name) == url


@pytest.fixture
def offline_shell(shell):
    """The magic in offline mode: the built-in server and its stand-in model answer."""
    out = run(shell, "%clarifai offline on")
    assert "SCRIPTED" in out.stdout
    yield shell
    run(shell, "%clarifai offline off")


def test_schema_json_and_code_work_offline(offline_shell):
    shell = offline_shell
    shell.user_ns.update(Invoice=Invoice, Folder=Folder)

    run(shell, "%%clarifai --schema Invoice --out inv\nExtract the invoice: INV-0042, 3 pens.")
    run(shell, "%%clarifai --schema Folder --out folder\nDescribe my home folder.")
    run(shell, "%%clarifai -f json --out data\nList three fruits and their colours as JSON.")
    out = run(shell, "%%clarifai -f code --out code\nWrite a Python function for the median.")

    assert isinstance(shell.user_ns["inv"], Invoice)
    assert shell.user_ns["inv"].number == "INV-1111"
    assert isinstance(shell.user_ns["folder"], Folder)
    assert shell.user_ns["data"]["scripted"] is True
    compile(shell.user_ns["code"], "<cell>", "exec")
    assert "Offline reply" in json.dumps([o.data for o in out.outputs])  # marked as scripted
