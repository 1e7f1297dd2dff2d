"""Structured answers: JSON schemas from pydantic models or dataclasses, and validating replies.

Owns the ``--schema`` / ``-f json`` side of a turn: the ``response_format`` to request, the
instruction used when a model rejects ``response_format``, pulling JSON out of a chatty reply, and
turning it into a validated object or a list of field errors. pydantic is optional: a model class
is recognised by its methods, never by importing pydantic here.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class SchemaError(TypeError):
    """A class cannot be described as a JSON schema; the message says why and what to use."""


@dataclass
class FieldError:
    """One validation failure; ``path`` looks like ``items[0].price`` ("" for the whole reply)."""

    path: str
    message: str


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


def _is_pydantic_model(cls: Any) -> bool:
    return isinstance(cls, type) and all(
        hasattr(cls, name) for name in ("model_json_schema", "model_validate_json")
    )


def _is_dataclass_type(cls: Any) -> bool:
    return isinstance(cls, type) and dataclasses.is_dataclass(cls)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError) as exc:
        raise SchemaError(
            f"Cannot read the field types of {cls.__name__}: {exc}. Define the dataclass (and the "
            "types it refers to) at the top level of the notebook or a module."
        ) from None


def _init_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _own_doc(cls: type) -> str | None:
    doc = (cls.__doc__ or "").strip()
    # @dataclass invents a docstring like "Invoice(total: float)"; it says nothing to a model.
    return doc if doc and not doc.startswith(f"{cls.__name__}(") else None


# ---------------------------------------------------------------- schemas from dataclasses


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"enum": values}
    kinds = {type(v) for v in values}
    if kinds == {str}:
        schema["type"] = "string"
    elif kinds == {int}:
        schema["type"] = "integer"
    return schema


def _type_schema(tp: Any, defs: dict[str, Any], where: str) -> dict[str, Any]:
    if tp is Any or tp is object:
        return {}
    if tp is type(None) or tp is None:
        return {"type": "null"}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if tp in simple:
        return {"type": simple[tp]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_schema([m.value for m in tp])
    if _is_dataclass_type(tp):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # placeholder first, so a recursive dataclass terminates
            defs[tp.__name__] = _dataclass_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return _enum_schema(list(args))
    if origin in (typing.Union, types.UnionType):
        arms = [_type_schema(a, defs, where) for a in args]
        return {"anyOf": arms}
    if tp in (list, tuple, set, frozenset) or origin in (list, set, frozenset):
        if not args:
            return {"type": "array"}
        return {"type": "array", "items": _type_schema(args[0], defs, where)}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0], defs, where)}
        items = [_type_schema(a, defs, where) for a in args]
        return {"type": "array", "prefixItems": items, "minItems": len(args), "maxItems": len(args)}
    if tp is dict or origin is dict:
        schema: dict[str, Any] = {"type": "object"}
        if args:
            schema["additionalProperties"] = _type_schema(args[1], defs, where)
        return schema
    raise SchemaError(
        f"{where} has the type {tp!r}, which has no JSON schema here. Use str, int, float, bool, "
        "list, dict, Optional, Literal, an Enum or a nested dataclass (or a pydantic model)."
    )


def _dataclass_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = _hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in _init_fields(cls):
        prop = _type_schema(hints[f.name], defs, f"The field {cls.__name__}.{f.name}")
        if "description" in f.metadata:
            prop = {**prop, "description": str(f.metadata["description"])}
        properties[f.name] = prop
        no_default = f.default is dataclasses.MISSING
        if no_default and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    schema: dict[str, Any] = {"type": "object", "title": cls.__name__, "properties": properties}
    if required:
        schema["required"] = required
    if doc := _own_doc(cls):
        schema["description"] = doc
    return schema


def schema_for(cls: Any) -> dict[str, Any]:
    """The JSON schema of a pydantic model class or a dataclass."""
    if _is_pydantic_model(cls):
        return cls.model_json_schema()
    if _is_dataclass_type(cls):
        defs: dict[str, Any] = {}
        schema = _dataclass_schema(cls, defs)
        if defs:  # nested dataclasses (and the class itself, if it refers to itself)
            schema["$defs"] = defs
        return schema
    raise SchemaError(
        f"--schema needs a pydantic model class or a dataclass; {cls!r} is neither. Define one, "
        "for example `@dataclass class Invoice: total: float`, and pass its name."
    )


# ---------------------------------------------------------------- response_format


def _strict(node: Any, root: dict[str, Any]) -> bool:
    """Make ``node`` follow OpenAI's strict-mode rules in place; False if it cannot.

    Strict mode wants every object closed (``additionalProperties: false``) with every property
    required. Optional fields simply become required: the model then fills in a value, and the
    reply still validates against the class (a nullable field stays nullable).
    """
    if not isinstance(node, dict):
        return True
    ok = True
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1 and ref.startswith("#/$defs/"):
        # Strict mode rejects keywords next to $ref (pydantic puts descriptions there): inline it.
        target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        del node["$ref"]
        node.update({**copy.deepcopy(target), **node})
    node.pop("default", None)  # every field is required in strict mode, so defaults mean nothing
    if "properties" in node:
        node["additionalProperties"] = False
        node["required"] = list(node["properties"])
    elif node.get("type") == "object":
        ok = False  # a dict field: strict mode cannot express open keys
    for key in ("properties", "$defs"):
        for child in node.get(key, {}).values():
            ok = _strict(child, root) and ok
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        for child in node.get(key, []):
            ok = _strict(child, root) and ok
    for key in ("items", "additionalProperties"):
        ok = _strict(node.get(key), root) and ok
    return ok


def response_format_for(cls: Any, *, strict: bool = True) -> dict[str, Any]:
    """The ``response_format`` asking for JSON that follows ``cls``'s schema.

    With ``strict`` the schema is made strict-mode compliant; a schema that cannot be (one with an
    open ``dict`` field) is sent with ``strict: false`` rather than being rejected by the server.
    """
    schema = schema_for(cls)
    if strict:
        schema = copy.deepcopy(schema)
        strict = _strict(schema, schema)
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


def extract_json(text: str) -> str:
    """The JSON part of a model's reply.

    Drops ``<think>`` blocks and prefers the contents of the first code fence that holds JSON. Then
    returns the first ``{...}`` or ``[...]`` that parses; failing that the first balanced one (so
    the parse error points at it); failing that the stripped text (a bare scalar such as ``42``).
    """
    text = _THINK.sub("", text).strip()
    for match in _FENCE.finditer(text):
        body = match.group(1).strip()
        if body.startswith(("{", "[")):
            text = body
            break
    starts = [i for i, ch in enumerate(text) if ch in "{["]
    decoder = json.JSONDecoder()
    for start in starts:
        try:
            _, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        return text[start:end]
    for start in starts:
        end = _balanced_end(text, start)
        if end is not None:
            return text[start:end]
    return text[starts[0] :] if starts else text


def _loads(text: str) -> tuple[Any, FieldError | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, FieldError("", f"Not valid JSON: {exc}")


def parse_json_answer(text: str) -> StructuredResult:
    """Parse a ``-f json`` reply: the JSON value, or one error saying why it is not JSON."""
    value, error = _loads(extract_json(text))
    return StructuredResult(value, text, [error] if error else [])


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _loc_path(loc: tuple[Any, ...] | list[Any]) -> str:
    path = ""
    for part in loc:
        path = _child(path, part)
    return path


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return kinds.get(type(value), type(value).__name__)


class _Invalid(Exception):
    """Internal: a value did not convert; the errors are already recorded."""


def _convert(value: Any, tp: Any, path: str, errors: list[FieldError]) -> Any:
    """``value`` (decoded JSON) as an instance of ``tp``; records errors and raises _Invalid."""

    def fail(message: str) -> typing.NoReturn:
        errors.append(FieldError(path, message))
        raise _Invalid

    def expected(kind: str) -> typing.NoReturn:
        fail(f"expected {kind}, got {_json_kind(value)}")

    if tp is Any or tp is object:
        return value
    if tp is type(None) or tp is None:
        return value if value is None else expected("null")
    if tp is bool:
        return value if isinstance(value, bool) else expected("boolean")
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok else expected("integer")
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else expected("number")
    if tp is str:
        return value if isinstance(value, str) else expected("string")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(json.dumps(m.value) for m in tp)
            fail(f"expected one of {allowed}, got {json.dumps(value)}")
    if _is_dataclass_type(tp):
        return _convert_dataclass(value, tp, path, errors)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        fail(f"expected one of {', '.join(json.dumps(a) for a in args)}, got {json.dumps(value)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # Optional[X]: report X's own errors, with their precise paths
            return _convert(value, arms[0], path, errors)
        for arm in arms:
            try:
                return _convert(value, arm, path, [])
            except _Invalid:
                continue
        fail(f"{_json_kind(value)} matches none of the allowed types")
    if tp in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset):
        if not isinstance(value, list):
            expected("array")
        container = origin or tp
        if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                fail(f"expected {len(args)} items, got {len(value)}")
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(value)
        items, bad = [], False
        for i, (item, item_tp) in enumerate(zip(value, item_types, strict=True)):
            try:
                items.append(_convert(item, item_tp, _child(path, i), errors))
            except _Invalid:
                bad = True
        if bad:
            raise _Invalid
        return items if container is list else container(items)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            expected("object")
        value_tp = args[1] if args else Any
        out, bad = {}, False
        for key, item in value.items():
            try:
                out[key] = _convert(item, value_tp, _child(path, key), errors)
            except _Invalid:
                bad = True
        if bad:
            raise _Invalid
        return out
    fail(f"cannot check values of type {tp!r}")


def _convert_dataclass(value: Any, cls: type, path: str, errors: list[FieldError]) -> Any:
    if not isinstance(value, dict):
        errors.append(FieldError(path, f"expected object, got {_json_kind(value)}"))
        raise _Invalid
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    bad = False
    for f in _init_fields(cls):
        field_path = _child(path, f.name)
        if f.name not in value:
            has_default = f.default is not dataclasses.MISSING
            if not has_default and f.default_factory is dataclasses.MISSING:
                errors.append(FieldError(field_path, "field required"))
                bad = True
            continue
        try:
            kwargs[f.name] = _convert(value[f.name], hints[f.name], field_path, errors)
        except _Invalid:
            bad = True
    # Keys the class does not declare are ignored, as pydantic does by default.
    if bad:
        raise _Invalid
    try:
        return cls(**kwargs)
    except Exception as exc:  # __post_init__ checks are the user's own validation
        errors.append(FieldError(path, f"{cls.__name__} rejected the values: {exc}"))
        raise _Invalid from None


def parse_structured(text: str, cls: Any) -> StructuredResult:
    """Validate a reply against a pydantic model or dataclass; errors name the failed fields."""
    json_text = extract_json(text)
    data, error = _loads(json_text)
    if error:
        return StructuredResult(None, text, [error])
    if _is_pydantic_model(cls):
        from pydantic import ValidationError  # present: cls is a pydantic model

        try:
            return StructuredResult(cls.model_validate_json(json_text), text)
        except ValidationError as exc:
            errors = [FieldError(_loc_path(e["loc"]), e["msg"]) for e in exc.errors()]
            return StructuredResult(None, text, errors)
    if not _is_dataclass_type(cls):
        schema_for(cls)  # raises the SchemaError explaining what --schema accepts
    errors: list[FieldError] = []
    try:
        return StructuredResult(_convert_dataclass(data, cls, "", errors), text)
    except _Invalid:
        return StructuredResult(None, text, errors)


# ---------------------------------------------------------------- falling back

_FORMAT_WORDS = (
    "response_format",
    "response format",
    "json_schema",
    "json schema",
    "structured output",
    "guided_json",
)
_UNSUPPORTED_WORDS = ("not supported", "unsupported", "not implemented", "not permitted")


def rejects_response_format(error_message: str, status: int | None) -> bool:
    """Whether a failed request means "this model does not take ``response_format``".

    True when the server names the parameter (any status but auth, not-found and rate limits,
    since runners report it as 400, 422 or 500), or when a 400/422 only says something is not
    supported. The caller then retries once with :func:`instruction_for` instead.
    """
    if status in (401, 403, 404, 429):
        return False
    message = error_message.lower()
    if any(word in message for word in _FORMAT_WORDS):
        return True
    return status in (400, 422) and any(word in message for word in _UNSUPPORTED_WORDS)
