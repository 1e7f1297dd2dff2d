"""The Python targets of ``%clarifai export``: the ``openai`` Python client and LiteLLM.

Both programs are the same script but for the one function that makes the request
(``CREATE``): the ``openai`` client's ``chat.completions.create``, or LiteLLM's ``completion``
with ``openai/`` + the model URL (Clarifai is an OpenAI-compatible server to it). The script
streams the answer and runs the tool loop itself: each tool is a stub function (the notebook's
own function is not exported) found by name in ``TOOL_CODE``, its result sent back as a
``role=tool`` message, for at most ``MAX_ROUNDS`` rounds. Strings from the conversation enter
only as literals (:func:`~clarifai_magic.export.literal`). Pure: no IPython here.
"""

from __future__ import annotations

import json
import keyword
import re
from typing import Any

from .export import (
    DEFAULT_API_HOST,
    MAX_ROUNDS,
    OPENAI_PATH,
    ExportRequest,
    Program,
    comments,
    common_notes,
    json_string,
    literal,
    stub_notes,
    stub_result,
)
from .export_images import PYTHON_IMAGE_READER, image_files

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
        defs.append(
            f"def {func}({_python_signature(fn.get('parameters') or {})}):\n"
            + "".join(f"    # {line}\n" for line in stub_notes(fn))
            + f"    return {stub_result(fn['name'])}\n"
        )
        entries.append(f"    {json_string(fn['name'])}: {func},")
    return "\n\n".join(defs), "TOOL_CODE = {\n" + "\n".join(entries) + "\n}\n"


def _create(request: ExportRequest, *, litellm: bool) -> str:
    """``CREATE(messages)``: the streamed request, made by the target's client."""
    tools_arg = "tools=TOOLS, " if request.tools else ""
    if litellm:
        return (
            "def CREATE(messages):\n"
            "    # LiteLLM reaches Clarifai as an OpenAI-compatible server: openai/ + the model"
            " URL.\n"
            '    return completion(model="openai/" + MODEL, api_base=base_url(), api_key=pat(),\n'
            f"                      messages=messages, {tools_arg}stream=True, **OPTIONS)\n"
        )
    return (
        "def CREATE(messages):\n"
        "    client = OpenAI(base_url=base_url(), api_key=pat())\n"
        "    return client.chat.completions.create(\n"
        f"        model=MODEL, messages=messages, {tools_arg}stream=True, **OPTIONS\n"
        "    )\n"
    )


def python_code(request: ExportRequest, *, litellm: bool) -> str:
    """The ``openai`` Python client (or LiteLLM's ``completion``) with a streamed tool loop."""
    files = image_files(request.messages)
    head = [
        *(["import base64"] if files else []),
        "import json",
        "import os",
        "import sys",
        *(["from pathlib import Path"] if files else []),
        "",
        "from litellm import completion" if litellm else "from openai import OpenAI",
    ]
    parts = ["\n".join(head), _PY_BASE_URL]
    if files:
        parts.append(PYTHON_IMAGE_READER)
    parts.append(f"MODEL = {json_string(request.model)}")
    parts.append(f"MAX_ROUNDS = {MAX_ROUNDS}")
    parts.append(f"MESSAGES = {literal(request.messages, 'python')}")
    parts.append(f"TOOLS = {literal(request.tools, 'python')}")
    parts.append(f"OPTIONS = {literal(request.options, 'python')}")
    stubs, mapping = python_stubs(request.tools)
    if stubs:
        parts.append(stubs)
    parts += [mapping, _create(request, litellm=litellm), _PY_LOOP]
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


def python_program(request: ExportRequest, target: str) -> Program:
    """``request`` for the ``openai`` Python client (``openai-python``) or ``litellm``."""
    package = "litellm" if target == "litellm" else "openai"
    code = python_code(request, litellm=target == "litellm")
    return Program(target, code, "python", ".py", f"pip install {package}", "python FILE")
