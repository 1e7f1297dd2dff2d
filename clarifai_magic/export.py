"""A conversation's next request as a standalone program for another client (``%clarifai export``).

:class:`ExportRequest` is what the store and the session know about the next request: the model
URL, the messages so far (system prompt, tool calls and results included), the tools offered and
the options given on the export line. :func:`export_program` writes it as a :class:`Program` for
one of :data:`TARGETS`, and :func:`write_program` saves it. This module owns those and what every
target shares: literals (:func:`literal`), the notes a program starts with, the text of a tool's
stub. The targets are written by :mod:`~clarifai_magic.export_python` (``openai`` Python client,
LiteLLM), :mod:`~clarifai_magic.export_node` (``openai`` Node client, Vercel AI SDK) and
:mod:`~clarifai_magic.export_curl`; large images kept in files beside a program by
:mod:`~clarifai_magic.export_images`. Every string that came from the conversation is untrusted,
so it enters a program only as a literal (:func:`literal`, or shell quoting for curl): no message
can end its string and become code. The PAT is read from ``CLARIFAI_PAT`` at run time and never
written. Pure: no IPython here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .export_images import (
    INLINE_IMAGE_MAX_CHARS,
    ImageFile,
    externalize_images,
    image_chars,
    image_notes,
    images_dir,
    size_note,
)

TARGETS = ("openai-python", "openai-node", "vercel-ai", "litellm", "curl")
DEFAULT_API_HOST = "https://api.clarifai.com"
OPENAI_PATH = "/v2/ext/openai/v1"
DEFAULT_QUESTION = "Please continue."
# Tool rounds an exported program runs before it stops (the magic's default, too).
MAX_ROUNDS = 10
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
    images: list[ImageFile] = field(default_factory=list)  # written beside the program
    inline_image_chars: int = 0  # characters of data URLs written inline in `code`
    large_inline_images: int = 0  # of those, the ones -o would keep in files

    def size_note(self) -> str:
        """What the cell says when the code holds large images inline ("" when it doesn't)."""
        return size_note(self.large_inline_images, self.inline_image_chars)


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
    if isinstance(value, ImageFile):  # read at run time by the program's reader (export_images)
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
    return notes + image_notes(request.messages)


def comments(lines: list[str], mark: str) -> str:
    return "\n".join(f"{mark} {line}".rstrip() for line in lines)


def stub_notes(fn: dict[str, Any], *between: str) -> list[str]:
    """The comment lines of a tool's stub (``fn`` is its ``function`` entry): the first line of
    its description, ``between``, then where the real code goes."""
    return [
        *(fn.get("description") or "").splitlines()[:1],
        *between,
        f"Put the real code of {fn['name']} here: the notebook's function is not exported.",
        "What it returns is sent back to the model as the tool's result.",
    ]


def stub_result(name: str) -> str:
    """What a tool's stub returns, as a literal: the model sees it as the tool's result."""
    return json_string(name + " is a stub: no result yet.")


def write_program(path: str, program: Program | str, *, force: bool) -> list[str]:
    """Write ``program`` to ``path`` and its images beside it; existing files only with
    ``force``. Returns the paths written, the program's first."""
    target = Path(path).expanduser()
    images = program.images if isinstance(program, Program) else []
    code = program.code if isinstance(program, Program) else program
    # Each image path is relative to the program's folder, as the program resolves it.
    outputs = [(target, code.encode("utf-8"))]
    outputs += [(target.parent / image.path, image.data) for image in images]

    def exists(file: Path) -> ExportError:
        return ExportError(
            f"{file} already exists: pick another name with -o, or add --force to replace it"
            + (" and its images." if images else ".")
        )

    if not force:
        for file, _ in outputs:
            if file.exists():
                raise exists(file)
    written = []
    for file, data in reversed(outputs):  # the images first: the program needs them
        try:
            if file != target:
                file.parent.mkdir(exist_ok=True)
            with file.open("wb" if force else "xb") as out:
                out.write(data)
        except FileExistsError:  # made since the check above
            raise exists(file) from None
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
    characters is kept in a file in :func:`~clarifai_magic.export_images.images_dir` beside it
    (``Program.images``), which the program reads at run time; :func:`write_program` writes both.
    """
    if target not in TARGETS:
        raise ExportError(f"Unknown export target {target!r}: use one of {', '.join(TARGETS)}.")
    images: list[ImageFile] = []
    large = 0
    if output is not None:
        messages, images = externalize_images(request.messages, images_dir(output), inline_max)
        request = replace(request, messages=messages)
    else:
        large = len(externalize_images(request.messages, "", inline_max)[1])
    return replace(
        _program(request, target),
        images=images,
        inline_image_chars=image_chars(request.messages),
        large_inline_images=large,
    )


def _program(request: ExportRequest, target: str) -> Program:
    # The target modules import this one, so they are imported here rather than at the top.
    if target in ("openai-python", "litellm"):
        from .export_python import python_program

        return python_program(request, target)
    if target == "curl":
        from .export_curl import curl_program

        return curl_program(request)
    from .export_node import node_program

    return node_program(request, target)
