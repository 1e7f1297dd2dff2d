"""The offline server's stand-in model: what it answers when no script is queued.

This is what users meet in ``%clarifai offline`` and the demo, so every feature of the magic
can be seen working with no PAT and no network:

- offered tools are called with example arguments made from their schemas, and their results
  reported;
- a ``response_format`` JSON schema (``--schema``) gets example JSON that the schema accepts, and
  ``json_object``, a JSON schema in the prompt, or a question or system prompt that says "JSON"
  (``-f json``) get a JSON object;
- a question asking for code (``-f code``) gets a fenced Python block that compiles;
- anything else is quoted back.

Nothing here is a model, and the replies say so: prose answers start with **Offline reply**,
example code carries a comment saying it is scripted, a JSON object says ``"scripted": true``,
and free-text strings in schema answers read ``offline example`` (the JSON itself must stay
exactly what the schema asks for).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from .examples import example_value
from .scripts import Script, message_text, split_words, text_pieces, tool_calls

__all__ = ["EXAMPLE_CODE", "echo_reply", "example_value"]

EXAMPLE_CODE = '''\
# Example code from the offline server: scripted, not written by a model.
def mean(values: list[float]) -> float:
    """Arithmetic mean of some numbers (0.0 when there are none)."""
    return sum(values) / len(values) if values else 0.0


print(mean([88, 92, 79, 95, 61]))
'''

# Words that make a question ask for code. "Write a" alone does not: "write a haiku".
_CODE_WORDS = re.compile(r"\b(code|python|function|script|snippet|program)\b", re.IGNORECASE)
# A system prompt asking for a code block (the magic's hint for -f code, or the user's own).
_CODE_HINT = re.compile(r"code block|```", re.IGNORECASE)
_JSON_WORD = re.compile(r"\bjson\b", re.IGNORECASE)
# How clarifai_magic.structured.instruction_for introduces the schema when a model rejects
# response_format: the schema follows as JSON.
_SCHEMA_INTRO = "JSON schema:"


@dataclass(frozen=True)
class Wanted:
    """What kind of answer a request asks for, and the schema for ``kind == "schema"``."""

    kind: Literal["schema", "json", "code", "text"]
    schema: dict[str, Any] | None = None


def wanted_answer(request: dict[str, Any]) -> Wanted:
    """What the request asks for: its ``response_format`` first, then what its words say.

    Only the system prompts and the latest question count, so an earlier question that asked
    for JSON does not turn every later answer into JSON.
    """
    messages = _messages(request)
    response_format = request.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            return Wanted("schema", schema) if isinstance(schema, dict) else Wanted("json")
        if kind == "json_object":
            return Wanted("json")
    system = [message_text(m.get("content")) for m in messages if m.get("role") == "system"]
    question = _last_user_text(messages)
    for text in (*system, question):
        schema = _schema_in(text)
        if schema is not None:
            return Wanted("schema", schema)
    # A system prompt (the magic's format hint) decides before the question's words do.
    if any(_JSON_WORD.search(text) for text in system):
        return Wanted("json")
    if any(_CODE_HINT.search(text) for text in system):
        return Wanted("code")
    if _JSON_WORD.search(question):
        return Wanted("json")
    if _CODE_WORDS.search(question):
        return Wanted("code")
    return Wanted("text")


def echo_reply(request: dict[str, Any]) -> Script:
    """The default responder, a stand-in model that makes every feature visible offline.

    With tools offered and a fresh question, it calls the first tool with example arguments.
    Otherwise it answers what :func:`wanted_answer` says the request wants: example JSON,
    example code, the tools' results, or the last question quoted back, word by word.
    """
    messages = _messages(request)
    model = str(request.get("model") or "offline-model").rstrip("/").rsplit("/", 1)[-1]
    tools = [t.get("function", {}) for t in request.get("tools") or () if isinstance(t, dict)]
    last = messages[-1] if messages else {}
    if tools and last.get("role") == "user":
        function = tools[0]
        arguments = json.dumps(example_value(function.get("parameters", {})) or {})
        return tool_calls([("call_offline_1", str(function.get("name")), arguments)])
    results = _latest_tool_results(messages) if last.get("role") == "tool" else []
    question = _last_user_text(messages)
    wanted = wanted_answer(request)
    if wanted.kind == "schema":
        return _say(json.dumps(example_value(wanted.schema), indent=2, ensure_ascii=False))
    if wanted.kind == "json":
        answer: dict[str, Any] = {
            "scripted": True,
            "note": "An example answer from the offline server: no model was called.",
            "model": model,
            "question": question,
        }
        if results:
            answer["tool_results"] = [
                {"tool": m.get("name", "tool"), "returned": m.get("content")} for m in results
            ]
        return _say(json.dumps(answer, indent=2, ensure_ascii=False))
    reported = _report(results)
    if wanted.kind == "code":
        return _say(
            f"**Offline reply** from `{model}`: example code, scripted by the offline server "
            f"(no model was called).{reported}\n\n```python\n{EXAMPLE_CODE}```\n"
        )
    if results:
        return _say(f"**Offline reply** from `{model}`. The tools answered:{reported}")
    quoted = "\n".join(f"> {line}" if line else ">" for line in question.splitlines())
    return _say(
        f"**Offline reply** from `{model}`. You said:\n\n{quoted or '> (nothing)'}\n\n"
        "This answer comes from the offline server; no model was called."
    )


def _say(reply: str) -> Script:
    return text_pieces(split_words(reply))


def _messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    messages = request.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    return next(
        (message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )


def _latest_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool messages after the last assistant turn that called tools (the latest round)."""
    start = max(
        (i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("tool_calls")),
        default=-1,
    )
    return [m for m in messages[start + 1 :] if m.get("role") == "tool"]


def _report(results: list[dict[str, Any]]) -> str:
    lines = "\n".join(f"- `{m.get('name', 'tool')}` returned: {m.get('content')}" for m in results)
    return f"\n\n{lines}" if lines else ""


def _schema_in(text: str) -> dict[str, Any] | None:
    """The JSON schema a prompt spells out after "JSON schema:", if any."""
    start = text.find(_SCHEMA_INTRO)
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    try:
        schema, _ = json.JSONDecoder().raw_decode(text, brace)
    except (ValueError, RecursionError):
        return None
    return schema if isinstance(schema, dict) else None
