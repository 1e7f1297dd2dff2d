"""A conversation's next request as a standalone program for another client (``%clarifai export``).

:class:`ExportRequest` is what the store and the session know about the next request: the model
URL, the messages so far (system prompt, tool calls and results included), the tools offered and
the options given on the export line. :func:`export_program` writes it as a runnable program for
one of :data:`TARGETS`: the ``openai`` Python client, LiteLLM and ``curl`` here, the Node targets
in :mod:`clarifai_magic.export_node`. Images stay inline as data URLs, except that a program
written to a file (``-o``) keeps each image over :data:`INLINE_IMAGE_MAX_CHARS` in a file beside
it (:class:`ImageFile`), which it reads at run time relative to its own location. Every string
that came from the conversation is untrusted, so it enters the program only as a literal
(:func:`literal`, or shell quoting for curl): no message can end its string and become code. The
PAT is read from ``CLARIFAI_PAT`` at run time and never written. Pure: no IPython here.
"""

from __future__ import annotations

import base64
import binascii
import json
import keyword
import mimetypes
import re
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

TARGETS = ("openai-python", "openai-node", "vercel-ai", "litellm", "curl")
DEFAULT_API_HOST = "https://api.clarifai.com"
OPENAI_PATH = "/v2/ext/openai/v1"
DEFAULT_QUESTION = "Please continue."
# Tool rounds an exported program runs before it stops (the magic's default, too).
MAX_ROUNDS = 10
# A data URL longer than this goes into a file beside a program written with -o (inline, it
# would make the program hard to read and edit); without -o the cell suggests -o.
INLINE_IMAGE_MAX_CHARS = 256 * 1024
# `data:<type>;base64,<data>`: the only data URLs a program can rebuild byte for byte from a file.
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,([A-Za-z0-9+/]*={0,2})", re.ASCII)
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
}
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
class ImageFile:
    """An image a program reads at run time: ``path`` is relative to the program's folder."""

    path: str  # POSIX form, e.g. "app_images/1.png"
    mime: str
    data: bytes = field(repr=False)

    @property
    def url_path(self) -> str:
        """``path`` as a relative URL (Node resolves it against ``import.meta.url``)."""
        return quote(self.path)


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
    images: list[ImageFile] = field(default_factory=list)  # written beside the program
    inline_image_chars: int = 0  # characters of data URLs written inline in `code`
    large_inline_images: int = 0  # of those, the ones -o would keep in files

    def size_note(self) -> str:
        """What the cell says when the code holds large images inline ("" when it doesn't)."""
        n = self.large_inline_images
        if not n:
            return ""
        size = self.inline_image_chars
        shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{max(size // 1000, 1)} kB"
        images = "a large image" if n == 1 else f"{n} large images"
        return (
            f"This export is large: it holds {images} inline as data URLs ({shown} of code). "
            "`-o FILE` writes large images as files beside the program, which reads them when "
            "it runs."
        )


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
    if isinstance(value, ImageFile):  # read at run time by the program's own helper
        if lang == "python":
            return f"image_url({json_string(value.path)}, {json_string(value.mime)})"
        return f"imageURL({json_string(value.url_path)}, {json_string(value.mime)})"
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


def _image_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``image_url`` objects (``{"url": ...}``) of ``messages``' content parts."""
    found = []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if (
                isinstance(part, dict)
                and part.get("type") == "image_url"
                and isinstance(part.get("image_url"), dict)
            ):
                found.append(part["image_url"])
    return found


def image_chars(messages: list[dict[str, Any]]) -> int:
    """Characters of image data URLs written inline in ``messages``."""
    urls = [part.get("url") for part in _image_parts(messages)]
    return sum(len(url) for url in urls if isinstance(url, str))


def _decode_data_url(url: str) -> tuple[str, bytes] | None:
    """The MIME type and bytes of a base64 data URL, if a program can rebuild it exactly."""
    found = _DATA_URL.fullmatch(url)
    if not found:
        return None
    try:
        data = base64.b64decode(found.group(2), validate=True)
    except (binascii.Error, ValueError):
        return None
    # Non-canonical base64 (stray bits in the padding) would come back different: keep it inline.
    if base64.b64encode(data).decode("ascii") != found.group(2):
        return None
    return found.group(1), data


def images_dir(output: str) -> str:
    """The folder beside ``output`` for its images: the program's stem + ``_images``."""
    return Path(output).stem + "_images"


def externalize_images(
    request: ExportRequest, folder: str, inline_max: int = INLINE_IMAGE_MAX_CHARS
) -> tuple[ExportRequest, list[ImageFile]]:
    """``request`` with every data URL over ``inline_max`` characters replaced by an
    :class:`ImageFile` under ``folder`` (numbered in order; the same image once)."""
    messages = json.loads(json.dumps(request.messages))  # a deep copy, edited in place
    files: dict[str, ImageFile] = {}
    for part in _image_parts(messages):
        url = part.get("url")
        if not isinstance(url, str) or len(url) <= inline_max:
            continue
        decoded = _decode_data_url(url)
        if decoded is None:
            continue
        if url not in files:
            mime, data = decoded
            ext = _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ".bin"
            files[url] = ImageFile(f"{folder}/{len(files) + 1}{ext}", mime, data)
        part["url"] = files[url]
    if not files:
        return request, []
    return replace(request, messages=messages), list(files.values())


def image_files(messages: list[dict[str, Any]]) -> list[ImageFile]:
    """The :class:`ImageFile` s ``messages`` refer to, once each, in order."""
    found = [p.get("url") for p in _image_parts(messages)]
    return list(dict.fromkeys(f for f in found if isinstance(f, ImageFile)))


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
    files = image_files(request.messages)
    if files:
        folder = files[0].path.rsplit("/", 1)[0]
        notes.append(
            f"The conversation's large images are read at run time from {folder}/ beside this "
            "file (keep them together)."
        )
    elif any(
        isinstance(p.get("url"), str) and len(p["url"]) > INLINE_IMAGE_MAX_CHARS
        for p in _image_parts(request.messages)
    ):
        notes.append(
            "The conversation's images are inline below as data URLs (large): "
            "%clarifai export -o FILE writes them as files beside the program."
        )
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

_PY_IMAGE_URL = """# Images are beside this file, wherever `python dir/app.py` runs from.
HERE = Path(__file__).resolve().parent


def image_url(path, mime):
    # An image kept beside this program, as the data URL the notebook sent.
    return f"data:{mime};base64," + base64.b64encode((HERE / path).read_bytes()).decode("ascii")
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
        parts.append(_PY_IMAGE_URL)
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
    # Images kept in files go into the JSON through a stand-in, replaced by a shell step that
    # reads the file (a JSON body can't), so split the body text where they stand.
    tag = f"image-{uuid.uuid4().hex}-"
    files = image_files(messages)

    def stand_in(value: Any) -> str:
        if isinstance(value, ImageFile):
            return f"{tag}{files.index(value)}"
        raise TypeError(f"not JSON data: {type(value).__name__}")

    body_json = json.dumps(body, ensure_ascii=False, indent=2, default=stand_in)
    steps = []
    for n, piece in enumerate(re.split(re.escape(tag) + r"(\d+)", body_json)):
        if n % 2:
            image = files[int(piece)]
            steps.append(f"  data_url {shlex.quote(image.mime)} {shlex.quote(image.path)}")
        elif piece:
            steps.append(f"  printf '%s' {shlex.quote(piece)}")
    lines = [
        "#!/bin/sh",
        comments(notes, "#"),
        'API_BASE="${CLARIFAI_API_BASE:-' + DEFAULT_API_HOST + '}"',
        'API_BASE="${API_BASE%/}"',
        'case "$API_BASE" in',
        f"  *{OPENAI_PATH}) ;;",
        f'  *) API_BASE="$API_BASE{OPENAI_PATH}" ;;',
        "esac",
        ': "${CLARIFAI_PAT:?Set CLARIFAI_PAT to your Clarifai Personal Access Token.}"',
    ]
    if files:
        listed = " ".join(shlex.quote(f.path) for f in files)
        lines += [
            "# The folder of this script, not the current one: `sh some/dir/app.sh` works from"
            " anywhere.",
            'HERE=$(cd "$(dirname "$0")" && pwd)',
            f"for IMAGE in {listed}; do",
            '  [ -r "$HERE/$IMAGE" ] || { echo "Cannot read $HERE/$IMAGE: keep the images beside'
            ' this script." >&2; exit 1; }',
            "done",
            "# An image kept beside this script, as the data URL the notebook sent.",
            "data_url() {",
            "  printf 'data:%s;base64,' \"$1\"",
            "  base64 < \"$HERE/$2\" | tr -d '\\n'",
            "}",
        ]
    lines += [
        "# The request's JSON, on curl's stdin: as an argument, a long one would be refused.",
        "body() {",
        *steps,
        "}",
        "request() {",
        '  body | curl -sS -N "$API_BASE/chat/completions" \\',
        '    -H "Authorization: Bearer $CLARIFAI_PAT" \\',
        '    -H "Content-Type: application/json" \\',
        "    --data-binary @-",
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
    return "\n".join(lines)


def write_program(path: str, program: Program | str, *, force: bool) -> list[str]:
    """Write ``program`` to ``path`` and its images beside it; existing files only with
    ``force``. Returns the paths written, the program's first."""
    target = Path(path).expanduser()
    images = program.images if isinstance(program, Program) else []
    code = program.code if isinstance(program, Program) else program
    # Each image path is relative to the program's folder, as the program resolves it.
    outputs = [(target, code.encode("utf-8"))]
    outputs += [(target.parent / image.path, image.data) for image in images]
    if not force:
        for file, _ in outputs:
            if file.exists():
                raise ExportError(
                    f"{file} already exists: pick another name with -o, or add --force to "
                    "replace it" + (" and its images." if images else ".")
                )
    written = []
    for file, data in reversed(outputs):  # the images first: the program needs them
        try:
            if file != target:
                file.parent.mkdir(exist_ok=True)
            with file.open("wb" if force else "xb") as out:
                out.write(data)
        except FileExistsError:
            raise ExportError(
                f"{file} already exists: pick another name with -o, or add --force to replace it."
            ) from None
        except OSError as exc:
            raise ExportError(
                f"Could not write {file} ({exc.strerror or exc}): check the folder exists and is "
                "writable, or pick another path with -o."
            ) from None
        written.append(str(file) if file != target else path)
    return written[::-1]


def export_program(
    request: ExportRequest,
    target: str,
    output: str | None = None,
    *,
    inline_max: int = INLINE_IMAGE_MAX_CHARS,
) -> Program:
    """``request`` as a runnable program for ``target`` (one of :data:`TARGETS`).

    With ``output`` (the file it will be written to), each image data URL over ``inline_max``
    characters is kept in a file in :func:`images_dir` beside it (``Program.images``), which the
    program reads at run time; :func:`write_program` writes both.
    """
    if target not in TARGETS:
        raise ExportError(f"Unknown export target {target!r}: use one of {', '.join(TARGETS)}.")
    images: list[ImageFile] = []
    large = 0
    if output is not None:
        request, images = externalize_images(request, images_dir(output), inline_max)
    else:
        large = len(externalize_images(request, "", inline_max)[1])
    program = _program(request, target)
    return replace(
        program,
        images=images,
        inline_image_chars=image_chars(request.messages),
        large_inline_images=large,
    )


def _program(request: ExportRequest, target: str) -> Program:
    if target == "openai-python":
        code = python_program(request, litellm=False)
        return Program(target, code, "python", ".py", "pip install openai", "python FILE")
    if target == "litellm":
        code = python_program(request, litellm=True)
        return Program(target, code, "python", ".py", "pip install litellm", "python FILE")
    if target == "curl":
        notes = ["jq (optional) prints the answer's text rather than the raw stream."]
        return Program(target, curl_program(request), "sh", ".sh", "", "sh FILE", notes)
    from .export_node import node_program

    return node_program(request, target)
