"""Python types and JSON Schema: describing a type, checking JSON against it, building values.

The one implementation behind tool parameters (``tools``) and structured answers (``structured``):

- :func:`json_schema` describes a type: str/int/float/bool/None, datetime/date/time, Literal, Enum,
  unions, list/tuple/set/dict, dataclasses, TypedDicts and pydantic models, with ``Annotated`` and
  docstring descriptions; :func:`object_schema` describes a list of :class:`Field` (parameters).
- :func:`strict_schema` rewrites a schema for OpenAI strict mode.
- :func:`check` checks decoded JSON against such a schema, giving :class:`FieldError` with paths
  like ``items[0].price``, and drops the nulls strict mode sends for "use the default".
- :func:`convert` turns checked JSON into the annotated type (dataclass, Enum, tuple, ...).
- :func:`deeper_than` measures how deeply decoded JSON nests, without recursion.

No input makes these raise ``RecursionError``: a value nested too deeply to walk is reported as an
error of the kind each function already gives (:class:`FieldError`, :class:`ConversionError`,
:class:`SchemaError`).

Docstrings are read in :mod:`clarifai_magic.docstrings`.

Pure Python: a pydantic model is recognised only once the caller has imported pydantic.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import datetime as dt
import json
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from .docstrings import class_doc

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

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


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
    if isinstance(tp, type):  # the common case, and no class is Annotated
        return tp, None
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


_JSON_KINDS = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    _NONE_TYPE: "null",
}


def json_kind(value: Any) -> str:
    """The JSON type name of a decoded value: ``"integer"``, ``"object"``, ..."""
    kind = _JSON_KINDS.get(type(value))
    if kind is None:
        kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None
    return kind or type(value).__name__


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


def deeper_than(value: Any, levels: int) -> bool:
    """Whether decoded JSON nests more than ``levels`` dicts/lists deep (the outer one counts).

    Iterative, so it answers for any depth; it stops at the first path past ``levels``.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > levels:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _type_label(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp).replace("typing.", "")


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
    try:
        schema = _schema(tp, where, (), defs)
    except RecursionError:
        raise SchemaError(f"{where}: its type is nested too deeply to describe.") from None
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
    try:
        return _object_schema(fields, where, descriptions, (), None)
    except RecursionError:
        raise SchemaError("the types are nested too deeply to describe.") from None


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
    doc = class_doc(cls)
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
    :func:`check`). Open dicts, untyped lists and ``Any`` have no strict form.
    """
    try:
        out = copy.deepcopy(schema)
        defs = out.get("$defs", {})
        _make_strict(out, defs, "")
        for name, node in defs.items():
            _make_strict(node, defs, name)
    except RecursionError:
        raise SchemaError("the schema is nested too deeply for strict mode.") from None
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


@dataclasses.dataclass
class Checked:
    """JSON checked against a schema: ``errors`` in field order (empty when valid), and ``value``
    without the nulls that mean "use the default" (what :func:`convert` should be given)."""

    value: Any
    errors: list[FieldError]

    @property
    def ok(self) -> bool:
        return not self.errors


def check(value: Any, schema: Mapping[str, Any], *, allow_extra: bool = False) -> Checked:
    """Check decoded JSON ``value`` against ``schema``.

    Covers what :func:`json_schema` writes: type, enum, const, anyOf/oneOf, properties, required,
    additionalProperties, items, prefixItems, minItems/maxItems, local ``$ref``. Other keywords
    (pydantic's constraints, formats) are left to :func:`convert`.

    An object that lists ``properties`` is closed unless ``allow_extra`` (then unknown keys are
    let through). A required property that accepts null may be left out and means null. Strict
    mode makes an optional property nullable, so models send null for "not given": such a null,
    for a property the schema does not require and whose own type takes no null, is dropped from
    ``value`` so the default applies. In a union each arm is tried this way, the first that fits
    exactly wins, then the first that fits but for unknown keys.
    """
    checker = _Checker(schema.get("$defs", {}), allow_extra)
    try:
        cleaned = checker.check(value, schema, "")
    except RecursionError:
        return Checked(value, [FieldError("", "the value is nested too deeply to check")])
    return Checked(cleaned, checker.errors)


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


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_type(value: Any, kind: str) -> bool:
    actual = json_kind(value)
    if actual == kind:
        return True
    if kind == "number":
        return actual == "integer"
    return kind == "integer" and actual == "number" and value.is_integer()  # JSON may say 3.0


def _is_any_type(value: Any, kind: str | list[str]) -> bool:
    return _is_type(value, kind) if isinstance(kind, str) else any(_is_type(value, k) for k in kind)


def _same_json(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


class _Checker:
    """One walk over a value; each ``check_*`` returns the value with default nulls dropped."""

    def __init__(self, defs: Mapping[str, Any], allow_extra: bool) -> None:
        self.defs, self.allow_extra = defs, allow_extra
        self.errors: list[FieldError] = []
        self.extra_keys = 0  # unknown keys let through by allow_extra: a union prefers none

    def fail(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def takes_null(self, schema: Mapping[str, Any]) -> bool:
        return _nullable(_resolve(schema, self.defs))

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

    def check(self, value: Any, schema: Mapping[str, Any], path: str) -> Any:
        schema = _resolve(schema, self.defs)
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            return self.check_branches(value, schema, branches, path)
        if ("const" in schema and not _same_json(value, schema["const"])) or (
            "enum" in schema and not any(_same_json(value, e) for e in schema["enum"])
        ):
            self.fail(path, f"expected {self.expected(schema)}, got {_short(value)}")
        elif (kind := schema.get("type")) and not _is_any_type(value, kind):
            got = "null" if value is None else f"{json_kind(value)} {_short(value)}"
            self.fail(path, f"expected {self.expected(schema)}, got {got}")
        elif isinstance(value, dict):
            return self.check_object(value, schema, path)
        elif isinstance(value, list):
            return self.check_array(value, schema, path)
        return value

    def check_branches(
        self, value: Any, schema: Mapping[str, Any], branches: list, path: str
    ) -> Any:
        # Each arm's JSON type, its checker, and the value as that arm cleans it.
        tried: list[tuple[str, _Checker, Any]] = []
        for branch in branches:
            trial = _Checker(self.defs, self.allow_extra)
            cleaned = trial.check(value, branch, path)
            if not trial.errors and not trial.extra_keys:
                return cleaned
            tried.append((str(_resolve(branch, self.defs).get("type")), trial, cleaned))
        meant = [t for t in tried if not t[1].errors][:1]  # the first to fit but for unknown keys
        if not meant:
            # The arms the value could be meant for: all but null, then those of its JSON type.
            # The one with fewest errors (the first among equals) says most precisely what's wrong.
            meant = [t for t in tried if t[0] != "null"]
            if len(meant) > 1:
                meant = [t for t in meant if _is_type(value, t[0])]
        if not meant:
            self.fail(path, f"expected {self.expected(schema)}, got {_short(value)}")
            return value
        _, best, cleaned = min(meant, key=lambda t: len(t[1].errors))
        self.errors += best.errors
        self.extra_keys += best.extra_keys
        return cleaned

    def check_object(self, value: dict, schema: Mapping[str, Any], path: str) -> dict:
        properties = schema.get("properties") or {}
        required = schema.get("required", ())
        out = {}
        for key, prop in properties.items():
            if key not in value:
                if key in required and not self.takes_null(prop):
                    self.fail(_child(path, key), "field required")
            elif value[key] is None and key not in required and not self.takes_null(prop):
                pass  # strict mode's null for "not given": dropped, so the default applies
            else:
                out[key] = self.check(value[key], prop, _child(path, key))
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                continue
            if isinstance(extra, dict):
                out[key] = self.check(item, extra, _child(path, key))
            elif extra is False or (extra is None and properties):
                if not self.allow_extra:
                    allowed = ", ".join(properties) or "none"
                    self.fail(_child(path, key), f"unexpected field (allowed: {allowed})")
                self.extra_keys += 1
                out[key] = item
            else:
                out[key] = item  # an open object
        return out

    def check_array(self, value: list, schema: Mapping[str, Any], path: str) -> list:
        low, high = schema.get("minItems"), schema.get("maxItems")
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            size = (
                f"exactly {low}" if low == high else f"at least {low}" if low else f"at most {high}"
            )
            self.fail(path, f"expected {size} items, got {len(value)}")
            return value
        prefix = schema.get("prefixItems") or []
        items = schema.get("items")
        out = []
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else items
            out.append(self.check(item, sub, _child(path, i)) if isinstance(sub, dict) else item)
        return out


# ---------------------------------------------------------------------------------------------
# Converting checked JSON to the annotated Python types


def convert(value: Any, tp: Any, path: str = "") -> Any:
    """``value`` (the :attr:`Checked.value` of ``tp``'s schema) as a ``tp``.

    Raises :class:`ConversionError` for what the schema can't say: a malformed date, a pydantic
    constraint, a dataclass's own ``__post_init__`` check, a value nested too deeply to convert.
    """
    try:
        return _Converter().convert(value, tp, path)
    except RecursionError:
        raise ConversionError([FieldError(path, _TOO_DEEP)]) from None


def convert_fields(
    value: Mapping[str, Any], fields: Sequence[Field], path: str = ""
) -> dict[str, Any]:
    """Each field's converted value, by name; keys that are not fields are left out.

    Raises :class:`ConversionError` as :func:`convert` does.
    """
    try:
        return _Converter().convert_fields(value, fields, path)
    except RecursionError:
        raise ConversionError([FieldError(path, _TOO_DEEP)]) from None


_TOO_DEEP = "the value is nested too deeply to convert"


def _memo(cache: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    try:
        return cache[key]
    except KeyError:
        cache[key] = made = make()
        return made
    except TypeError:  # unhashable, e.g. Annotated with a dict in its metadata
        return make()


class _Converter:
    """One conversion; remembers what it works out per type, as a long list repeats them."""

    def __init__(self) -> None:
        self.schemas: dict[Any, dict[str, Any]] = {}
        self.fields: dict[type, list[Field]] = {}

    def convert(self, value: Any, tp: Any, path: str) -> Any:
        tp, _ = unwrap(tp)
        if value is None:  # the check let it through, so the type takes null
            return None
        if tp is int:
            return int(value)  # JSON may spell an integer as 3.0
        if tp is float:
            return float(value)
        if tp in (dt.datetime, dt.date, dt.time):
            return _parse_iso(tp, value, path)
        origin, args = get_origin(tp), get_args(tp)
        if _is_union(origin):
            return self.convert_union(value, [a for a in args if a is not _NONE_TYPE], path)
        if origin in _ARRAY_ORIGINS or tp in (set, frozenset):
            item = args[0] if args else Any
            items = (self.convert(v, item, _child(path, i)) for i, v in enumerate(value))
            return _ARRAY_ORIGINS.get(origin, tp)(items)
        if origin is tuple or tp is tuple:
            if not args or args == ((),):
                return tuple(value)
            if len(args) == 2 and args[1] is Ellipsis:
                args = (args[0],) * len(value)
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(self.convert(v, a, _child(path, i)) for i, (v, a) in pairs)
        if origin in _MAPPING_ORIGINS and args:
            return {k: self.convert(v, args[1], _child(path, k)) for k, v in value.items()}
        if isinstance(tp, type):
            return self.convert_class(value, tp, path)
        return value  # str, bool, Literal, Any, dict, list: JSON already is the value

    def convert_fields(
        self, value: Mapping[str, Any], fields: Sequence[Field], path: str
    ) -> dict[str, Any]:
        out = {}
        for f in fields:
            if f.name in value:
                out[f.name] = self.convert(value[f.name], f.annotation, _child(path, f.name))
            elif f.required:
                out[f.name] = None  # the check lets a required field be left out only if nullable
        return out

    def convert_union(self, value: Any, members: list[Any], path: str) -> Any:
        if len(members) == 1:  # Optional[X]
            return self.convert(value, members[0], path)
        # Prefer a member the value fits exactly, then one it fits but for unknown keys.
        fits = []
        for member in members:
            schema = _memo(self.schemas, member, lambda m=member: json_schema(m, recursive=True))
            trial = _Checker(schema.get("$defs", {}), allow_extra=True)
            trial.check(value, schema, path)
            if not trial.errors:
                fits.append((trial.extra_keys > 0, member))
        error: ConversionError | None = None
        for _, member in sorted(fits, key=lambda fit: fit[0]):  # stable: declaration order
            try:
                return self.convert(value, member, path)
            except ConversionError as exc:  # e.g. "datetime | str": not a date, but the str fits
                error = error or exc
        if error is not None:
            raise error
        return value

    def convert_class(self, value: Any, tp: type, path: str) -> Any:
        if issubclass(tp, Enum):
            return tp(value)
        if is_pydantic_model(tp):
            try:  # JSON mode: a strict model still takes dates and enums as JSON spells them
                return tp.model_validate_json(json.dumps(value))  # type: ignore[attr-defined]
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise ConversionError(_pydantic_errors(exc, path)) from None
        if not (_is_typeddict(tp) or dataclasses.is_dataclass(tp)):
            return value
        kwargs = self.convert_fields(value, _memo(self.fields, tp, lambda: class_fields(tp)), path)
        if _is_typeddict(tp):
            return kwargs
        try:
            return tp(**kwargs)
        except Exception as exc:  # a check in __post_init__ is the user's own validation
            message = f"{tp.__name__} rejected the values: {exc}"
            raise ConversionError([FieldError(path, message)]) from None


def _parse_iso(kind: type, value: str, path: str) -> Any:
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) and kind is not dt.date else value
    try:
        return kind.fromisoformat(text)  # type: ignore[attr-defined]
    except ValueError:
        label = {dt.datetime: "date-time", dt.date: "date", dt.time: "time"}[kind]
        message = f"expected an ISO 8601 {label}, got {_short(value)}"
        raise ConversionError([FieldError(path, message)]) from None


def _pydantic_errors(exc: Exception, path: str) -> list[FieldError]:
    """A pydantic ``ValidationError`` as errors with paths like ``lines[0].price``."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [FieldError(path, str(exc))]
    out = []
    for error in errors():
        where = path
        for part in error.get("loc", ()):
            where = _child(where, part)
        out.append(FieldError(where, str(error.get("msg"))))
    return out
