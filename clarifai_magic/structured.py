"""Structured answers: the ``--schema`` / ``-f json`` side of a turn.

Owns the ``response_format`` to request for a pydantic model or dataclass, the instruction used
when a model rejects ``response_format``, pulling JSON out of a chatty reply, and turning it into
a validated object or a list of field errors. Schemas, strict mode and validation are pydantic's,
through :mod:`clarifai_magic.schema` (which imports it: this module is loaded on first use).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pydantic

from .schema import (
    FieldError,
    Invalid,
    SchemaError,
    is_pydantic_model,
    json_schema,
    strict_schema,
    validate,
)

__all__ = [
    "FieldError",
    "SchemaError",
    "StructuredResult",
    "extract_json",
    "instruction_for",
    "parse_json_answer",
    "parse_structured",
    "response_format_for",
    "schema_for",
]


@dataclass
class StructuredResult:
    """A reply parsed against a schema: ``value`` when valid, else ``errors``; ``raw`` always."""

    value: Any | None
    raw: str
    errors: list[FieldError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def describe_errors(self) -> str:
        """One line per failed field, for showing the user what did not validate."""
        return "\n".join(f"{e.path or '(reply)'}: {e.message}" for e in self.errors)


def schema_for(cls: Any) -> dict[str, Any]:
    """The JSON schema of a pydantic model class (its own) or a dataclass."""
    if is_pydantic_model(cls):
        return cls.model_json_schema()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        return json_schema(cls, cls.__name__, recursive=True)
    raise SchemaError(
        f"--schema needs a pydantic model class or a dataclass; {cls!r} is neither. Define one, "
        "for example `@dataclass class Invoice: total: float`, and pass its name."
    )


# ---------------------------------------------------------------- response_format


def response_format_for(cls: Any, *, strict: bool = True) -> dict[str, Any]:
    """The ``response_format`` asking for JSON that follows ``cls``'s schema.

    With ``strict`` the schema is made strict-mode compliant; a schema that cannot be (one with an
    open ``dict`` field) is sent with ``strict: false`` rather than being rejected by the server.
    """
    schema = schema_for(cls)
    if strict:
        try:
            schema = strict_schema(schema)
        except SchemaError:
            strict = False
    name = re.sub(r"[^A-Za-z0-9_-]", "_", cls.__name__)[:64]
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": strict},
    }


def instruction_for(cls: Any) -> str:
    """The instruction used instead of ``response_format`` for models that reject it."""
    schema = json.dumps(schema_for(cls), indent=2, ensure_ascii=False)
    return (
        "Answer with only one JSON value that follows this JSON schema: no prose before or "
        "after it, no Markdown code fences, no comments. Use exactly the property names in the "
        f"schema and fill every required property.\n\nJSON schema:\n{schema}"
    )


# ---------------------------------------------------------------- reading replies

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket matching ``text[start]``, skipping JSON strings; or None."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


_OPENER = re.compile(r"[{\[]")


def extract_json(text: str) -> str:
    """The JSON part of a model's reply.

    Drops ``<think>`` blocks and prefers the contents of the first code fence that holds JSON.
    Then looks at each top-level ``{...}`` or ``[...]`` (never inside another) and returns the
    first that parses. An opening bracket never closed (a reply cut short) ends the search: the
    rest of the text from it is returned, so the parse error says the JSON is incomplete.
    Otherwise the first balanced one (so the parse error points at it), or the stripped text (a
    bare scalar such as ``42``). Linear in the length of the text.
    """
    text = _THINK.sub("", text).strip()
    for match in _FENCE.finditer(text):
        body = match.group(1).strip()
        if body.startswith(("{", "[")):
            text = body
            break
    decoder = json.JSONDecoder()
    first_balanced: str | None = None
    pos = 0
    while opener := _OPENER.search(text, pos):
        start = opener.start()
        try:
            _, end = decoder.raw_decode(text, start)
            return text[start:end]
        except (json.JSONDecodeError, RecursionError):
            pass
        # The decoder stops at or before the matching bracket, so each character is scanned
        # a bounded number of times.
        close = _balanced_end(text, start)
        if close is None:
            return text[start:]
        if first_balanced is None:
            first_balanced = text[start:close]
        pos = close
    return first_balanced if first_balanced is not None else text


def _loads(text: str) -> tuple[Any, FieldError | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text) or exc.msg.startswith("Unterminated string"):
            message = (
                "Not valid JSON: it is incomplete (unterminated; the reply stops inside it, "
                f"perhaps cut short by the token limit): {exc}"
            )
        else:
            message = f"Not valid JSON: {exc}"
        return None, FieldError("", message)
    except RecursionError:
        return None, FieldError("", "Not valid JSON: it is nested too deeply to read.")


def parse_json_answer(text: str) -> StructuredResult:
    """Parse a ``-f json`` reply: the JSON value, or one error saying why it is not JSON."""
    value, error = _loads(extract_json(text))
    return StructuredResult(value, text, [error] if error else [])


def parse_structured(text: str, cls: Any) -> StructuredResult:
    """Validate a reply against a pydantic model or dataclass; errors name the failed fields."""
    data, error = _loads(extract_json(text))
    if error:
        return StructuredResult(None, text, [error])
    schema = schema_for(cls)  # raises the SchemaError explaining what --schema accepts
    # Keys the class does not declare are ignored (pydantic's default); strict mode's nulls for
    # "the default" are dropped.
    adapter = cls if is_pydantic_model(cls) else pydantic.TypeAdapter(cls)
    try:
        return StructuredResult(validate(adapter, data, schema), text)
    except Invalid as exc:
        return StructuredResult(None, text, exc.errors)
