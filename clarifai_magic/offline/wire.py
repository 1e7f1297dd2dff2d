"""What the offline server sends: a :class:`Script` rendered for one request, as SSE events or
one ``chat.completion`` body, with the usage it reports and the model list entries.

The shapes are those of Clarifai's OpenAI-compatible endpoint (see CLARIFAI_API.md).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from .scripts import Script, prompt_chars

BASE_PATH = "/v2/ext/openai/v1"
DEFAULT_MODEL = "offline-model"

# Compact separators like Python servers (pydantic) send; UTF-8 unescaped, so multi-byte text
# can straddle the client's reads as it does with real servers.
encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_DONE = b"data: [DONE]\n\n"


def render_events(
    script: Script, request: dict[str, Any], response_id: str, created: int
) -> list[bytes]:
    """The SSE events of ``script`` for ``request``, encoded, usage and ``[DONE]`` included."""
    envelope = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": request.get("model") or DEFAULT_MODEL,
    }
    usage = resolve_usage(script, request)
    usage_on_finish = usage is not None and script.usage_on == "finish"
    out = []
    for event in script.events:
        if isinstance(event, str):
            payload = event
        elif "choices" in event:
            body = {**envelope, **event}
            if usage_on_finish:
                body["usage"] = usage if _finishes(event) else None
            payload = encode_json(body)
        else:
            payload = encode_json(event)
        out.append(b"data: " + payload.encode() + b"\n\n")
    if usage is not None and script.usage_on == "final":
        # Sent whether or not the request asked for stream_options.include_usage: Clarifai's
        # runner forces include_usage when streaming.
        final = encode_json({**envelope, "choices": [], "usage": usage})
        out.append(b"data: " + final.encode() + b"\n\n")
    if script.done:
        out.append(_DONE)
    return out


def render_flood(
    script: Script, request: dict[str, Any], response_id: str, created: int
) -> bytes | None:
    """What a hostile ``script`` (``flood``) sends over and over after its events, or None."""
    if script.flood <= 0 or script.flood_event is None:
        return None
    one = replace(script, events=[script.flood_event], usage=None, done=False)
    return b"".join(render_events(one, request, response_id, created) * 64)


def completion_body(
    script: Script, request: dict[str, Any], response_id: str, created: int
) -> tuple[int, dict[str, Any]]:
    """``script`` as one non-streamed ``chat.completion`` (status 500 if it streams an error)."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = None
    for event in script.events:
        if isinstance(event, str):
            continue
        if "choices" not in event:
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            message = error.get("message") or event.get("details") or event.get("description")
            body = {"error": {"message": message, "type": "server_error", "code": 500}}
            return 500, body
        for choice in event.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or "")
            for part in delta.get("tool_calls") or []:
                call = calls.setdefault(
                    part.get("index", 0),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = part.get("id") or call["id"]
                fn = part.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            finish_reason = choice.get("finish_reason") or finish_reason
    text = "".join(content)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": request.get("model") or DEFAULT_MODEL,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
    }
    usage = resolve_usage(script, request)
    if usage is not None:
        body["usage"] = usage
    return 200, body


def resolve_usage(script: Script, request: dict[str, Any]) -> dict[str, int] | None:
    """The usage object ``script`` reports for ``request``, or None when it sends none."""
    if script.usage is None or script.usage_on is None:
        return None
    if script.usage == "auto":
        prompt, completion = prompt_chars(request) // 4, script.completion_units
    else:
        prompt, completion = script.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finishes(event: dict[str, Any]) -> bool:
    return any(c.get("finish_reason") for c in event.get("choices") or [])


def is_chat(path: str) -> bool:
    return urlsplit(path).path.rstrip("/") == BASE_PATH + "/chat/completions"


def model_entry(model_id: str) -> dict[str, Any]:
    # Clarifai URLs name the owner first: https://clarifai.com/USER/APP/models/MODEL.
    owner = model_id.removeprefix("https://clarifai.com/").split("/", 1)[0] or "clarifai"
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}
