"""Scripts for the offline server: what one chat request is answered with, and their builders.

A :class:`Script` describes one HTTP response. Streamed scripts hold the SSE ``data:`` payloads in
order (chunk bodies without the ``id``/``object``/``created``/``model`` envelope, which the server
fills per request); non-streamed ones (``http_error``) hold a status and a body. The builders
produce the shapes real OpenAI-compatible servers send (see CLARIFAI_API.md, "Streaming").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Literal

UsageSpec = tuple[int, int] | None | Literal["auto"]
UsageOn = Literal["final", "finish"] | None

AUTO: Literal["auto"] = "auto"
DEFAULT_CHUNK_SIZE = 4

# OpenAI error `type` per HTTP status, for error bodies that look like the real thing.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass
class Script:
    """One HTTP response to one ``POST .../chat/completions``.

    ``events`` are SSE payloads in order: a dict with a ``choices`` key is a chunk (the server adds
    the missing envelope keys), any other dict is sent verbatim (error shapes), a ``str`` is sent
    as the raw ``data:`` text. ``body`` set means a plain, non-streamed response (errors).
    """

    events: list[dict[str, Any] | str] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | str | None = None
    delay: float = 0.0
    delay_first: float = 0.0
    done: bool = True
    drop: bool = False
    usage: UsageSpec = AUTO
    usage_on: UsageOn = "final"
    # What usage="auto" reports as completion tokens: the number of streamed pieces.
    completion_units: int = 0
    # A hostile server: after ``events``, send ``flood_event`` over and over, as fast as the
    # client reads, for up to ``flood`` seconds (bounded so that no test can hang on it).
    flood: float = 0.0
    flood_event: dict[str, Any] | None = None

    @property
    def streamed(self) -> bool:
        """True for SSE scripts, False for plain (error) responses."""
        return self.body is None

    def hold(self, seconds: float) -> Script:
        """A copy that waits ``seconds`` after the response headers before the first event."""
        return replace(self, delay_first=seconds)


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """A chunk body (no envelope) with one choice carrying ``delta``."""
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def split_text(content: str, chunk_size: int | None = None, chunks: int | None = None) -> list[str]:
    """``content`` in pieces of ``chunk_size`` chars, or in ``chunks`` roughly equal pieces."""
    if not content:
        return []
    if chunks is not None:
        n = max(1, min(chunks, len(content)))
        bounds = [len(content) * i // n for i in range(n + 1)]
        return [content[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    size = max(1, chunk_size or DEFAULT_CHUNK_SIZE)
    return [content[i : i + size] for i in range(0, len(content), size)]


def split_words(content: str) -> list[str]:
    """``content`` in word pieces (each word with the whitespace after it); joins back exactly."""
    return re.findall(r"\s*\S+\s*", content) or ([content] if content else [])


def _role_events(role_first: bool, empty_first: bool) -> list[dict[str, Any] | str]:
    events: list[dict[str, Any] | str] = []
    if empty_first:
        # Some providers open with a chunk whose delta carries nothing useful at all.
        events.append(chunk({}))
    if role_first:
        events.append(chunk({"role": "assistant", "content": ""}))
    return events


def text_pieces(
    pieces: list[str],
    *,
    delay: float = 0.0,
    reasoning: list[str] | None = None,
    think_tags: bool = False,
    usage: UsageSpec = AUTO,
    usage_on: UsageOn = "final",
    empty_first: bool = False,
    role_first: bool = True,
    finish_reason: str | None = "stop",
) -> Script:
    """Like :func:`text`, with the content (and reasoning) already cut into pieces."""
    events = _role_events(role_first, empty_first)
    reasoning = reasoning or []
    if reasoning and think_tags:
        # Tags travel whole, as the single tokens they are for Qwen3 / DeepSeek-R1.
        for piece in ["<think>", *reasoning, "</think>"]:
            events.append(chunk({"content": piece}))
    else:
        events.extend(chunk({"reasoning_content": piece}) for piece in reasoning)
    events.extend(chunk({"content": piece}) for piece in pieces)
    events.append(chunk({}, finish_reason))
    return Script(
        events=events,
        delay=delay,
        usage=usage,
        usage_on=usage_on,
        completion_units=len(pieces) + len(reasoning),
    )


def text(
    content: str,
    *,
    chunk_size: int | None = None,
    chunks: int | None = None,
    delay: float = 0.0,
    reasoning: str | None = None,
    think_tags: bool = False,
    usage: UsageSpec = AUTO,
    usage_on: UsageOn = "final",
    empty_first: bool = False,
    role_first: bool = True,
    finish_reason: str | None = "stop",
) -> Script:
    """A streamed text answer: optional reasoning first, then ``content`` in pieces, then finish.

    Pieces are ``chunk_size`` chars (default 4) or ``chunks`` roughly equal parts. ``reasoning``
    streams as ``delta.reasoning_content`` or, with ``think_tags``, inside ``<think>...</think>``
    in the content. ``usage="auto"`` reports (prompt chars // 4, number of streamed pieces);
    ``usage_on="final"`` adds a trailing ``choices: []`` usage chunk, ``"finish"`` puts usage on
    the finish chunk (``usage: null`` before it), ``None`` sends no usage.
    """
    return text_pieces(
        split_text(content, chunk_size, chunks),
        delay=delay,
        reasoning=split_text(reasoning or "", chunk_size, chunks),
        think_tags=think_tags,
        usage=usage,
        usage_on=usage_on,
        empty_first=empty_first,
        role_first=role_first,
        finish_reason=finish_reason,
    )


def tool_calls(
    calls: list[tuple[str, str, str]],
    *,
    text_before: str | None = None,
    first_index: int = 0,
    split: int = 3,
    interleave: bool = False,
    whole: bool = False,
    delay: float = 0.0,
    usage: UsageSpec = AUTO,
    usage_on: UsageOn = "final",
    finish_reason: str | None = "tool_calls",
) -> Script:
    """A streamed tool-call answer; ``calls`` are ``(id, name, arguments_json)``.

    The first delta of each call carries id, type, name and ``arguments: ""``; the arguments
    follow in ``split`` fragments. ``text_before`` streams content first (Claude-style, then use
    ``first_index=1``); ``interleave`` alternates the calls' deltas; ``whole`` sends each call
    complete in one delta.
    """
    events = _role_events(role_first=True, empty_first=False)
    before = split_text(text_before or "")
    events.extend(chunk({"content": piece}) for piece in before)

    per_call: list[list[dict[str, Any]]] = []
    for offset, (call_id, name, arguments) in enumerate(calls):
        index = first_index + offset
        if whole:
            fn = {"name": name, "arguments": arguments}
            per_call.append([{"index": index, "id": call_id, "type": "function", "function": fn}])
            continue
        head = {"index": index, "id": call_id, "type": "function"}
        deltas = [{**head, "function": {"name": name, "arguments": ""}}]
        deltas.extend(
            {"index": index, "function": {"arguments": fragment}}
            for fragment in split_text(arguments, chunks=split)
        )
        per_call.append(deltas)

    if interleave:
        # Round-robin by position: every call's head, then every call's first fragment, ...
        ordered = [
            deltas[i]
            for i in range(max((len(d) for d in per_call), default=0))
            for deltas in per_call
            if i < len(deltas)
        ]
    else:
        ordered = [delta for deltas in per_call for delta in deltas]
    events.extend(chunk({"tool_calls": [delta]}) for delta in ordered)
    events.append(chunk({}, finish_reason))
    return Script(
        events=events,
        delay=delay,
        usage=usage,
        usage_on=usage_on,
        completion_units=len(before) + len(ordered),
    )


def http_error(
    status: int,
    *,
    message: str | None = None,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | str | None = None,
) -> Script:
    """A plain (non-streamed) error response, OpenAI error JSON unless ``body`` is given.

    Example: ``http_error(429, headers={"Retry-After": "0"})``.
    """
    if body is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        body = {
            "error": {
                "message": message or f"{phrase} (offline server)",
                "type": _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error"),
                "code": status,
            }
        }
    return Script(status=status, headers=dict(headers or {}), body=body, usage=None)


def mid_stream_error(
    after_text: str = "partial ",
    *,
    shape: Literal["openai", "clarifai"] = "openai",
    message: str = "The model failed while generating (offline server).",
) -> Script:
    """HTTP 200, some text, then an error event.

    ``shape="openai"``: ``{"error": {...}}`` (the client raises ``APIError``) and no ``[DONE]``.
    ``shape="clarifai"``: the model runner's ``{"code", "description", "details"}`` then
    ``[DONE]`` (the client yields a chunk whose ``choices`` is ``None``).
    """
    events = _role_events(role_first=True, empty_first=False)
    events.extend(chunk({"content": piece}) for piece in split_text(after_text))
    if shape == "openai":
        events.append({"error": {"message": message, "type": "server_error", "code": 500}})
    else:
        events.append({"code": 21317, "description": "Model prediction failed", "details": message})
    return Script(events=events, done=shape != "openai", usage=None)


def drop(after_text: str = "partial ") -> Script:
    """HTTP 200, some text, then the socket closes with neither ``[DONE]`` nor the end chunk."""
    events = _role_events(role_first=True, empty_first=False)
    events.extend(chunk({"content": piece}) for piece in split_text(after_text))
    return Script(events=events, done=False, drop=True, usage=None)


def raw(chunks: list[dict[str, Any] | str], *, delay: float = 0.0, done: bool = True) -> Script:
    """Stream ``chunks`` as given (dicts with ``choices`` get the missing envelope keys)."""
    return Script(events=list(chunks), delay=delay, done=done, usage=None)


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "\n".join(parts)
    return ""


def prompt_chars(request: dict[str, Any]) -> int:
    """Characters of text in the request's messages (what usage="auto" counts as the prompt)."""
    messages = request.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(len(message_text(m.get("content"))) for m in messages if isinstance(m, dict))


def endless(piece: str = "spam ", *, seconds: float = 30.0, reasoning: bool = False) -> Script:
    """A stream that never finishes on its own: ``piece`` again and again for ``seconds``."""
    key = "reasoning_content" if reasoning else "content"
    return Script(
        events=_role_events(role_first=True, empty_first=False),
        flood=seconds,
        flood_event=chunk({key: piece * max(1, 4096 // max(1, len(piece)))}),
        done=False,
        usage=None,
    )
