"""Tool calling: ``@tool``, JSON Schemas from Python signatures, validating and running calls.

Pure Python (no IPython, no ``openai``). A tool is any callable with a type hint on every
parameter; :func:`as_tool` turns it into a :class:`Tool` whose :meth:`Tool.schema` is the OpenAI
``tools=[...]`` entry. :class:`ToolRunner` runs the calls of one model turn concurrently: sync
tools on daemon threads, ``async def`` tools on one background event loop it owns, so it works
while the caller's thread runs its own loop (as ipykernel does). Every failure (unknown tool, bad
JSON, invalid arguments, timeout, exception, refusal) becomes a :class:`ToolOutcome` whose
``content`` tells the model what went wrong, so the conversation can go on.
"""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import contextlib
import contextvars
import copy
import dataclasses
import datetime as dt
import functools
import inspect
import json
import re
import sys
import threading
import time
import traceback
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Annotated, Any, Literal, Protocol, TypeVar, Union, get_args, get_origin, overload

__all__ = [
    "Tool",
    "ToolCallLike",
    "ToolDeclarationError",
    "ToolOutcome",
    "ToolRunner",
    "as_tool",
    "describe_schema",
    "serialize_result",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NONE_TYPE = type(None)
_EMPTY = inspect.Parameter.empty
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


class ToolDeclarationError(ValueError):
    """A function can't be used as a tool as declared; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class _Param:
    name: str
    annotation: Any
    default: Any
    positional_only: bool


@dataclasses.dataclass
class Tool:
    """A callable the model may call, with the JSON Schema of its parameters."""

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any]
    confirm: bool = False
    timeout: float | None = None
    strict: bool = False
    # How to turn validated JSON back into the function's arguments; None passes JSON as kwargs.
    _params: tuple[_Param, ...] | None = dataclasses.field(default=None, repr=False, compare=False)

    def schema(self) -> dict[str, Any]:
        """The entry for the request's ``tools`` list."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = copy.deepcopy(self.parameters)  # callers may mutate theirs
        if self.strict:
            function["strict"] = True
        return {"type": "function", "function": function}

    @property
    def is_async(self) -> bool:
        return _is_async_callable(self.func)


def describe_schema(tool: Tool) -> str:
    """The tool's schema as indented JSON, for showing to the user."""
    return json.dumps(tool.schema(), indent=2, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Declaring tools


@overload
def tool(func: F, /) -> F: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    confirm: bool = False,
    timeout: float | None = None,
    strict: bool = False,
) -> Callable[[F], F]: ...


def tool(
    func: Any = None,
    *,
    name: str | None = None,
    description: str | None = None,
    confirm: bool = False,
    timeout: float | None = None,
    strict: bool = False,
) -> Any:
    """Mark a function as a tool, as ``@tool`` or ``@tool(confirm=True, timeout=10, ...)``.

    The function is returned unchanged (still callable as before) with its :class:`Tool` in
    ``__clarifai_tool__``; declaration problems raise :class:`ToolDeclarationError` right here.
    ``confirm`` asks the user before each call, ``timeout`` is in seconds, ``strict`` turns on
    OpenAI strict mode (every property required, optional ones nullable, no extra keys).
    """

    def decorate(f: F) -> F:
        spec = _build_tool(
            f, name=name, description=description, confirm=confirm, timeout=timeout, strict=strict
        )
        try:
            f.__clarifai_tool__ = spec  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            raise ToolDeclarationError(
                f"@tool can't mark {f!r} (it takes no attributes). Decorate the function itself, "
                "or pass this object to as_tool()."
            ) from None
        return f

    return decorate if func is None else decorate(func)


def as_tool(obj: Any) -> Tool:
    """The :class:`Tool` for a decorated function, a :class:`Tool`, or any typed callable.

    Plain functions, bound methods, ``functools.partial`` objects (their bound arguments leave
    the schema), ``async def`` functions and callable objects all work. A method or partial of
    an ``@tool`` function keeps that declaration's options (name, confirm, timeout, ...).
    """
    if isinstance(obj, Tool):
        return obj
    spec = getattr(obj, "__clarifai_tool__", None)
    if isinstance(spec, Tool) and spec.func is obj:
        return spec
    inherited = _inherited_spec(obj)
    if inherited is None:
        return _build_tool(obj)
    return _build_tool(
        obj,
        name=inherited.name,
        description=inherited.description,
        confirm=inherited.confirm,
        timeout=inherited.timeout,
        strict=inherited.strict,
    )


def _inherited_spec(obj: Any) -> Tool | None:
    """The @tool declaration of the function a method or partial wraps, if any."""
    while obj is not None:
        spec = getattr(obj, "__clarifai_tool__", None)
        if isinstance(spec, Tool):
            return spec
        obj = _wrapped_callable(obj)
    return None


def _wrapped_callable(obj: Any) -> Any:
    if isinstance(obj, types.MethodType):
        return obj.__func__
    if isinstance(obj, functools.partial):
        return obj.func
    return None


def _underlying_function(obj: Any) -> tuple[Any, Any]:
    """Where docstring, name and type hints live: the function under methods and partials."""
    inner = obj
    while (nxt := _wrapped_callable(inner)) is not None:
        inner = nxt
    if inspect.isfunction(inner) or inspect.isbuiltin(inner) or inspect.isclass(inner):
        return inner, inner
    return inner, type(inner).__call__  # a callable object: hints live on its __call__


def _build_tool(
    func: Any,
    *,
    name: str | None = None,
    description: str | None = None,
    confirm: bool = False,
    timeout: float | None = None,
    strict: bool = False,
) -> Tool:
    if not callable(func):
        raise ToolDeclarationError(f"{func!r} is not callable, so it can't be a tool.")
    documented, hinted = _underlying_function(func)
    label = getattr(documented, "__name__", None) or type(documented).__name__
    tool_name = name or label
    if not _NAME_RE.match(tool_name):
        raise ToolDeclarationError(
            f"{tool_name!r} is not a valid tool name: use 1 to 64 letters, digits, '_' or '-'. "
            "Pass a name, e.g. @tool(name='lookup')."
        )
    if timeout is not None and not timeout > 0:
        raise ToolDeclarationError(f"The timeout of tool {tool_name} must be a positive number.")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ToolDeclarationError(f"Can't read the signature of {label}: {exc}.") from None
    try:
        hints = typing.get_type_hints(hinted, include_extras=True)
    except Exception as exc:
        raise ToolDeclarationError(
            f"Can't resolve the type hints of {label} ({type(exc).__name__}: {exc}). Define the "
            "types it uses before the function, at module (or notebook) level."
        ) from None

    doc = _parse_docstring(inspect.getdoc(documented))
    bound_keywords = set(func.keywords) if isinstance(func, functools.partial) else set()
    params: list[_Param] = []
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in signature.parameters.values():
        if p.name in bound_keywords:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            star = "*" if p.kind is p.VAR_POSITIONAL else "**"
            raise ToolDeclarationError(
                f"Can't use {label} as a tool: {star}{p.name} can't be described to the model. "
                "Declare each argument by name with a type hint."
            )
        if p.name not in hints:
            raise ToolDeclarationError(
                f"Can't use {label} as a tool: parameter {p.name!r} has no type hint. Tools need "
                f"one on every parameter so the model knows what to send, e.g. `{p.name}: str`."
            )
        annotation = hints[p.name]
        try:
            prop = _schema_for(annotation, f"parameter {p.name!r}", ())
        except ToolDeclarationError as exc:
            raise ToolDeclarationError(f"Can't use {label} as a tool: {exc}") from None
        _describe_property(prop, annotation, doc.params.get(p.name))
        if p.default is _EMPTY:
            required.append(p.name)
        else:
            _set_default(prop, p.default)
        properties[p.name] = prop
        params.append(_Param(p.name, annotation, p.default, p.kind is p.POSITIONAL_ONLY))

    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    if strict:
        try:
            parameters = _strictify(parameters, "")
        except ToolDeclarationError as exc:
            raise ToolDeclarationError(f"Can't use {label} as a strict tool: {exc}") from None
    return Tool(
        name=tool_name,
        description=doc.summary if description is None else description,
        parameters=parameters,
        func=func,
        confirm=confirm,
        timeout=timeout,
        strict=strict,
        _params=tuple(params),
    )


def _is_async_callable(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    return inspect.iscoroutinefunction(type(func).__call__)  # an object with async __call__


# ---------------------------------------------------------------------------------------------
# Docstrings (Google, NumPy and Sphinx styles)


@dataclasses.dataclass(frozen=True)
class _Doc:
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


def _parse_docstring(doc: str | None) -> _Doc:
    if not doc:
        return _Doc("", {})
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
    return _Doc(" ".join(summary), {k: v for k, v in params.items() if v})


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


# ---------------------------------------------------------------------------------------------
# JSON Schema from type hints


def _unwrap(tp: Any) -> tuple[Any, str | None]:
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


def _is_pydantic_model(tp: Any) -> bool:
    # Only a class from an already imported pydantic can be a pydantic model: no import here.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _type_label(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _enum_schema(values: list[Any], where: str) -> dict[str, Any]:
    for value in values:
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ToolDeclarationError(
                f"{where}: choice {value!r} is not a JSON value (use str, int, float, bool, None)."
            )
    kinds = {_json_type(v) for v in values}
    if len(kinds) == 1:
        return {"type": kinds.pop(), "enum": values}
    return {"enum": values}


def _schema_for(tp: Any, where: str, seen: tuple[type, ...]) -> dict[str, Any]:
    tp, description = _unwrap(tp)
    schema = _bare_schema(tp, where, seen)
    if description:
        schema["description"] = description
    return schema


def _bare_schema(tp: Any, where: str, seen: tuple[type, ...]) -> dict[str, Any]:
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
            member = _schema_for(arg, where, seen)
            members.extend(member["anyOf"] if list(member) == ["anyOf"] else [member])
        return {"anyOf": members}
    if origin in _ARRAY_ORIGINS:
        return (
            {"type": "array", "items": _schema_for(args[0], where, seen)}
            if args
            else {"type": "array"}
        )
    if origin is tuple:
        if not args or args == ((),):
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_for(args[0], where, seen)}
        return {
            "type": "array",
            "prefixItems": [_schema_for(a, where, seen) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin in _MAPPING_ORIGINS:
        if not args:
            return {"type": "object"}
        if _unwrap(args[0])[0] is not str:
            raise ToolDeclarationError(
                f"{where}: {_type_label(tp)} has non-string keys; JSON object keys are strings, "
                "so use dict[str, ...]."
            )
        return {"type": "object", "additionalProperties": _schema_for(args[1], where, seen)}
    if tp in (list, set, frozenset, tuple):
        return {"type": "array"}
    if tp is dict:
        return {"type": "object"}
    if isinstance(tp, type):
        if tp in seen:
            raise ToolDeclarationError(
                f"{where}: {tp.__name__} refers to itself; recursive types can't be tool "
                "parameters."
            )
        if issubclass(tp, Enum):
            return _enum_schema([m.value for m in tp], where)
        if _is_pydantic_model(tp):
            return _pydantic_schema(tp, where)
        if dataclasses.is_dataclass(tp):
            return _dataclass_schema(tp, where, (*seen, tp))
        if _is_typeddict(tp):
            return _typeddict_schema(tp, where, (*seen, tp))
    raise ToolDeclarationError(
        f"{where} has type {_type_label(tp)}, which tools don't support. Use {_SUPPORTED}."
    )


def _class_hints(cls: type, where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise ToolDeclarationError(
            f"{where}: can't resolve the type hints of {cls.__name__} ({exc})."
        ) from None


def _class_doc(cls: type) -> _Doc:
    doc = cls.__doc__
    # dataclasses and TypedDicts without a docstring get a generated one: not a description.
    if not doc or doc.startswith(f"{cls.__name__}(") or cls.__doc__ is dict.__doc__:
        return _Doc("", {})
    return _parse_docstring(doc)


def _object_schema(
    cls: type,
    fields: list[tuple[str, Any, bool, Any]],
    where: str,
    seen: tuple[type, ...],
) -> dict[str, Any]:
    """Fields are (name, annotation, required, default or _EMPTY)."""
    doc = _class_doc(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, annotation, is_required, default in fields:
        prop = _schema_for(annotation, f"{where}, field {name!r}", seen)
        _describe_property(prop, annotation, doc.params.get(name))
        if is_required:
            required.append(name)
        elif default is not _EMPTY:
            _set_default(prop, default)
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if doc.summary:
        schema["description"] = doc.summary
    return schema


def _dataclass_schema(cls: type, where: str, seen: tuple[type, ...]) -> dict[str, Any]:
    hints = _class_hints(cls, where)
    fields = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], False, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], False, f.default_factory()))
        else:
            fields.append((f.name, hints[f.name], True, _EMPTY))
    return _object_schema(cls, fields, where, seen)


def _typeddict_required(cls: type, name: str, hint: Any) -> bool:
    special = _special_name(get_origin(hint))
    if special in ("Required", "NotRequired"):
        return special == "Required"
    return name in cls.__required_keys__  # type: ignore[attr-defined]


def _typeddict_schema(cls: type, where: str, seen: tuple[type, ...]) -> dict[str, Any]:
    hints = _class_hints(cls, where)
    fields = [(n, h, _typeddict_required(cls, n, h), _EMPTY) for n, h in hints.items()]
    return _object_schema(cls, fields, where, seen)


def _pydantic_schema(cls: type, where: str) -> dict[str, Any]:
    try:
        raw = cls.model_json_schema()  # type: ignore[attr-defined]
    except Exception as exc:
        raise ToolDeclarationError(
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
            raise ToolDeclarationError(
                f"{where}: {name} refers to itself; recursive models can't be tool parameters."
            )
        out = {**_inline_refs(defs[name], defs, where, (*stack, name)), **out}
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:  # pydantic's wrapper for a described $ref
        del out["allOf"]
        out = {**all_of[0], **out}
    return out


def _describe_property(prop: dict[str, Any], annotation: Any, doc_text: str | None) -> None:
    """An Annotated description wins over the docstring's."""
    if _unwrap(annotation)[1] is None and doc_text:
        prop["description"] = doc_text


def _set_default(prop: dict[str, Any], default: Any) -> None:
    # A default JSON can't show still applies; the model just isn't told it.
    with contextlib.suppress(TypeError, ValueError):
        prop["default"] = json.loads(json.dumps(default, default=_json_default))


def _nullable(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if None in schema.get("enum", ()):
        return True
    return any(_nullable(m) for m in schema.get("anyOf", ()))


def _strictify(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """OpenAI strict mode: closed objects, every property required, optional ones nullable."""
    out = dict(schema)
    if "default" in out and out["default"] is None:
        del out["default"]  # as the openai client does: null is implied by the nullable type
    where = path or "the parameters"
    if not any(k in out for k in ("type", "anyOf", "enum", "const")):
        raise ToolDeclarationError(
            f"{where} accepts any value, which strict mode can't express; give it a concrete type."
        )
    if "anyOf" in out:
        out["anyOf"] = [_strictify(m, path) for m in out["anyOf"]]
    if out.get("type") == "array":
        if isinstance(out.get("items"), dict):
            out["items"] = _strictify(out["items"], f"{path}[]")
        elif "prefixItems" in out:
            out["prefixItems"] = [_strictify(m, f"{path}[]") for m in out["prefixItems"]]
        else:
            raise ToolDeclarationError(
                f"{where} is a list without an item type; strict mode needs one, e.g. list[str]."
            )
    if out.get("type") == "object":
        properties = out.get("properties")
        if properties is None or out.get("additionalProperties") not in (None, False):
            raise ToolDeclarationError(
                f"{where} is a free-form dict, which strict mode can't express; use a dataclass, "
                "TypedDict or pydantic model, or declare the tool with strict=False."
            )
        required = set(out.get("required", ()))
        new_properties = {}
        for key, prop in properties.items():
            prop = _strictify(prop, f"{path}.{key}" if path else key)
            if key not in required and not _nullable(prop):
                prop = _make_nullable(prop)
            new_properties[key] = prop
        out["properties"] = new_properties
        out["required"] = list(new_properties)
        out["additionalProperties"] = False
    return out


def _make_nullable(prop: dict[str, Any]) -> dict[str, Any]:
    inner = {k: v for k, v in prop.items() if k not in ("description", "default")}
    outer: dict[str, Any] = {"anyOf": [inner, {"type": "null"}]}
    for key in ("description", "default"):
        if key in prop:
            outer[key] = prop[key]
    return outer


# ---------------------------------------------------------------------------------------------
# Validating arguments against the schema subset generated above


def _validate(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Errors for ``value`` against ``schema``; empty when valid.

    Covers what this module generates: type, enum, const, anyOf/oneOf, properties, required,
    additionalProperties, items, prefixItems, minItems/maxItems. An object schema that lists
    ``properties`` and says nothing about ``additionalProperties`` is closed: a key the function
    can't take is an error the model should hear about. A required property that accepts null
    may be left out and means null: models that ignore strict mode skip optional arguments.
    Other keywords (pydantic's constraints) are left to pydantic's own validation.
    """
    errors: list[str] = []
    _check(value, schema, path, errors)
    return errors


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe_expected(schema: Mapping[str, Any]) -> str:
    if "anyOf" in schema or "oneOf" in schema:
        parts = [_describe_expected(m) for m in schema.get("anyOf") or schema.get("oneOf") or ()]
        return " or ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    return kind or "any value"


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return _json_type(value) == kind


def _same_json(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _check(value: Any, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        if not any(not _validate(value, b, path) for b in branches):
            errors.append(f"{_at(path)}expected {_describe_expected(schema)}, got {_short(value)}")
        return
    if "const" in schema and not _same_json(value, schema["const"]):
        errors.append(f"{_at(path)}must be {_short(schema['const'])}, got {_short(value)}")
        return
    if "enum" in schema and not any(_same_json(value, e) for e in schema["enum"]):
        errors.append(f"{_at(path)}must be {_describe_expected(schema)}, got {_short(value)}")
        return
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or ())
    if kinds and not any(_is_type(value, k) for k in kinds):
        errors.append(
            f"{_at(path)}expected {' or '.join(kinds)}, got {_json_type(value)} {_short(value)}"
        )
        return
    if isinstance(value, dict):
        _check_object(value, schema, path, errors)
    elif isinstance(value, list):
        _check_array(value, schema, path, errors)


def _check_object(value: dict, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    noun = "field" if path else "argument"
    for key in schema.get("required", ()):
        if key not in value and not _nullable(properties.get(key, {})):
            errors.append(f"{_at(path)}missing required {noun} {key!r}")
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        if key in properties:
            _check(item, properties[key], child, errors)
        elif isinstance(extra, dict):
            _check(item, extra, child, errors)
        elif extra is False or (extra is None and "properties" in schema):
            allowed = ", ".join(properties) or "none"
            errors.append(f"{_at(path)}unexpected {noun} {key!r} (allowed: {allowed})")


def _check_array(value: list, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if (low is not None and len(value) < low) or (high is not None and len(value) > high):
        size = f"exactly {low}" if low == high else f"at least {low}" if low else f"at most {high}"
        errors.append(f"{_at(path)}expected {size} items, got {len(value)}")
        return
    prefix = schema.get("prefixItems") or []
    items = schema.get("items")
    for i, item in enumerate(value):
        if i < len(prefix):
            _check(item, prefix[i], f"{path}[{i}]", errors)
        elif isinstance(items, dict):
            _check(item, items, f"{path}[{i}]", errors)


# ---------------------------------------------------------------------------------------------
# Converting validated JSON to the annotated Python types


class _ArgumentError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{_at(path)}{message}")


def _admits_none(tp: Any) -> bool:
    tp, _ = _unwrap(tp)
    if tp is None or tp is _NONE_TYPE or tp is Any or tp is object:
        return True
    origin = get_origin(tp)
    if _is_union(origin):
        return any(_admits_none(a) for a in get_args(tp))
    return origin is Literal and None in get_args(tp)


def _parse_iso(kind: type, value: str, path: str) -> Any:
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) and kind is not dt.date else value
    try:
        return kind.fromisoformat(text)  # type: ignore[attr-defined]
    except ValueError:
        label = {dt.datetime: "date-time", dt.date: "date", dt.time: "time"}[kind]
        raise _ArgumentError(path, f"expected an ISO 8601 {label}, got {_short(value)}") from None


def _convert(value: Any, tp: Any, path: str) -> Any:
    tp, _ = _unwrap(tp)
    if tp is Any or tp is object or tp is None or tp is _NONE_TYPE or tp in (str, bool):
        return value
    if tp is int:
        return int(value)  # JSON may spell an integer as 3.0
    if tp is float:
        return float(value)
    if tp in (dt.datetime, dt.date, dt.time):
        return _parse_iso(tp, value, path)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return value
    if _is_union(origin):
        return _convert_union(value, args, path)
    if origin in _ARRAY_ORIGINS:
        items = [_convert(v, args[0], f"{path}[{i}]") if args else v for i, v in enumerate(value)]
        return _ARRAY_ORIGINS[origin](items)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if args and args != ((),):
            return tuple(
                _convert(v, a, f"{path}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        return tuple(value)
    if origin in _MAPPING_ORIGINS:
        return {k: _convert(v, args[1], f"{path}.{k}") for k, v in value.items()} if args else value
    if tp in (set, frozenset, tuple):
        return tp(value)
    if isinstance(tp, type):
        return _convert_class(value, tp, path)
    return value


def _convert_union(value: Any, members: tuple[Any, ...], path: str) -> Any:
    last: _ArgumentError | None = None
    for member in members:
        if _validate(value, _schema_for(member, path, ()), path):
            continue
        try:
            return _convert(value, member, path)
        except _ArgumentError as exc:
            last = exc  # e.g. "datetime | str": not a date, maybe the str fits
    if last is not None:
        raise last
    return value


def _convert_class(value: Any, tp: type, path: str) -> Any:
    if issubclass(tp, Enum):
        return tp(value)
    if _is_pydantic_model(tp):
        fields = tp.model_fields  # type: ignore[attr-defined]
        data = {
            k: v
            for k, v in value.items()
            if not (
                v is None
                and k in fields
                and not fields[k].is_required()
                and not _admits_none(fields[k].annotation)
            )
        }
        try:
            return tp.model_validate(data)  # type: ignore[attr-defined]
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise _ArgumentError(path, _pydantic_message(exc)) from None
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        has_default = {
            f.name
            for f in dataclasses.fields(tp)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        }
        kwargs = _convert_fields(value, hints, has_default, path)
        for f in dataclasses.fields(tp):
            if f.init and f.name not in has_default:
                kwargs.setdefault(f.name, None)  # left out, and validation said null is fine
        try:
            return tp(**kwargs)
        except (TypeError, ValueError) as exc:  # e.g. a check in __post_init__
            raise _ArgumentError(path, f"{tp.__name__}: {exc}") from None
    if _is_typeddict(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        optional = {n for n, h in hints.items() if not _typeddict_required(tp, n, h)}
        return _convert_fields(value, hints, optional, path)
    return value


def _convert_fields(
    value: dict[str, Any], hints: dict[str, Any], omissible: set[str], path: str
) -> dict[str, Any]:
    """Convert each field; a null the type can't take, for a field that may be left out
    (strict mode sends those), means "leave it out"."""
    out = {}
    for key, item in value.items():
        if item is None and key in omissible and not _admits_none(hints[key]):
            continue
        out[key] = _convert(item, hints[key], f"{path}.{key}" if path else key)
    return out


def _pydantic_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for error in errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts)


def _bind(tool: Tool, arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``tool.func`` from validated JSON arguments."""
    if tool._params is None:
        return [], dict(arguments)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in tool._params:
        present = p.name in arguments
        value = arguments.get(p.name)
        if present and value is None and p.default is not _EMPTY and not _admits_none(p.annotation):
            present = False  # strict mode's null for "use the default"
        elif not present and p.default is _EMPTY:
            present = True  # validation only lets a required argument be left out if nullable
        if present:
            value = _convert(value, p.annotation, p.name)
        if p.positional_only:
            args.append(value if present else p.default)
        elif present:
            kwargs[p.name] = value
    return args, kwargs


# ---------------------------------------------------------------------------------------------
# Results as text for the model


def _json_default(obj: Any) -> Any:
    """JSON for the Python values tools commonly return; TypeError for anything else."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (dt.date, dt.time)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if _is_pydantic_model(type(obj)):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if callable(getattr(obj, "tolist", None)):  # numpy arrays and scalars
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _json_or_repr(obj: Any) -> Any:
    try:
        return _json_default(obj)
    except TypeError:
        return repr(obj)


def _jsonish(value: Any) -> bool:
    return (
        isinstance(value, (dict, list, tuple, set, frozenset, int, float, Enum, dt.date, dt.time))
        or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        or _is_pydantic_model(type(value))
        or callable(getattr(value, "tolist", None))
    )


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    markdown = getattr(value, "_repr_markdown_", None)
    if callable(markdown) and not isinstance(value, type):
        try:
            text = markdown()
        except Exception:
            text = None
        if isinstance(text, tuple):  # IPython allows (data, metadata)
            text = text[0]
        if isinstance(text, str):
            return text
    if _jsonish(value):
        try:
            return json.dumps(value, default=_json_or_repr, ensure_ascii=False)
        except (TypeError, ValueError):  # non-string keys, circular references
            pass
    return repr(value)


def serialize_result(value: Any, max_chars: int = 20_000) -> str:
    """A tool's return value as the text the model receives.

    Strings go as they are; ``None`` becomes ``"null"`` (JSON for "no value", and never an empty
    message, which some providers reject); objects with ``_repr_markdown_`` give that markdown;
    dicts, lists, numbers, dataclasses, pydantic models, enums and dates become JSON; anything
    else its ``repr()``. Text past ``max_chars`` is cut and marked with how much was dropped.
    """
    text = _result_text(value)
    if len(text) > max_chars:
        dropped = len(text) - max_chars
        text = f"{text[:max_chars]}\n…[truncated {dropped} characters]"
    return text


# ---------------------------------------------------------------------------------------------
# Running calls


class ToolCallLike(Protocol):
    """What a model's tool call looks like (``clarifai_magic.stream.ToolCall`` is one)."""

    id: str
    name: str
    arguments: str


@dataclasses.dataclass
class ToolOutcome:
    """What running one tool call gave: ``content`` goes back to the model as the tool message."""

    call_id: str
    name: str
    arguments: dict[str, Any] | None
    content: str
    ok: bool
    error: str | None = None
    traceback: str | None = None
    duration: float = 0.0
    result: Any = None


@dataclasses.dataclass
class _Prepared:
    call: ToolCallLike
    tool: Tool
    arguments: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]


@dataclasses.dataclass
class _Ran:
    value: Any = None
    exception: BaseException | None = None
    traceback: str | None = None
    duration: float = 0.0


def _failed(call: ToolCallLike, arguments: dict[str, Any] | None, error: str) -> ToolOutcome:
    return ToolOutcome(call.id, call.name, arguments, f"Error: {error}", ok=False, error=error)


def _caught(exc: BaseException, started: float) -> _Ran:
    # Skip the runner's own frame: the user wants their function's lines.
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return _Ran(exception=exc, traceback=text, duration=time.perf_counter() - started)


def _prepare(call: ToolCallLike, tools: Mapping[str, Tool]) -> _Prepared | ToolOutcome:
    spec = tools.get(call.name)
    if spec is None:
        available = ", ".join(sorted(tools)) or "none"
        return _failed(call, None, f"there is no tool named {call.name!r}. Tools: {available}.")
    raw = call.arguments or ""
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        return _failed(
            call,
            None,
            f"the arguments for {call.name} are not valid JSON ({exc.msg} at position {exc.pos}). "
            "Send a JSON object.",
        )
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        kind = _json_type(arguments)
        return _failed(
            call, None, f"the arguments for {call.name} must be a JSON object, not {kind}."
        )
    problems = _validate(arguments, spec.parameters)
    if not problems:
        try:
            args, kwargs = _bind(spec, arguments)
        except (_ArgumentError, TypeError, ValueError) as exc:  # ValueError: e.g. a bad Enum
            problems = [str(exc)]
        else:
            return _Prepared(call, spec, arguments, args, kwargs)
    return _failed(call, arguments, f"invalid arguments for {call.name}: {'; '.join(problems)}.")


class ToolRunner:
    """Runs a turn's tool calls concurrently; owns one background event loop for async tools.

    The loop thread starts on first need and stops with :meth:`close` (or ``with`` exit). Sync
    tools each get a daemon thread, so a tool that never returns can't block the interpreter's
    exit the way a ``ThreadPoolExecutor`` worker would.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ToolRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._serve, args=(self._loop,), name="clarifai-magic-tools", daemon=True
                )
                self._thread.start()
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def close(self) -> None:
        """Stop the background loop (cancelling async tools still running)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    def run_calls(
        self,
        calls: Sequence[ToolCallLike],
        tools: Mapping[str, Tool],
        *,
        confirm: Callable[[Tool, dict[str, Any]], bool] | None = None,
        max_result_chars: int = 20_000,
    ) -> list[ToolOutcome]:
        """Run ``calls``; one outcome per call, in the same order.

        Arguments are parsed, validated and converted first; then ``confirm`` (if given) is asked,
        in this thread and one call at a time, about each tool declared with ``confirm=True``
        (without a callback such tools just run). The accepted calls then run concurrently, each
        within its tool's timeout.
        """
        outcomes: list[ToolOutcome | None] = [None] * len(calls)
        accepted: list[tuple[int, _Prepared]] = []
        for i, call in enumerate(calls):
            prepared = _prepare(call, tools)
            if isinstance(prepared, ToolOutcome):
                outcomes[i] = prepared
            elif (
                prepared.tool.confirm
                and confirm is not None
                and not confirm(prepared.tool, prepared.arguments)
            ):
                message = f"The user declined to run {call.name}."
                outcomes[i] = ToolOutcome(
                    call.id, call.name, prepared.arguments, message, False, "declined by the user"
                )
            else:
                accepted.append((i, prepared))

        started = [(i, p, self._start(p), time.monotonic()) for i, p in accepted]
        try:
            for i, prepared, future, began in started:
                outcomes[i] = self._collect(prepared, future, began, max_result_chars)
        finally:
            for _, _, future, _ in started:
                future.cancel()  # reaches async tasks still running (interrupt or timeout)
        return [o for o in outcomes if o is not None]

    def _start(self, prepared: _Prepared) -> concurrent.futures.Future[_Ran]:
        func, args, kwargs = prepared.tool.func, prepared.args, prepared.kwargs
        if prepared.tool.is_async:
            return asyncio.run_coroutine_threadsafe(
                self._run_async(func, args, kwargs), self._event_loop()
            )
        future: concurrent.futures.Future[_Ran] = concurrent.futures.Future()
        context = contextvars.copy_context()  # e.g. which cell a print() belongs to
        threading.Thread(
            target=context.run,
            args=(self._run_sync, func, args, kwargs, future),
            name=f"clarifai-magic-tool-{prepared.tool.name}",
            daemon=True,
        ).start()
        return future

    def _run_sync(
        self,
        func: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        future: concurrent.futures.Future[_Ran],
    ) -> None:
        started = time.perf_counter()
        try:
            value = func(*args, **kwargs)
            if inspect.isawaitable(value):  # a sync wrapper around a coroutine
                value = asyncio.run_coroutine_threadsafe(_await(value), self._event_loop()).result()
            ran = _Ran(value, duration=time.perf_counter() - started)
        except BaseException as exc:  # a tool's sys.exit() or KeyboardInterrupt is its failure
            ran = _caught(exc, started)
        if future.set_running_or_notify_cancel():
            future.set_result(ran)

    @staticmethod
    async def _run_async(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> _Ran:
        started = time.perf_counter()
        try:
            value = await func(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # never let a tool's SystemExit stop the shared loop
            return _caught(exc, started)
        return _Ran(value, duration=time.perf_counter() - started)

    @staticmethod
    def _collect(
        prepared: _Prepared,
        future: concurrent.futures.Future[_Ran],
        began: float,
        max_result_chars: int,
    ) -> ToolOutcome:
        call, spec = prepared.call, prepared.tool
        remaining = None
        if spec.timeout is not None:
            remaining = max(0.0, began + spec.timeout - time.monotonic())
        try:
            ran = future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            future.cancel()
            error = f"{call.name} did not finish within {spec.timeout:g} seconds."
            outcome = _failed(call, prepared.arguments, error)
            outcome.duration = time.monotonic() - began
            return outcome
        except concurrent.futures.CancelledError:
            return _failed(call, prepared.arguments, f"{call.name} was cancelled.")
        if ran.exception is not None:
            exc = ran.exception
            message = str(exc)
            if len(message) > 1000:
                message = message[:1000] + "…"
            error = f"{call.name} raised {type(exc).__name__}" + (f": {message}" if message else "")
            outcome = _failed(call, prepared.arguments, error)
            outcome.traceback, outcome.duration = ran.traceback, ran.duration
            return outcome
        try:
            content = serialize_result(ran.value, max_result_chars)
        except Exception as exc:  # a broken __repr__
            error = f"the result of {call.name} could not be turned into text ({exc!r})"
            outcome = _failed(call, prepared.arguments, error)
            outcome.duration, outcome.result = ran.duration, ran.value
            return outcome
        return ToolOutcome(
            call.id,
            call.name,
            prepared.arguments,
            content,
            ok=True,
            duration=ran.duration,
            result=ran.value,
        )


async def _await(awaitable: Any) -> Any:
    return await awaitable
