"""Python types as JSON Schema, and JSON as Python values, on pydantic.

The one layer behind tool parameters (``tools``) and structured answers (``structured``):

- :func:`json_schema` describes a type (or a pydantic model, such as a tool's parameters built
  with ``create_model``) through ``TypeAdapter(...).json_schema()``, with a generator that adds
  what pydantic leaves out: docstring and ``Annotated[..., "text"]`` descriptions, defaults from
  a ``default_factory``, no titles. Classes are written out in place (``$defs`` only for a class
  that contains itself, when ``recursive``), so a schema stands alone.
- :func:`strict_schema` is openai's own strict-mode rewrite (what ``.parse()`` sends), plus the
  two things the conversation relies on: an optional property becomes nullable (null then means
  "use the default"), and what strict mode can't express is refused with :class:`SchemaError`.
- :func:`validate` drops those nulls, then validates with ``validate_json`` (JSON as JSON spells
  it: dates and enums as strings, even for strict models); failures become :class:`Invalid`.

No input makes these raise ``RecursionError``: too deep becomes the error each one gives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import typing
import warnings
from collections.abc import Mapping
from typing import Annotated, Any, get_args, get_origin

import docstring_parser
import pydantic
from pydantic.json_schema import GenerateJsonSchema, NoDefault

_SUPPORTED = (
    "str, int, float, bool, None, list[...], tuple[...], dict[str, ...], Literal, Enum, "
    "Optional/unions, datetime/date/time, dataclasses, TypedDict or pydantic models"
)
# Enough for the model to fix its call; a huge bad list would otherwise flood the context.
MAX_LISTED_ERRORS = 10
_MAX_MESSAGE_CHARS = 200
_TOO_DEEP = "the value is nested too deeply to convert"


class SchemaError(TypeError):
    """A type can't be described as JSON Schema; the message says why and what to use."""


@dataclasses.dataclass
class FieldError:
    """One validation failure; ``path`` looks like ``items[0].price`` ("" for the whole value)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class Invalid(ValueError):
    """A value that does not validate: the first errors, and how many there were in all."""

    def __init__(self, errors: list[FieldError], total: int | None = None) -> None:
        self.errors, self.total = errors, len(errors) if total is None else total
        super().__init__(describe(self))


def describe(invalid: Invalid) -> str:
    """The errors on one line, at most :data:`MAX_LISTED_ERRORS` of them."""
    listed = "; ".join(str(e) for e in invalid.errors[:MAX_LISTED_ERRORS])
    hidden = invalid.total - min(len(invalid.errors), MAX_LISTED_ERRORS)
    return f"{listed}; and {hidden} more" if hidden > 0 else listed


@dataclasses.dataclass(frozen=True)
class Doc:
    """A docstring's first paragraph, and its parameter (or attribute) descriptions by name."""

    summary: str
    params: dict[str, str]


def parse_docstring(doc: str | None) -> Doc:
    """Google, NumPy or Sphinx docstring: summary and descriptions, each on one line."""
    if not doc:
        return Doc("", {})
    parsed = docstring_parser.parse(inspect.cleandoc(doc))
    summary = parsed.short_description or ""
    if parsed.long_description and not parsed.blank_after_short_description:
        summary += " " + parsed.long_description.split("\n\n", 1)[0]  # one paragraph over lines
    params = {p.arg_name.lstrip("*"): _one_line(p.description) for p in parsed.params}
    return Doc(_one_line(summary), {k: v for k, v in params.items() if v})


def class_doc(cls: type) -> Doc:
    """A class's docstring; empty for the one a dataclass or TypedDict is given for free."""
    doc = cls.__doc__
    if not doc or doc.startswith(f"{cls.__name__}(") or doc is dict.__doc__:
        return Doc("", {})
    return parse_docstring(doc)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def annotated_description(hint: Any) -> str | None:
    """The description an ``Annotated`` hint carries: a plain string or ``Field(description=)``."""
    while get_origin(hint) is Annotated:
        for meta in hint.__metadata__:
            text = meta if isinstance(meta, str) else getattr(meta, "description", None)
            if isinstance(text, str):
                return text
        hint = get_args(hint)[0]
    return None


def type_hints(obj: Any, label: str) -> dict[str, Any]:
    """``obj``'s resolved type hints (``Annotated`` kept); SchemaError saying how to fix them."""
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception as exc:
        raise SchemaError(
            f"Can't resolve the type hints of {label} ({type(exc).__name__}: {exc}). Define the "
            "types it uses before it, at the top level of the notebook or a module."
        ) from None


def is_pydantic_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


# ---------------------------------------------------------------------------------------------
# JSON Schema from types


class _Generator(GenerateJsonSchema):
    """pydantic's generator, describing dataclasses and TypedDicts the way docstrings do."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # "Title": "City" for `city` only costs the model tokens

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        try:
            return factory()  # `tags: list = field(default_factory=list)` shows `[]`
        except Exception:
            return NoDefault  # it still applies; the model just isn't told it

    def dataclass_schema(self, schema: Any) -> Any:
        return _described(super().dataclass_schema(schema), schema["cls"])

    def typed_dict_schema(self, schema: Any) -> Any:
        cls = schema.get("cls")
        out = super().typed_dict_schema(schema)
        return _described(out, cls) if isinstance(cls, type) else out


def _described(schema: dict[str, Any], cls: type) -> dict[str, Any]:
    """Class summary and field descriptions: Annotated text, then field metadata, then docs."""
    schema.pop("title", None)
    doc = class_doc(cls)
    schema.pop("description", None)
    if doc.summary:
        schema["description"] = doc.summary
    metadata = (
        {f.name: f.metadata for f in dataclasses.fields(cls)}
        if dataclasses.is_dataclass(cls)
        else {}
    )
    hints = type_hints(cls, cls.__name__)
    for name, prop in schema.get("properties", {}).items():
        text = (
            annotated_description(hints.get(name))
            or metadata.get(name, {}).get("description")
            or doc.params.get(name)
        )
        if text and isinstance(prop, dict):
            prop["description"] = text
    return schema


def json_schema(tp: Any, where: str = "the value", *, recursive: bool = False) -> dict[str, Any]:
    """The JSON Schema of ``tp`` (a type, or a pydantic model); :class:`SchemaError` if none.

    ``where`` names the value in errors. Titles are left out, as are ``additionalProperties``
    and ``items`` that allow anything. A class that contains itself is described through
    ``$defs``/``$ref`` when ``recursive``, and refused otherwise.
    """
    try:
        with warnings.catch_warnings():
            # A default JSON can't show still applies; the model just isn't told it.
            warnings.simplefilter("ignore", pydantic.json_schema.PydanticJsonSchemaWarning)
            raw = pydantic.TypeAdapter(tp).json_schema(schema_generator=_Generator)
    except RecursionError:
        raise SchemaError(f"{where}: its type is nested too deeply to describe.") from None
    except (pydantic.PydanticUserError, NameError, TypeError):  # SchemaError is a TypeError
        culprit, label = _culprit(tp, where)
        raise SchemaError(
            f"{culprit} has type {label}, which has no JSON Schema. Use {_SUPPORTED}."
        ) from None
    defs = raw.pop("$defs", {})
    kept: dict[str, Any] = {}
    try:
        schema = _inline(raw, defs, kept, (), where, recursive)
    except RecursionError:
        raise SchemaError(f"{where}: its type is nested too deeply to describe.") from None
    if kept:
        schema["$defs"] = kept
    return schema


def _culprit(tp: Any, where: str) -> tuple[str, str]:
    """Which field of ``tp`` pydantic can't describe, and its type's name (errors only)."""
    fields: dict[str, Any] = {}
    if dataclasses.is_dataclass(tp) or (isinstance(tp, type) and issubclass(tp, dict)):
        with contextlib.suppress(Exception):  # unresolvable hints: the class itself is to blame
            fields = typing.get_type_hints(tp)
    for name, hint in fields.items():
        try:
            pydantic.TypeAdapter(hint)
        except Exception:
            return _culprit(hint, f"the field {tp.__name__}.{name}")
    label = tp.__name__ if isinstance(tp, type) else repr(tp).replace("typing.", "")
    return where, label


_SKIPPED = {"title": str, "additionalProperties": bool, "uniqueItems": bool}


def _inline(
    node: Any,
    defs: Mapping[str, Any],
    kept: dict[str, Any],
    stack: tuple[str, ...],
    where: str,
    recursive: bool,
) -> Any:
    """``node`` with its ``$ref``s written out and pydantic's noise keys dropped."""
    if isinstance(node, list):
        return [_inline(item, defs, kept, stack, where, recursive) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        # A title is noise; additionalProperties true is the default, false is what validation
        # does anyway (only strict mode must say it); uniqueItems is a set's, which dedupes.
        if key == "$ref" or isinstance(value, _SKIPPED.get(key, ())):
            continue
        if key == "items" and value == {}:
            continue
        if key in ("default", "enum", "const", "examples"):
            out[key] = value
        elif key == "properties":
            out[key] = {
                k: _inline(v, defs, kept, stack, where, recursive) for k, v in value.items()
            }
        else:
            out[key] = _inline(value, defs, kept, stack, where, recursive)
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return out
    name = ref.rsplit("/", 1)[-1]
    if name in stack:
        if not recursive:
            raise SchemaError(
                f"{where}: {name} refers to itself; recursive types can't be used here."
            )
        if name not in kept:
            kept[name] = {}  # before filling it in, so its own $refs stop here
            kept[name] = _inline(defs[name], defs, kept, (name,), where, recursive)
        return {"$ref": f"#/$defs/{name}", **out}
    return {**_inline(defs[name], defs, kept, (*stack, name), where, recursive), **out}


# ---------------------------------------------------------------------------------------------
# Strict mode


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` following OpenAI strict mode; :class:`SchemaError` if it can't.

    openai's helper closes every object and requires every property; before that, an optional
    property becomes nullable, and null then means "use the default" (see :func:`validate`).
    Open dicts, untyped lists and ``Any`` have no strict form.
    """
    # openai's own rewrite, the one `.parse()` uses; imported here, as importing openai is slow.
    from openai.lib._pydantic import _ensure_strict_json_schema

    try:
        out = json.loads(json.dumps(schema))  # a deep copy
        defs = out.get("$defs", {})
        _nullable_optionals(out, defs, "")
        for name, node in defs.items():
            _nullable_optionals(node, defs, name)
        return _ensure_strict_json_schema(out, path=(), root=out)
    except RecursionError:
        raise SchemaError("the schema is nested too deeply for strict mode.") from None


def _nullable_optionals(node: dict[str, Any], defs: Mapping[str, Any], path: str) -> None:
    where = path or "the parameters"
    if not any(k in node for k in ("type", "anyOf", "allOf", "enum", "const", "$ref")):
        raise SchemaError(
            f"{where} accepts any value, which strict mode can't express; give it a concrete type."
        )
    for member in (*node.get("anyOf", ()), *node.get("allOf", ())):
        _nullable_optionals(member, defs, path)
    if node.get("type") == "array":
        members = [node["items"]] if "items" in node else node.get("prefixItems")
        if not members:
            raise SchemaError(
                f"{where} is a list without an item type; strict mode needs one, e.g. list[str]."
            )
        for member in members:
            _nullable_optionals(member, defs, f"{path}[]")
    if node.get("type") != "object":
        return
    properties = node.get("properties")
    if properties is None or node.get("additionalProperties") not in (None, False):
        raise SchemaError(
            f"{where} is a free-form dict, which strict mode can't express; "
            "use a dataclass, TypedDict or pydantic model, or declare it with strict=False."
        )
    required = node.get("required", ())
    for key, prop in properties.items():
        _nullable_optionals(prop, defs, f"{path}.{key}" if path else key)
        if key not in required and not _takes_null(prop, defs):
            inner = {k: v for k, v in prop.items() if k not in ("description", "default")}
            outer = {k: prop[k] for k in ("description", "default") if k in prop}
            properties[key] = {"anyOf": [inner, {"type": "null"}], **outer}


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return {**defs.get(ref.rsplit("/", 1)[-1], {}), **schema} if isinstance(ref, str) else schema


def _takes_null(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> bool:
    schema = _resolve(schema, defs)
    if not any(k in schema for k in ("type", "anyOf", "oneOf", "allOf", "enum", "const")):
        return True  # accepts any value, null included
    if schema.get("type") == "null" or None in schema.get("enum", ()):
        return True
    members = (*schema.get("anyOf", ()), *schema.get("oneOf", ()), *schema.get("allOf", ()))
    return any(_takes_null(m, defs) for m in members)


# ---------------------------------------------------------------------------------------------
# Validating JSON


def validate(adapter: Any, value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` (decoded JSON) validated by ``adapter`` (a TypeAdapter or pydantic model).

    Nulls that strict mode sends for "not given" (for a property ``schema`` doesn't require and
    whose type takes no null) are dropped first, so the default applies. Raises :class:`Invalid`.
    """
    try:
        text = json.dumps(drop_default_nulls(value, schema))
        if is_pydantic_model(adapter):
            return adapter.model_validate_json(text)
        return adapter.validate_json(text)
    except RecursionError:
        raise Invalid([FieldError("", _TOO_DEEP)]) from None
    except pydantic.ValidationError as exc:
        raise _invalid(exc) from None
    except Exception as exc:  # a check in a dataclass's __post_init__ is the user's validation
        name = getattr(adapter, "__name__", None) or "The class"
        raise Invalid([FieldError("", f"{name} rejected the values: {exc}")]) from None


def _invalid(exc: Any) -> Invalid:
    errors = []
    for error in exc.errors(include_url=False, include_input=False)[:MAX_LISTED_ERRORS]:
        if error["type"] == "recursion_loop" or "recursion limit" in error["msg"]:
            return Invalid([FieldError("", _TOO_DEEP)])
        path = ""
        for part in error["loc"]:
            path = (
                f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}" if path else part
            )
        message = error["msg"]
        if len(message) > _MAX_MESSAGE_CHARS:
            message = message[: _MAX_MESSAGE_CHARS - 1] + "…"
        errors.append(FieldError(path, message))
    return Invalid(errors, exc.error_count())


def drop_default_nulls(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` without the nulls that mean "use the default" (see :func:`validate`).

    Where ``schema`` allows several shapes (a union), a null is dropped only if no shape that
    has the property requires it or takes null.
    """
    defs = schema.get("$defs", {})

    def shapes(candidates: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        for s in candidates:
            s = _resolve(s, defs)
            members = (*s.get("anyOf", ()), *s.get("oneOf", ()), *s.get("allOf", ()))
            out.extend(shapes(list(members)) if members else [s])
        return out

    def walk(item: Any, candidates: list[Mapping[str, Any]]) -> Any:
        candidates = shapes(candidates)
        if isinstance(item, list):
            return [walk(v, _items_at(candidates, i)) for i, v in enumerate(item)]
        if not isinstance(item, dict):
            return item
        out = {}
        for key, child in item.items():
            subs, optional = [], True
            for s in candidates:
                prop = s.get("properties", {}).get(key)
                if prop is None and isinstance(s.get("additionalProperties"), dict):
                    prop, optional = s["additionalProperties"], False
                if isinstance(prop, dict):
                    subs.append(prop)
                    optional = optional and key not in s.get("required", ())
                    optional = optional and not _takes_null(prop, defs)
            if child is None and subs and optional:
                continue
            out[key] = walk(child, subs)
        return out

    return walk(value, [schema])


def _items_at(candidates: list[Mapping[str, Any]], i: int) -> list[Mapping[str, Any]]:
    out = []
    for s in candidates:
        prefix = s.get("prefixItems") or []
        item = prefix[i] if i < len(prefix) else s.get("items")
        if isinstance(item, dict):
            out.append(item)
    return out
