"""The ``curl`` target of ``%clarifai export``: one streamed request from a POSIX shell script.

No tool loop (a shell can't run the notebook's tools): the script sends the request, and prints
the answer's text with ``jq`` when it is installed, the raw stream when not. The JSON body goes to
curl on stdin, written by a ``body`` function of ``printf`` steps with every piece shell-quoted,
so no string from the conversation can end its quoting and run; images kept in files are spliced
in by a step that reads them (:func:`~clarifai_magic.export_images.shell_image_reader`). Pure: no
IPython here.
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from typing import Any

from .export import (
    DEFAULT_API_HOST,
    DEFAULT_QUESTION,
    OPENAI_PATH,
    ExportRequest,
    Program,
    comments,
    common_notes,
)
from .export_images import ImageFile, image_files, shell_image_reader


def curl_code(request: ExportRequest) -> str:
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
        *(shell_image_reader(files) if files else []),
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


def curl_program(request: ExportRequest) -> Program:
    """``request`` as a ``sh`` script around ``curl``."""
    notes = ["jq (optional) prints the answer's text rather than the raw stream."]
    return Program("curl", curl_code(request), "sh", ".sh", "", "sh FILE", notes)
