"""Python types and JSON Schema: describing a type, checking JSON against it, building values.

The one implementation behind tool parameters (``tools``) and structured answers (``structured``):

- :func:`json_schema` describes a type: str/int/float/bool/None, datetime/date/time, Literal, Enum,
  unions, list/tuple/set/dict, dataclasses, TypedDicts and pydantic models, with ``Annotated`` and
  docstring descriptions; :func:`object_schema` describes a list of :class:`Field` (parameters).
- :func:`strict_schema` rewrites a schema for OpenAI strict mode.
- :func:`drop_default_nulls` and :func:`validate` check decoded JSON against such a schema and
  give :class:`FieldError` with paths like ``items[0].price``.
- :func:`convert` turns validated JSON into the annotated type (dataclass, Enum, tuple, ...).

Pure Python: a pydantic model is recognised only once the caller has imported pydantic.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import datetime as dt
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

MISSING = dataclasses.MISSING
_NONE_TYPE = type(None)
_SCALARS: dict[Any, dict[str, str]] = {
    str: {"type": "string"},
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
    dt.time: {"type": "string", "format": "time"},
}
_ARRAY_ORIGINS = {
    list: list,
    set: set,
    frozenset: frozenset,
    collections.abc.Sequence: list,
    collections.abc.MutableSequence: list,
    collections.abc.Set: set,
    collections.abc.MutableSet: set,
    collections.abc.Iterable: list,
    collections.abc.Collection: list,
}
_MAPPING_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_SUPPORTED = (
    "str, int, float, bool, None, list[...], tuple[...], dict[str, ...], Literal, Enum, "
    "Optional/unions, datetime/date/time, dataclasses, TypedDict or pydantic models"
)


class SchemaError(TypeError):
    """A type can't be described as JSON Schema; the message says why and what to use."""


@dataclasses.dataclass
class FieldError:
    """One validation failure; ``path`` looks like ``items[0].price`` ("" for the whole value)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConversionError(Exception):
    """Valid JSON that still can't become the annotated type (a bad date, a model's own check)."""

    def __init__(self, path: str, message: str) -> None:
        self.error = FieldError(path, message)
        super().__init__(str(self.error))


@dataclasses.dataclass(frozen=True)
class Field:
    """A named slot of a JSON object: a function parameter, dataclass field or TypedDict key."""

    name: str
    annotation: Any
    required: bool
    default: Any  # shown to the model; MISSING when there is none to show
    description: str | None = None


# ---------------------------------------------------------------------------------------------
# Recognising types


def unwrap(tp: Any) -> tuple[Any, str | None]:
    """Strip Annotated/Required/NotRequired; return the bare type and an Annotated description."""
    description = None
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            for meta in tp.__metadata__:
                text = meta if isinstance(meta, str) else getattr(meta, "description", None)
                if isinstance(text, str) and description is None:
                    description = text
            tp = get_args(tp)[0]
        elif _special_name(origin) in ("Required", "NotRequired", "ReadOnly"):
            tp = get_args(tp)[0]
        else:
            return tp, description


def _special_name(origin: Any) -> str | None:
    # typing and typing_extensions spell these as different objects on older Pythons.
    return getattr(origin, "_name", None) if origin is not None else None


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def is_pydantic_model(tp: Any) -> bool:
    """Whether ``tp`` is a pydantic model class (without importing pydantic)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def json_kind(value: Any) -> str:
    """The JSON type name of a decoded value: ``"integer"``, ``"object"``, ..."""
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return kinds.get(type(value), type(value).__name__)


def json_default(obj: Any) -> Any:
    """``json.dumps`` default for the Python values tools commonly use; TypeError otherwise."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (dt.date, dt.time)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if is_pydantic_model(type(obj)):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if callable(getattr(obj, "tolist", None)):  # numpy arrays and scalars
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _type_label(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp).replace("typing.", "")


# ---------------------------------------------------------------------------------------------
# Docstrings (Google, NumPy and Sphinx styles): summaries and parameter/attribute descriptions


@dataclasses.dataclass(frozen=True)
class Doc:
    """A docstring's first paragraph, and its parameter (or attribute) descriptions by name."""

    summary: str
    params: dict[str, str]


_GOOGLE_HEADER = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters|"
    r"Attributes):\s*$"
)
_SECTION_HEADER = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters|"
    r"Attributes|Returns?|Yields?|Raises|Examples?|Notes?|See Also|Warnings?|Todo|References):"
    r"\s*$"
)
_GOOGLE_ENTRY = re.compile(r"^(?P<name>\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(?P<desc>.*)$")
_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_SPHINX_PARAM = re.compile(
    r"^(?P<indent>\s*):(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?"
    r"(?P<name>\*{0,2}\w+)\s*:\s*(?P<desc>.*)$"
)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_docstring(doc: str | None) -> Doc:
    """The first paragraph as the summary, and the documented parameters or attributes."""
    if not doc:
        return Doc("", {})
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            if summary:
                break
            continue
        is_numpy_header = i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1])
        if _SECTION_HEADER.match(line) or is_numpy_header or stripped.startswith(":"):
            break
        summary.append(stripped)
    params = {**_sphinx_params(lines), **_numpy_params(lines), **_google_params(lines)}
    return Doc(" ".join(summary), {k: v for k, v in params.items() if v})


def _google_params(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(lines):
        if not _GOOGLE_HEADER.match(lines[i]):
            i += 1
            continue
        base = _indent(lines[i])
        entry_indent: int | None = None
        name: str | None = None
        i += 1
        while i < len(lines):
            line = lines[i]
            if line.strip():
                if _indent(line) <= base:
                    break
                if entry_indent is None:
                    entry_indent = _indent(line)
                if _indent(line) <= entry_indent:
                    match = _GOOGLE_ENTRY.match(line.strip())
                    name = match["name"].lstrip("*") if match else None
                    if name:
                        out[name] = match["desc"].strip()  # type: ignore[index]
                elif name:
                    out[name] = f"{out[name]} {line.strip()}".strip()
            i += 1
    return out


def _numpy_params(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(len(lines) - 1):
        if lines[i].strip() not in ("Parameters", "Other Parameters"):
            continue
        if not _UNDERLINE.match(lines[i + 1]):
            continue
        base = _indent(lines[i])
        names: list[str] = []
        for j in range(i + 2, len(lines)):
            line = lines[j]
            if not line.strip():
                continue
            if (j + 1 < len(lines) and _UNDERLINE.match(lines[j + 1])) or _indent(line) < base:
                break  # the next section
            if _indent(line) == base:
                head = line.split(":", 1)[0]
                names = [n.strip().lstrip("*") for n in head.split(",") if n.strip()]
                for n in names:
                    out.setdefault(n, "")
            else:
                for n in names:
                    out[n] = f"{out[n]} {line.strip()}".strip()
    return out


def _sphinx_params(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    name: str | None = None
    base = 0
    for line in lines:
        match = _SPHINX_PARAM.match(line)
        if match:
            name = match["name"].lstrip("*")
            out[name] = match["desc"].strip()
            base = len(match["indent"])
        elif name and line.strip() and _indent(line) > base and not line.strip().startswith(":"):
            out[name] = f"{out[name]} {line.strip()}"
        else:
            name = None
    return out


def _class_doc(cls: type) -> Doc:
    doc = cls.__doc__
    # dataclasses and TypedDicts without a docstring get a generated one: not a description.
    if not doc or doc.startswith(f"{cls.__name__}(") or doc is dict.__doc__:
        return Doc("", {})
    return parse_docstring(doc)


# ---------------------------------------------------------------------------------------------
# JSON Schema from types

# Where a type refers to itself: None refuses recursion, a dict collects the $defs it needs.
_Defs = dict[str, Any] | None


def json_schema(tp: Any, where: str = "the value", *, recursive: bool = False) -> dict[str, Any]:
    """The JSON Schema of ``tp``; :class:`SchemaError` naming ``where`` if it has none.

    Nested classes are written out in place, so the schema stands alone. A class that contains
    itself is described through ``$defs``/``$ref`` when ``recursive``, and refused otherwise.
    """
    defs: _Defs = {} if recursive else None
    schema = _schema(tp, where, (), defs)
    if defs:
        schema["$defs"] = defs
    return schema


def object_schema(
    fields: Sequence[Field], where: str, descriptions: Mapping[str, str]
) -> dict[str, Any]:
    """The object schema of ``fields`` (say, a function's parameters).

    ``where`` names a field in errors, with ``{}`` for its name (``"parameter {!r}"``);
    ``descriptions`` come from a docstring, and an ``Annotated`` description beats them.
    """
    return _object_schema(fields, where, descriptions, (), None)


def type_hints(obj: Any, label: str) -> dict[str, Any]:
    """``obj``'s resolved type hints (``Annotated`` kept); SchemaError saying how to fix them."""
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception as exc:
        raise SchemaError(
            f"Can't resolve the type hints of {label} ({type(exc).__name__}: {exc}). Define the "
            "types it uses before it, at the top level of the notebook or a module."
        ) from None


def class_fields(cls: type) -> list[Field]:
    """The fields of a dataclass (those ``__init__`` takes) or a TypedDict."""
    hints = type_hints(cls, cls.__name__)
    if _is_typeddict(cls):
        return [Field(n, h, _typeddict_required(cls, n, h), MISSING) for n, h in hints.items()]
    fields = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default if f.default_factory is MISSING else f.default_factory()
        required = f.default is MISSING and f.default_factory is MISSING
        description = f.metadata.get("description")
        fields.append(Field(f.name, hints[f.name], required, default, description))
    return fields


def _typeddict_required(cls: type, name: str, hint: Any) -> bool:
    special = _special_name(get_origin(hint))
    if special in ("Required", "NotRequired"):
        return special == "Required"
    return name in cls.__required_keys__  # type: ignore[attr-defined]


def _schema(tp: Any, where: str, seen: tuple[type, ...], defs: _Defs) -> dict[str, Any]:
    tp, description = unwrap(tp)
    schema = _bare_schema(tp, where, seen, defs)
    return {**schema, "description": description} if description else schema


def _enum_schema(values: list[Any], where: str) -> dict[str, Any]:
    for value in values:
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise SchemaError(
                f"{where}: choice {value!r} is not a JSON value (use str, int, float, bool, None)."
            )
    kinds = {json_kind(v) for v in values}
    return {"type": kinds.pop(), "enum": values} if len(kinds) == 1 else {"enum": values}


def _bare_schema(tp: Any, where: str, seen: tuple[type, ...], defs: _Defs) -> dict[str, Any]:
    if tp is Any or tp is object:
        return {}
    if tp is None or tp is _NONE_TYPE:
        return {"type": "null"}
    if isinstance(tp, type) and tp in _SCALARS:
        return dict(_SCALARS[tp])
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return _enum_schema(list(args), where)
    if _is_union(origin):
        members: list[dict[str, Any]] = []
        for arg in args:
            member = _schema(arg, where, seen, defs)
            members.extend(member["anyOf"] if list(member) == ["anyOf"] else [member])
        return {"anyOf": members}
    if origin in _ARRAY_ORIGINS:
        items = {"items": _schema(args[0], where, seen, defs)} if args else {}
        return {"type": "array", **items}
    if origin is tuple:
        if not args or args == ((),):
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], where, seen, defs)}
        return {
            "type": "array",
            "prefixItems": [_schema(a, where, seen, defs) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin in _MAPPING_ORIGINS:
        if not args:
            return {"type": "object"}
        if unwrap(args[0])[0] is not str:
            raise SchemaError(
                f"{where}: {_type_label(tp)} has non-string keys; JSON object keys are strings, "
                "so use dict[str, ...]."
            )
        return {"type": "object", "additionalProperties": _schema(args[1], where, seen, defs)}
    if tp in (list, set, frozenset, tuple):
        return {"type": "array"}
    if tp is dict:
        return {"type": "object"}
    if isinstance(tp, type):
        if issubclass(tp, Enum):
            return _enum_schema([m.value for m in tp], where)
        if is_pydantic_model(tp):
            return _pydantic_schema(tp, where)
        if dataclasses.is_dataclass(tp) or _is_typeddict(tp):
            return _class_schema(tp, where, seen, defs)
    raise SchemaError(
        f"{where} has type {_type_label(tp)}, which has no JSON Schema. Use {_SUPPORTED}."
    )


def _class_schema(cls: type, where: str, seen: tuple[type, ...], defs: _Defs) -> dict[str, Any]:
    name = cls.__name__
    if cls in seen:
        if defs is None:
            raise SchemaError(
                f"{where}: {name} refers to itself; recursive types can't be used here."
            )
        defs.setdefault(name, {})  # filled in below, once the outer occurrence is written out
        return {"$ref": f"#/$defs/{name}"}
    doc = _class_doc(cls)
    schema = _object_schema(
        class_fields(cls), f"the field {name}.{{}}", doc.params, (*seen, cls), defs
    )
    if doc.summary:
        schema["description"] = doc.summary
    if defs is not None and name in defs:
        defs[name] = copy.deepcopy(schema)
    return schema


def _object_schema(
    fields: Sequence[Field],
    where: str,
    descriptions: Mapping[str, str],
    seen: tuple[type, ...],
    defs: _Defs,
) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in fields:
        prop = _schema(f.annotation, where.format(f.name), seen, defs)
        text = f.description or descriptions.get(f.name)
        if text and unwrap(f.annotation)[1] is None:  # an Annotated description wins
            prop = {**prop, "description": text}
        if f.required:
            required.append(f.name)
        elif f.default is not MISSING:
            prop = _with_default(prop, f.default)
        properties[f.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _with_default(prop: dict[str, Any], default: Any) -> dict[str, Any]:
    try:
        value = json.loads(json.dumps(default, default=json_default))
    except (TypeError, ValueError):
        return prop  # a default JSON can't show still applies; the model just isn't told it
    return {**prop, "default": value}


def _pydantic_schema(cls: type, where: str) -> dict[str, Any]:
    try:
        raw = cls.model_json_schema()  # type: ignore[attr-defined]
    except Exception as exc:
        raise SchemaError(
            f"{where}: pydantic can't make a JSON Schema for {cls.__name__} ({exc})."
        ) from None
    return _inline_refs(raw, raw.get("$defs", {}), where, ())


_VERBATIM_KEYS = ("default", "enum", "const", "examples")


def _inline_refs(node: Any, defs: dict[str, Any], where: str, stack: tuple[str, ...]) -> Any:
    """Resolve ``$ref``s into a self-contained schema and drop pydantic's titles."""
    if isinstance(node, list):
        return [_inline_refs(item, defs, where, stack) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("$defs", "$ref") or (key == "title" and isinstance(value, str)):
            continue
        if key in _VERBATIM_KEYS:
            out[key] = value
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: _inline_refs(v, defs, where, stack) for k, v in value.items()}
        else:
            out[key] = _inline_refs(value, defs, where, stack)
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in stack or name not in defs:
            raise SchemaError(
                f"{where}: {name} refers to itself; recursive models can't be used here."
            )
        out = {**_inline_refs(defs[name], defs, where, (*stack, name)), **out}
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:  # older pydantic wraps a described $ref
        del out["allOf"]
        out = {**all_of[0], **out}
    return out


# ---------------------------------------------------------------------------------------------
# Strict mode


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` following OpenAI strict mode; :class:`SchemaError` if it can't.

    Every object is closed (``additionalProperties: false``) with every property required; an
    optional property becomes nullable, and null then means "use the default" (see
    :func:`drop_default_nulls`). Open dicts, untyped lists and ``Any`` have no strict form.
    """
    out = copy.deepcopy(schema)
    defs = out.get("$defs", {})
    _make_strict(out, defs, "")
    for name, node in defs.items():
        _make_strict(node, defs, name)
    return out


def _make_strict(node: dict[str, Any], defs: dict[str, Any], path: str) -> None:
    """Rewrite ``node`` in place."""
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        # Strict mode takes no keywords beside $ref (pydantic puts descriptions there): inline it.
        del node["$ref"]
        node.update({**copy.deepcopy(defs.get(ref.rsplit("/", 1)[-1], {})), **node})
    if "default" in node and node["default"] is None:
        del node["default"]  # as the openai client does: null is implied by the nullable type
    where = path or "the parameters"
    if not any(k in node for k in ("type", "anyOf", "enum", "const", "$ref")):
        raise SchemaError(
            f"{where} accepts any value, which strict mode can't express; give it a concrete type."
        )
    for member in node.get("anyOf", ()):
        _make_strict(member, defs, path)
    if node.get("type") == "array":
        if isinstance(node.get("items"), dict):
            _make_strict(node["items"], defs, f"{path}[]")
        elif "prefixItems" in node:
            for member in node["prefixItems"]:
                _make_strict(member, defs, f"{path}[]")
        else:
            raise SchemaError(
                f"{where} is a list without an item type; strict mode needs one, e.g. list[str]."
            )
    if node.get("type") == "object":
        _make_strict_object(node, defs, path)


def _make_strict_object(node: dict[str, Any], defs: dict[str, Any], path: str) -> None:
    properties = node.get("properties")
    if properties is None or node.get("additionalProperties") not in (None, False):
        raise SchemaError(
            f"{path or 'the parameters'} is a free-form dict, which strict mode can't express; "
            "use a dataclass, TypedDict or pydantic model, or declare it with strict=False."
        )
    required = set(node.get("required", ()))
    for key, prop in properties.items():
        _make_strict(prop, defs, f"{path}.{key}" if path else key)
        if key not in required and not _nullable(prop):
            properties[key] = _make_nullable(prop)
    node["required"] = list(properties)
    node["additionalProperties"] = False


def _make_nullable(prop: dict[str, Any]) -> dict[str, Any]:
    inner = {k: v for k, v in prop.items() if k not in ("description", "default")}
    outer: dict[str, Any] = {"anyOf": [inner, {"type": "null"}]}
    outer.update({k: prop[k] for k in ("description", "default") if k in prop})
    return outer


def _nullable(schema: Mapping[str, Any]) -> bool:
    if not any(k in schema for k in ("type", "anyOf", "oneOf", "enum", "const", "$ref")):
        return True  # accepts any value, null included
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if None in schema.get("enum", ()):
        return True
    return any(_nullable(m) for m in schema.get("anyOf") or schema.get("oneOf") or ())


# ---------------------------------------------------------------------------------------------
# Checking JSON against a schema (the subset built above, plus pydantic's $refs)


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    target = defs.get(ref.rsplit("/", 1)[-1], {})
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}


def drop_default_nulls(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` without the nulls that mean "use the default".

    Strict mode makes an optional field nullable, so models send null for "not given". Such a
    null, for a field the schema does not require and whose own type takes no null, is removed,
    so the default applies (in strict mode or not) and the rest validates against ``schema``.
    """
    return _drop_nulls(value, schema, schema.get("$defs", {}))


def _drop_nulls(value: Any, schema: Any, defs: Mapping[str, Any]) -> Any:
    if not isinstance(schema, Mapping):
        return value
    schema = _resolve(schema, defs)
    arms = [a for a in schema.get("anyOf", ()) if a.get("type") != "null"]
    if len(arms) == 1:  # Optional[X]
        return _drop_nulls(value, arms[0], defs)
    if isinstance(value, list):
        return [_drop_nulls(v, schema.get("items"), defs) for v in value]
    if not isinstance(value, dict):
        return value
    properties = schema.get("properties")
    if properties is None:
        return {
            k: _drop_nulls(v, schema.get("additionalProperties"), defs) for k, v in value.items()
        }
    required = schema.get("required", ())
    return {
        k: _drop_nulls(v, properties.get(k), defs)
        for k, v in value.items()
        if not (
            v is None and k in properties and k not in required and not _nullable(properties[k])
        )
    }


def validate(
    value: Any, schema: Mapping[str, Any], *, allow_extra: bool = False
) -> list[FieldError]:
    """Errors for ``value`` against ``schema``, in field order; empty when valid.

    Covers what :func:`json_schema` writes: type, enum, const, anyOf/oneOf, properties, required,
    additionalProperties, items, prefixItems, minItems/maxItems, local ``$ref``. An object that
    lists ``properties`` is closed unless ``allow_extra`` (then unknown keys are ignored). A
    required property that accepts null may be left out and means null. Other keywords (pydantic's
    constraints, formats) are left to :func:`convert`.
    """
    checker = _Checker(schema.get("$defs", {}), allow_extra)
    checker.check(value, schema, "")
    return checker.errors


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":  # JSON may spell an integer as 3.0
        return (isinstance(value, float) and value.is_integer()) or json_kind(value) == kind
    if kind == "number":
        return json_kind(value) in ("integer", "number")
    return json_kind(value) == kind


def _same_json(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


class _Checker:
    def __init__(self, defs: Mapping[str, Any], allow_extra: bool) -> None:
        self.defs, self.allow_extra = defs, allow_extra
        self.errors: list[FieldError] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def fits(self, value: Any, schema: Mapping[str, Any]) -> bool:
        trial = _Checker(self.defs, self.allow_extra)
        trial.check(value, schema, "")
        return not trial.errors

    def expected(self, schema: Mapping[str, Any]) -> str:
        schema = _resolve(schema, self.defs)
        if "anyOf" in schema or "oneOf" in schema:
            parts = [self.expected(m) for m in schema.get("anyOf") or schema.get("oneOf") or ()]
            return " or ".join(dict.fromkeys(parts))
        if "enum" in schema:
            return "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
        if "const" in schema:
            return _short(schema["const"])
        kind = schema.get("type")
        return " or ".join(kind) if isinstance(kind, list) else kind or "any value"

    def check(self, value: Any, schema: Mapping[str, Any], path: str) -> None:
        schema = _resolve(schema, self.defs)
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            self.check_branches(value, schema, branches, path)
        elif ("const" in schema and not _same_json(value, schema["const"])) or (
            "enum" in schema and not any(_same_json(value, e) for e in schema["enum"])
        ):
            self.fail(path, f"expected {self.expected(schema)}, got {_short(value)}")
        elif (kind := schema.get("type")) and not any(
            _is_type(value, k) for k in ([kind] if isinstance(kind, str) else kind)
        ):
            got = "null" if value is None else f"{json_kind(value)} {_short(value)}"
            self.fail(path, f"expected {self.expected(schema)}, got {got}")
        elif isinstance(value, dict):
            self.check_object(value, schema, path)
        elif isinstance(value, list):
            self.check_array(value, schema, path)

    def check_branches(
        self, value: Any, schema: Mapping[str, Any], branches: list, path: str
    ) -> None:
        if any(self.fits(value, b) for b in branches):
            return
        # With one branch that could be meant (Optional[X], or the only one of the value's JSON
        # type), its own errors, with their precise paths, say more than "matches none".
        kinds = [str(_resolve(b, self.defs).get("type")) for b in branches]
        meant = [b for b, kind in zip(branches, kinds, strict=True) if kind != "null"]
        if len(meant) > 1:
            meant = [b for b, kind in zip(branches, kinds, strict=True) if _is_type(value, kind)]
        if len(meant) == 1:
            self.check(value, meant[0], path)
        else:
            self.fail(path, f"expected {self.expected(schema)}, got {_short(value)}")

    def check_object(self, value: dict, schema: Mapping[str, Any], path: str) -> None:
        properties = schema.get("properties") or {}
        for key, prop in properties.items():
            if key in value:
                self.check(value[key], prop, _child(path, key))
            elif key in schema.get("required", ()) and not _nullable(_resolve(prop, self.defs)):
                self.fail(_child(path, key), "field required")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                continue
            if isinstance(extra, dict):
                self.check(item, extra, _child(path, key))
            elif not self.allow_extra and (extra is False or (extra is None and properties)):
                allowed = ", ".join(properties) or "none"
                self.fail(_child(path, key), f"unexpected field (allowed: {allowed})")

    def check_array(self, value: list, schema: Mapping[str, Any], path: str) -> None:
        low, high = schema.get("minItems"), schema.get("maxItems")
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            size = (
                f"exactly {low}" if low == high else f"at least {low}" if low else f"at most {high}"
            )
            self.fail(path, f"expected {size} items, got {len(value)}")
            return
        prefix = schema.get("prefixItems") or []
        items = schema.get("items")
        for i, item in enumerate(value):
            if i < len(prefix):
                self.check(item, prefix[i], _child(path, i))
            elif isinstance(items, dict):
                self.check(item, items, _child(path, i))


# ---------------------------------------------------------------------------------------------
# Converting validated JSON to the annotated Python types


def convert(value: Any, tp: Any, path: str = "") -> Any:
    """``value`` (JSON that passed :func:`validate` against ``tp``'s schema) as a ``tp``.

    Raises :class:`ConversionError` for what the schema can't say: a malformed date, a pydantic
    constraint, a dataclass's own ``__post_init__`` check.
    """
    tp, _ = unwrap(tp)
    if value is None:  # validation let it through, so the type takes null
        return None
    if tp is int:
        return int(value)  # JSON may spell an integer as 3.0
    if tp is float:
        return float(value)
    if tp in (dt.datetime, dt.date, dt.time):
        return _parse_iso(tp, value, path)
    origin, args = get_origin(tp), get_args(tp)
    if _is_union(origin):
        return _convert_union(value, [a for a in args if a is not _NONE_TYPE], path)
    if origin in _ARRAY_ORIGINS or tp in (set, frozenset):
        item = args[0] if args else Any
        items = (convert(v, item, _child(path, i)) for i, v in enumerate(value))
        return _ARRAY_ORIGINS.get(origin, tp)(items)
    if origin is tuple or tp is tuple:
        if not args or args == ((),):
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(convert(v, a, _child(path, i)) for i, (v, a) in pairs)
    if origin in _MAPPING_ORIGINS and args:
        return {k: convert(v, args[1], _child(path, k)) for k, v in value.items()}
    if isinstance(tp, type):
        return _convert_class(value, tp, path)
    return value  # str, bool, Literal, Any, dict, list: JSON already is the value


def convert_fields(
    value: Mapping[str, Any], fields: Sequence[Field], path: str = ""
) -> dict[str, Any]:
    """Each field's converted value, by name; keys that are not fields are left out."""
    out = {}
    for f in fields:
        if f.name in value:
            out[f.name] = convert(value[f.name], f.annotation, _child(path, f.name))
        elif f.required:
            out[f.name] = None  # validation lets a required field be left out only if nullable
    return out


def _parse_iso(kind: type, value: str, path: str) -> Any:
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) and kind is not dt.date else value
    try:
        return kind.fromisoformat(text)  # type: ignore[attr-defined]
    except ValueError:
        label = {dt.datetime: "date-time", dt.date: "date", dt.time: "time"}[kind]
        raise ConversionError(path, f"expected an ISO 8601 {label}, got {_short(value)}") from None


def _convert_union(value: Any, members: list[Any], path: str) -> Any:
    if len(members) == 1:  # Optional[X]
        return convert(value, members[0], path)
    # Prefer a member the value fits exactly, then one it fits but for extra keys.
    schemas = [(m, json_schema(m, recursive=True)) for m in members]
    fitting = [
        m
        for extra in (False, True)
        for m, s in schemas
        if not validate(value, s, allow_extra=extra)
    ]
    error: ConversionError | None = None
    for member in dict.fromkeys(fitting):
        try:
            return convert(value, member, path)
        except ConversionError as exc:  # e.g. "datetime | str": not a date, but the str fits
            error = error or exc
    if error is not None:
        raise error
    return value


def _convert_class(value: Any, tp: type, path: str) -> Any:
    if issubclass(tp, Enum):
        return tp(value)
    if is_pydantic_model(tp):
        try:  # JSON mode: a strict model still takes dates and enums as JSON spells them
            return tp.model_validate_json(json.dumps(value))  # type: ignore[attr-defined]
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            message = "; ".join(str(e) for e in pydantic_errors(exc))
            raise ConversionError(path, message) from None
    if _is_typeddict(tp):
        return convert_fields(value, class_fields(tp), path)
    if dataclasses.is_dataclass(tp):
        kwargs = convert_fields(value, class_fields(tp), path)
        try:
            return tp(**kwargs)
        except Exception as exc:  # a check in __post_init__ is the user's own validation
            raise ConversionError(path, f"{tp.__name__} rejected the values: {exc}") from None
    return value


def pydantic_errors(exc: Exception) -> list[FieldError]:
    """A pydantic ``ValidationError`` as errors with paths like ``lines[0].price``."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [FieldError("", str(exc))]
    out = []
    for error in errors():
        path = ""
        for part in error.get("loc", ()):
            path = _child(path, part)
        out.append(FieldError(path, str(error.get("msg"))))
    return out
