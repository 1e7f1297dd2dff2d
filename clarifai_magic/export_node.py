"""The Node.js targets of ``%clarifai export``: the ``openai`` Node client and the Vercel AI SDK.

Both are plain ES modules that ``node FILE.mjs`` runs (no TypeScript toolchain), written so that
the same code also passes ``tsc --strict`` saved as ``.ts``: parameters get their types from
default values (``{ city = "" } = {}``), the conversation's data goes through ``JSON.parse`` (to
TypeScript, untyped JSON: its plain strings would not match the clients' literal types), and tools
are looked up through a ``Map`` (an object can't be indexed by any string). The ``openai``
client sends the stored messages as they are and loops over ``tool_calls`` itself; the AI SDK
(v6) takes its own message shapes (``tool-call`` / ``tool-result`` parts, converted here by
:func:`sdk_messages`) and runs the tool loop with ``tool({..., inputSchema: jsonSchema(...)})``
and ``stopWhen: stepCountIs(n)``, each tool's ``execute`` calling the same ``runTool`` stub lookup.
Images kept in files are read with ``readFileSync(new URL(path, import.meta.url))``
(:data:`~clarifai_magic.export_images.NODE_IMAGE_READER`): relative to the program's own file,
not the current folder. Strings from the conversation enter only as JSON literals
(:func:`~clarifai_magic.export.literal`). Pure: no IPython here.
"""

from __future__ import annotations

import json
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
from .export_images import NODE_IMAGE_READER, image_files

# Names a destructured parameter can't take as they are.
_JS_RESERVED = frozenset((
    "arguments", "await", "break", "case", "catch", "class", "const", "continue", "debugger",
    "default", "delete", "do", "else", "enum", "eval", "export", "extends", "false", "finally",
    "for", "function", "if", "implements", "import", "in", "instanceof", "interface", "let", "new",
    "null", "package", "private", "protected", "public", "return", "static", "super", "switch",
    "this", "throw", "true", "try", "typeof", "var", "void", "while", "with", "yield",
))  # fmt: skip
_JS_NAME = re.compile(r"[A-Za-z_$][\w$]*", re.ASCII)
# A default per JSON type: it gives the parameter its type in TypeScript.
_JS_DEFAULTS = {
    "string": "",
    "integer": 0,
    "number": 0,
    "boolean": False,
    "array": [],
    "object": {},
}

_JS_DATA_NOTE = (
    "// JSON.parse(JSON.stringify(...)): a copy TypeScript reads as untyped JSON, so its plain\n"
    '// strings ("user", "function") need no casts where the client wants literal types.'
)

_JS_HELPERS = f"""function baseURL() {{
  let host = (process.env.CLARIFAI_API_BASE || {json.dumps(DEFAULT_API_HOST)}).replace(/\\/+$/, "");
  if (!host.includes("://")) host = "https://" + host;
  return host.endsWith({json.dumps(OPENAI_PATH)}) ? host : host + {json.dumps(OPENAI_PATH)};
}}

function pat() {{
  const found = process.env.CLARIFAI_PAT;
  if (!found) {{
    console.error("Set CLARIFAI_PAT to your Clarifai Personal Access Token, then run this again.");
    process.exit(1);
  }}
  return found;
}}
"""

_JS_RUN_TOOL = """// The model's arguments come as JSON text.
async function runTool(name = "", argumentsJson = "") {
  const code = new Map(Object.entries(TOOL_CODE)).get(name);
  if (!code) return `Error: there is no tool ${name}.`;
  try {
    const result = await code(JSON.parse(argumentsJson || "{}"));
    return typeof result === "string" ? result : JSON.stringify(result);
  } catch (error) {
    return `Error: ${error}`;  // the model sees the error and may try again
  }
}
"""

_JS_NO_TOOLS = """// No tools were offered, so the model has none to call.
async function runTool(name = "", argumentsJson = "") {
  return `Error: there is no tool ${name} (arguments: ${argumentsJson}).`;
}
"""

_OPENAI_LOOP = """async function ask(messages = [...MESSAGES]) {
  const client = new OpenAI({ baseURL: baseURL(), apiKey: pat() });
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      ...(TOOLS.length ? { tools: TOOLS } : {}),
      stream: true,
      ...OPTIONS,
    });
    let text = "";
    const calls = new Map();
    for await (const chunk of stream) {
      const delta = chunk.choices?.[0]?.delta;
      if (!delta) continue;
      if (delta.content) {
        process.stdout.write(delta.content);
        text += delta.content;
      }
      for (const call of delta.tool_calls ?? []) {
        const slot = calls.get(call.index) ?? { id: "", name: "", arguments: "" };
        calls.set(call.index, slot);
        if (call.id) slot.id = call.id;
        slot.name += call.function?.name ?? "";
        slot.arguments += call.function?.arguments ?? "";
      }
    }
    if (calls.size === 0) {
      process.stdout.write("\\n");
      return;
    }
    messages.push({
      role: "assistant",
      content: text || null,
      tool_calls: [...calls.values()].map((c) => ({
        id: c.id,
        type: "function",
        function: { name: c.name, arguments: c.arguments },
      })),
    });
    for (const c of calls.values()) {
      process.stdout.write(`\\n[${c.name}(${c.arguments})]\\n`);
      const result = await runTool(c.name, c.arguments);
      messages.push({ role: "tool", tool_call_id: c.id, content: result });
    }
  }
  console.log(`\\nStopped after ${MAX_ROUNDS} rounds of tool calls.`);
}
"""


def _args_comment(parameters: dict[str, Any]) -> str:
    required = set(parameters.get("required") or [])
    fields = [
        f"{name}{'' if name in required else '?'}: {spec.get('type', 'any')}"
        for name, spec in (parameters.get("properties") or {}).items()
        if isinstance(spec, dict)
    ]
    return "{ " + ", ".join(fields) + " }" if fields else "{}"


def _js_parameters(parameters: dict[str, Any]) -> str:
    """The stub's parameter: the arguments object destructured, each name with a default of its
    type (or the schema's default), or ``args = {}`` when a name or type doesn't allow it."""
    props = parameters.get("properties") or {}
    fields = []
    for name, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        if not _JS_NAME.fullmatch(name) or name in _JS_RESERVED:
            return "args = {}"
        if "default" in spec:
            default = spec["default"]
        elif spec.get("type") in _JS_DEFAULTS:
            default = _JS_DEFAULTS[spec["type"]]
        else:
            return "args = {}"
        fields.append(f"{name} = {literal(default, 'javascript').replace(chr(10), ' ')}")
    return "{ " + ", ".join(fields) + " } = {}" if fields else "args = {}"


def js_stubs(tools: list[dict[str, Any]]) -> str:
    """``TOOL_CODE``: a stub per tool name, taking the model's arguments as one object."""
    entries = []
    for entry in tools:
        fn = entry["function"]
        parameters = fn.get("parameters") or {}
        notes = stub_notes(fn, f"args: {_args_comment(parameters)}")
        lines = [
            f"  {json_string(fn['name'])}: async ({_js_parameters(parameters)}) => {{",
            *(f"    // {line}" for line in notes),
            f"    return {stub_result(fn['name'])};",
            "  },",
        ]
        entries.append("\n".join(lines))
    return "const TOOL_CODE = {\n" + "\n".join(entries) + "\n};\n"


def _untyped(value: Any) -> str:
    return f"JSON.parse(JSON.stringify({literal(value, 'javascript')}))"


def _imports(request: ExportRequest, *lines: str) -> str:
    if image_files(request.messages):
        lines = (*lines, 'import { readFileSync } from "node:fs";')
    return "\n".join(lines) + "\n"


def _image_helper(request: ExportRequest) -> list[str]:
    return [NODE_IMAGE_READER] if image_files(request.messages) else []


def _tool_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            names[call.get("id", "")] = (call.get("function") or {}).get("name", "")
    return names


def _sdk_content(content: Any) -> Any:
    if not isinstance(content, list):
        return content or ""
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            parts.append({"type": "image", "image": (part.get("image_url") or {}).get("url", "")})
    return parts


def _arguments(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}  # the model's broken JSON: the SDK wants an object


def sdk_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat completions messages (no system prompt) as the AI SDK's ``ModelMessage`` list."""
    names = _tool_names(messages)
    converted: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "system":
            continue
        if role == "assistant" and m.get("tool_calls"):
            parts: list[dict[str, Any]] = []
            if m.get("content"):
                parts.append({"type": "text", "text": m["content"]})
            for call in m["tool_calls"]:
                fn = call.get("function") or {}
                parts.append(
                    {
                        "type": "tool-call",
                        "toolCallId": call.get("id", ""),
                        "toolName": fn.get("name", ""),
                        "input": _arguments(fn.get("arguments", "")),
                    }
                )
            converted.append({"role": "assistant", "content": parts})
        elif role == "tool":
            call_id = m.get("tool_call_id", "")
            result = {
                "type": "tool-result",
                "toolCallId": call_id,
                "toolName": m.get("name") or names.get(call_id, ""),
                "output": {"type": "text", "value": str(m.get("content") or "")},
            }
            converted.append({"role": "tool", "content": [result]})
        else:
            converted.append({"role": role, "content": _sdk_content(m.get("content"))})
    return converted


def _question_line(request: ExportRequest) -> str:
    return f"const QUESTION = process.argv[2] ?? {json_string(request.question)};"


def openai_node(request: ExportRequest) -> str:
    parts = [
        comments(common_notes(request), "//"),
        _imports(request, 'import OpenAI from "openai";'),
        _JS_HELPERS,
        *_image_helper(request),
        f"const MODEL = {json_string(request.model)};",
        f"const MAX_ROUNDS = {MAX_ROUNDS};",
        _JS_DATA_NOTE,
        f"const MESSAGES = {_untyped(request.messages)};",
        f"const TOOLS = {_untyped(request.tools)};",
        f"const OPTIONS = {literal(request.options, 'javascript')};\n",
    ]
    parts += [js_stubs(request.tools), _JS_RUN_TOOL] if request.tools else [_JS_NO_TOOLS]
    parts.append(_OPENAI_LOOP)
    if request.asks_next:
        parts.append(
            _question_line(request)
            + '\nawait ask([...MESSAGES, { role: "user", content: QUESTION }]);\n'
        )
    else:
        parts.append("await ask();\n")
    return "\n".join(parts)


def vercel_ai(request: ExportRequest) -> str:
    options = {"temperature": request.temperature, "maxOutputTokens": request.max_tokens}
    options = {k: v for k, v in options.items() if v is not None}
    tool_defs = []
    for entry in request.tools:
        fn = entry["function"]
        name = json_string(fn["name"])
        schema = literal(fn.get("parameters") or {}, "javascript", 4)
        tool_defs.append(
            f"  {name}: tool({{\n"
            f"    description: {json_string(fn.get('description') or '')},\n"
            f"    inputSchema: jsonSchema({schema}),\n"
            f"    execute: async (input) => runTool({name}, JSON.stringify(input)),\n"
            "  }),"
        )
    tools = "const TOOLS = {\n" + "\n".join(tool_defs) + "\n};\n" if tool_defs else ""
    tools = tools or "const TOOLS = {};\n"
    messages = "[...MESSAGES]"
    if request.asks_next:
        messages = '[...MESSAGES, { role: "user", content: QUESTION }]'
    parts = [
        comments(common_notes(request), "//"),
        _imports(
            request,
            'import { createOpenAICompatible } from "@ai-sdk/openai-compatible";',
            'import { jsonSchema, stepCountIs, streamText, tool } from "ai";',
        ),
        _JS_HELPERS,
        *_image_helper(request),
        f"const MODEL = {json_string(request.model)};",
        f"const MAX_ROUNDS = {MAX_ROUNDS};",
        f"const SYSTEM = {literal(request.system, 'javascript')};",
        _JS_DATA_NOTE,
        f"const MESSAGES = {_untyped(sdk_messages(request.messages))};",
        f"const OPTIONS = {literal(options, 'javascript')};\n",
        *([js_stubs(request.tools), _JS_RUN_TOOL] if request.tools else []),
        tools,
        _question_line(request) if request.asks_next else "",
        'const clarifai = createOpenAICompatible({ name: "clarifai", baseURL: baseURL(), '
        "apiKey: pat() });",
        "const result = streamText({",
        "  model: clarifai(MODEL),",
        "  ...(SYSTEM ? { system: SYSTEM } : {}),",
        f"  messages: {messages},",
        "  tools: TOOLS,",
        "  stopWhen: stepCountIs(MAX_ROUNDS),  // the SDK runs the tool loop, a step per round",
        "  ...OPTIONS,",
        "  onError: ({ error }) => {",
        "    console.error(String(error));",
        "    process.exitCode = 1;",
        "  },",
        "});",
        "for await (const text of result.textStream) process.stdout.write(text);",
        'process.stdout.write("\\n");',
        "",
    ]
    return "\n".join(parts)


def node_program(request: ExportRequest, target: str) -> Program:
    """``request`` for the ``openai`` Node client or the Vercel AI SDK."""
    if target == "vercel-ai":
        install = "npm install ai @ai-sdk/openai-compatible"
        return Program(target, vercel_ai(request), "javascript", ".mjs", install, "node FILE")
    return Program(
        target, openai_node(request), "javascript", ".mjs", "npm install openai", "node FILE"
    )
