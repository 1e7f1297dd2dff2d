"""The offline server's stand-in model: what it answers when no script is queued.

This is what users meet in ``%clarifai offline`` and the demo: it quotes the question back, calls
an offered tool with example arguments made from the tool's schema, and reports tool results, so
every feature of the magic can be seen working with no PAT and no network. Nothing here is a
model: the replies say they come from the offline server.
"""

from __future__ import annotations

import json
from typing import Any

from .scripts import Script, message_text, split_words, text_pieces, tool_calls


def example_value(schema: Any) -> Any:
    """A plausible value for a JSON schema, so the offline server can call any declared tool.

    Local ``$ref`` s (``#/$defs/...``, ``#/definitions/...``) are resolved; a ref that cannot be,
    or that would recurse forever, gives ``{}``.
    """
    return _example(schema, schema, frozenset())


def _example(schema: Any, root: Any, seen: frozenset[str]) -> Any:
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve_ref(root, ref)
        if target is None or ref in seen:
            return {}
        return _example(target, root, seen | {ref})
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [
            o for o in schema.get(key, ()) if isinstance(o, dict) and o.get("type") != "null"
        ]
        if options:
            return _example(options[0], root, seen)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        required = schema.get("required", list(properties))
        return {
            name: _example(properties[name], root, seen) for name in required if name in properties
        }
    if kind == "array":
        return [_example(schema.get("items", {}), root, seen)]
    samples = {"string": "example", "integer": 1, "number": 1.5, "boolean": True}
    return samples.get(kind)


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any] | None:
    """The schema a local JSON pointer ref (``#/...``) names inside ``root``, or None."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for token in filter(None, ref[1:].split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node.get(token) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def echo_reply(request: dict[str, Any]) -> Script:
    """The default responder, a stand-in model that makes every feature visible offline.

    With tools offered and a fresh question, it calls the first tool with example arguments; after
    tool results, it reports them; otherwise it quotes the last user message, word by word.
    """
    messages = request.get("messages")
    messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    model = str(request.get("model") or "offline-model").rstrip("/").rsplit("/", 1)[-1]
    tools = [t.get("function", {}) for t in request.get("tools") or () if isinstance(t, dict)]
    last = messages[-1] if messages else {}
    if tools and last.get("role") == "user":
        function = tools[0]
        arguments = json.dumps(example_value(function.get("parameters", {})) or {})
        return tool_calls([("call_offline_1", str(function.get("name")), arguments)])
    if last.get("role") == "tool":
        # Only the latest round: the tool messages after the last assistant turn calling tools.
        start = max(
            (
                i
                for i, m in enumerate(messages)
                if m.get("role") == "assistant" and m.get("tool_calls")
            ),
            default=-1,
        )
        results = [m for m in messages[start + 1 :] if m.get("role") == "tool"]
        lines = "\n".join(
            f"- `{m.get('name', 'tool')}` returned: {m.get('content')}" for m in results
        )
        reply = f"**Offline reply** from `{model}`. The tools answered:\n\n{lines}"
        return text_pieces(split_words(reply))
    last_user = next(
        (message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )
    quoted = "\n".join(f"> {line}" if line else ">" for line in last_user.splitlines())
    reply = (
        f"**Offline reply** from `{model}`. You said:\n\n{quoted or '> (nothing)'}\n\n"
        "This answer comes from the offline server; no model was called."
    )
    return text_pieces(split_words(reply))
