"""A conversation's next request as a standalone program for another client (``%clarifai export``).

:class:`ExportRequest` is what the store and the session know about the next request: the model
URL, the messages so far (system prompt, tool calls and results included), the tools offered and
the options given on the export line. :func:`export_program` writes it as a runnable program for
one of :data:`TARGETS`: the ``openai`` Python client, LiteLLM and ``curl`` here, the Node targets
in :mod:`clarifai_magic.export_node`. Every string that came from the conversation is untrusted, so
it enters the program only as a literal (:func:`literal`, or shell quoting for curl): no message can
end its string and become code. The PAT is read from ``CLARIFAI_PAT`` at run time and never
written. Pure: no IPython here.
"""

from __future__ import annotations

import json
import keyword
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGETS = ("openai-python", "openai-node", "vercel-ai", "litellm", "curl")
DEFAULT_API_HOST = "https://api.clarifai.com"
OPENAI_PATH = "/v2/ext/openai/v1"
DEFAULT_QUESTION = "Please continue."
# Tool rounds an exported program runs before it stops (the magic's default, too).
MAX_ROUNDS = 10
# Images are kept inline as data URLs; past this many characters in all, the program says so.
BIG_IMAGES_CHARS = 1_000_000
# The keys of a stored message that are part of the chat completions API (no store extras).
_MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")
# Characters JSON leaves raw that a source file should not hold raw: lone surrogates can't be
# written as UTF-8, and U+2028/U+2029 end a line for some JavaScript tools.
_RAW_UNSAFE = re.compile("[\ud800-\udfff\u2028\u2029]")


class ExportError(ValueError):
    """The export can't be made as asked; the message says what to do."""


@dataclass(frozen=True)
class ExportRequest:
    """The next request of a conversation, as far as the notebook knows it."""

    model: str  # the full Clarifai model URL
    messages: list[dict[str, Any]]  # system prompt and history, as the API takes them
    tools: list[dict[str, Any]] = field(default_factory=list)  # the `tools=[...]` entries
    temperature: float | None = None
    max_tokens: int | None = None
    question: str = DEFAULT_QUESTION  # asked next, unless the last message is a question

    @property
    def system(self) -> str | None:
        first = self.messages[0] if self.messages else {}
        return first.get("content") if first.get("role") == "system" else None

    @property
    def asks_next(self) -> bool:
        """Does the program add a question (the conversation ends with an answer)?"""
        return not self.messages or self.messages[-1].get("role") != "user"

    @property
    def options(self) -> dict[str, Any]:
        found = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        return {k: v for k, v in found.items() if v is not None}


@dataclass(frozen=True)
class Program:
    """An exported program: its code, and what to tell the user about running it."""

    target: str
    code: str
    lang: str  # for the code block: python, javascript, sh
    suffix: str  # the file name ending `node`/`python`/`sh` expects
    install: str  # the command that installs what it needs ("" for curl)
    run: str  # how to run it, with FILE where its name goes
    notes: list[str] = field(default_factory=list)


def clean_messages(
    messages: list[dict[str, Any]], redact: Callable[[str], str] = lambda s: s
) -> list[dict[str, Any]]:
    """Stored messages as the API takes them: only its keys, every string through ``redact``."""

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        return value

    return [{k: scrub(m[k]) for k in _MESSAGE_KEYS if k in m} for m in messages]


def json_string(text: str) -> str:
    """``text`` as a double-quoted literal that JSON, JavaScript and Python all read the same."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _RAW_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def literal(value: Any, lang: str, indent: int = 0) -> str:
    """``value`` (JSON data) as a Python or JavaScript literal, indented by four spaces a level."""
    words = {"python": ("None", "True", "False"), "javascript": ("null", "true", "false")}[lang]
    pad, inner = " " * indent, " " * (indent + 4)
    if value is None:
        return words[0]
    if isinstance(value, bool):
        return words[1] if value else words[2]
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json_string(value)
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [inner + literal(v, lang, indent + 4) for v in value]
        return "[\n" + ",\n".join(items) + f",\n{pad}]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{json_string(str(k))}: {literal(v, lang, indent + 4)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f",\n{pad}}}"
    raise TypeError(f"not JSON data: {type(value).__name__}")


def image_chars(messages: list[dict[str, Any]]) -> int:
    """Characters of image data URLs in ``messages``."""
    total = 0
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                total += len(str((part.get("image_url") or {}).get("url", "")))
    return total


def common_notes(request: ExportRequest) -> list[str]:
    """What every target's program says about itself, as comment lines."""
    notes = [
        "The next request of a notebook conversation, exported by %clarifai export.",
        "Reads your PAT from CLARIFAI_PAT; CLARIFAI_API_BASE (e.g. the offline server) "
        "overrides the endpoint.",
    ]
    if request.asks_next:
        notes.append(
            "The question asked next is the first command-line argument "
            f"(default: {DEFAULT_QUESTION!r} or the one given with --ask)."
        )
    if not request.options:
        notes.append(
            "Temperature and max tokens: the notebook does not store them per request; "
            "add them here if your cells set them."
        )
    if image_chars(request.messages) > BIG_IMAGES_CHARS:
        notes.append("The conversation's images are inline below as data URLs (large).")
    return notes


def comments(lines: list[str], mark: str) -> str:
    return "\n".join(f"{mark} {line}".rstrip() for line in lines)


def python_name(name: str, taken: set[str]) -> str:
    """A Python identifier for a tool's stub (tool names may hold ``-``)."""
    base = re.sub(r"\W", "_", name) or "tool"
    if base[0].isdigit() or keyword.iskeyword(base):
        base = "tool_" + base
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _python_signature(parameters: dict[str, Any]) -> str:
    props = list((parameters.get("properties") or {}).keys())
    required = set(parameters.get("required") or [])
    plain = all(p.isidentifier() and not keyword.iskeyword(p) for p in props)
    if not plain:
        return "**args"
    ordered = [p for p in props if p in required] + [p for p in props if p not in required]
    return ", ".join(p if p in required else f"{p}=None" for p in ordered)


def python_stubs(tools: list[dict[str, Any]]) -> tuple[str, str]:
    """A stub function per tool, and the ``TOOL_CODE`` mapping from tool names to them."""
    taken: set[str] = set()
    defs, entries = [], []
    for entry in tools:
        fn = entry["function"]
        func = python_name(fn["name"], taken)
        doc = (fn.get("description") or "").splitlines()
        defs.append(
            f"def {func}({_python_signature(fn.get('parameters') or {})}):\n"
            + (f"    # {doc[0]}\n" if doc else "")
            + f"    # Put the real code of {fn['name']} here: the notebook's function is not"
            " exported.\n"
            + "    # What it returns is sent back to the model as the tool's result.\n"
            + f"    return {json_string(fn['name'] + ' is a stub: no result yet.')}\n"
        )
        entries.append(f"    {json_string(fn['name'])}: {func},")
    return "\n\n".join(defs), "TOOL_CODE = {\n" + "\n".join(entries) + "\n}\n"


_PY_BASE_URL = f"""def base_url():
    host = (os.environ.get("CLARIFAI_API_BASE") or {json.dumps(DEFAULT_API_HOST)}).rstrip("/")
    if "://" not in host:
        host = "https://" + host
    return host if host.endswith({json.dumps(OPENAI_PATH)}) else host + {json.dumps(OPENAI_PATH)}


def pat():
    found = os.environ.get("CLARIFAI_PAT")
    if not found:
        sys.exit("Set CLARIFAI_PAT to your Clarifai Personal Access Token, then run this again.")
    return found
"""

_PY_LOOP = """def run_tool(name, arguments):
    try:
        result = TOOL_CODE[name](**json.loads(arguments or "{}"))
    except Exception as exc:  # the model sees the error and may try again
        return f"Error: {exc}"
    return result if isinstance(result, str) else json.dumps(result)


def ask(messages):
    for _ in range(MAX_ROUNDS):
        stream = CREATE(messages)
        text, calls = "", {}
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.content:
                print(delta.content, end="", flush=True)
                text += delta.content
            for call in delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
        if not calls:
            print()
            return
        messages.append({
            "role": "assistant",
            "content": text or None,
            "tool_calls": [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls.values()
            ],
        })
        for c in calls.values():
            print(f"\\n[{c['name']}({c['arguments']})]", flush=True)
            result = run_tool(c["name"], c["arguments"])
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": result})
    print(f"\\nStopped after {MAX_ROUNDS} rounds of tool calls.")
"""


def python_program(request: ExportRequest, *, litellm: bool) -> str:
    """The ``openai`` Python client (or LiteLLM's ``completion``) with a streamed tool loop."""
    head = [
        "import json",
        "import os",
        "import sys",
        "",
        "from litellm import completion" if litellm else "from openai import OpenAI",
    ]
    parts = ["\n".join(head), _PY_BASE_URL]
    parts.append(f"MODEL = {json_string(request.model)}")
    parts.append(f"MAX_ROUNDS = {MAX_ROUNDS}")
    parts.append(f"MESSAGES = {literal(request.messages, 'python')}")
    parts.append(f"TOOLS = {literal(request.tools, 'python')}")
    parts.append(f"OPTIONS = {literal(request.options, 'python')}")
    stubs, mapping = python_stubs(request.tools)
    if stubs:
        parts.append(stubs)
    parts.append(mapping)
    tools_arg = "tools=TOOLS, " if request.tools else ""
    if litellm:
        create = (
            "def CREATE(messages):\n"
            "    # LiteLLM reaches Clarifai as an OpenAI-compatible server: openai/ + the model"
            " URL.\n"
            '    return completion(model="openai/" + MODEL, api_base=base_url(), api_key=pat(),\n'
            f"                      messages=messages, {tools_arg}stream=True, **OPTIONS)\n"
        )
    else:
        create = (
            "def CREATE(messages):\n"
            "    client = OpenAI(base_url=base_url(), api_key=pat())\n"
            "    return client.chat.completions.create(\n"
            f"        model=MODEL, messages=messages, {tools_arg}stream=True, **OPTIONS\n"
            "    )\n"
        )
    parts.append(create)
    parts.append(_PY_LOOP)
    if request.asks_next:
        question = f"sys.argv[1] if len(sys.argv) > 1 else {json_string(request.question)}"
        main = (
            'if __name__ == "__main__":\n'
            f"    question = {question}\n"
            '    ask(MESSAGES + [{"role": "user", "content": question}])\n'
        )
    else:
        main = 'if __name__ == "__main__":\n    ask(list(MESSAGES))\n'
    parts.append(main)
    return comments(common_notes(request), "#") + "\n" + "\n\n".join(parts)


def curl_program(request: ExportRequest) -> str:
    """One streamed request with ``curl`` (no tool loop: a shell can't run the tools)."""
    messages = request.messages
    if request.asks_next:
        messages = [*messages, {"role": "user", "content": request.question}]
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": True}
    if request.tools:
        body["tools"] = request.tools
    body.update(request.options)
    notes = common_notes(request)
    if request.asks_next:
        notes[2] = f"The question asked next: {DEFAULT_QUESTION!r} (or --ask), in the JSON body."
    if request.tools:
        notes.append(
            "One request: when the model calls a tool, run it yourself and send its result in a "
            "role=tool message (the Python and Node exports do this loop)."
        )
    notes.append("With jq installed the answer's text is printed; without it, the raw stream.")
    body_json = json.dumps(body, ensure_ascii=False, indent=2)
    return "\n".join(
        [
            "#!/bin/sh",
            comments(notes, "#"),
            'API_BASE="${CLARIFAI_API_BASE:-' + DEFAULT_API_HOST + '}"',
            'API_BASE="${API_BASE%/}"',
            'case "$API_BASE" in',
            f"  *{OPENAI_PATH}) ;;",
            f'  *) API_BASE="$API_BASE{OPENAI_PATH}" ;;',
            "esac",
            ': "${CLARIFAI_PAT:?Set CLARIFAI_PAT to your Clarifai Personal Access Token.}"',
            f"BODY={shlex.quote(body_json)}",
            "request() {",
            '  curl -sS -N "$API_BASE/chat/completions" \\',
            '    -H "Authorization: Bearer $CLARIFAI_PAT" \\',
            '    -H "Content-Type: application/json" \\',
            '    --data-binary "$BODY"',
            "}",
            "if command -v jq >/dev/null 2>&1; then",
            "  request | sed -n 's/^data: {/{/p' \\",
            "    | jq --unbuffered -rj '.choices[0].delta | (.content // empty), (.tool_calls"
            ' // [] | .[] | (if .function.name then "\\n[tool call] \\(.function.name) " else ""'
            ' end) + (.function.arguments // ""))\'',
            "  echo",
            "else",
            "  request",
            "fi",
            "",
        ]
    )


def write_program(path: str, code: str, *, force: bool) -> None:
    """Write ``code`` to ``path``; an existing file only with ``force``."""
    target = Path(path).expanduser()
    try:
        with target.open("w" if force else "x", encoding="utf-8") as out:
            out.write(code)
    except FileExistsError:
        raise ExportError(
            f"{path} already exists: pick another name with -o, or add --force to replace it."
        ) from None
    except OSError as exc:
        raise ExportError(
            f"Could not write {path} ({exc.strerror or exc}): check the folder exists and is "
            "writable, or pick another path with -o."
        ) from None


def export_program(request: ExportRequest, target: str) -> Program:
    """``request`` as a runnable program for ``target`` (one of :data:`TARGETS`)."""
    if target == "openai-python":
        code = python_program(request, litellm=False)
        return Program(target, code, "python", ".py", "pip install openai", "python FILE")
    if target == "litellm":
        code = python_program(request, litellm=True)
        return Program(target, code, "python", ".py", "pip install litellm", "python FILE")
    if target == "curl":
        notes = ["jq (optional) prints the answer's text rather than the raw stream."]
        return Program(target, curl_program(request), "sh", ".sh", "", "sh FILE", notes)
    if target in ("openai-node", "vercel-ai"):
        from .export_node import node_program

        return node_program(request, target)
    raise ExportError(f"Unknown export target {target!r}: use one of {', '.join(TARGETS)}.")
