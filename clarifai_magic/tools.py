"""Declaring tools: ``@tool``, and a function's signature as a pydantic model and a tool schema.

A tool is any callable with a type hint on every parameter. :func:`as_tool` turns it into a
:class:`Tool`: its parameters become a pydantic model (``create_model``, as simonw/llm builds
tool input schemas), whose JSON Schema is the OpenAI ``tools=[...]`` entry and which validates
the model's arguments (:meth:`Tool.bind`). Descriptions come from the docstring and
``Annotated`` hints. Running calls lives in :mod:`clarifai_magic.tool_runner`; this module keeps
re-exporting it, so ``from clarifai_magic.tools import ToolRunner, ToolOutcome`` still works.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import types
from collections.abc import Callable
from typing import Any, TypeVar, overload

import pydantic

from . import schema
from .tool_calls import InvalidArguments, ToolCallLike, ToolOutcome, serialize_result
from .tool_runner import ToolRunner, cancel_event, cancelled

__all__ = [
    "Tool",
    "ToolCallLike",
    "ToolDeclarationError",
    "ToolOutcome",
    "ToolRunner",
    "as_tool",
    "cancel_event",
    "cancelled",
    "describe_schema",
    "serialize_result",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolDeclarationError(ValueError):
    """A function can't be used as a tool as declared; the message says how to fix it."""

    def _render_traceback_(self) -> list[str]:
        # Raised at `@tool` in the user's cell: the message says it all, the package's stack
        # would only hide it.
        return [f"{type(self).__name__}: {self}"]


@dataclasses.dataclass
class Tool:
    """A callable the model may call, with the JSON Schema of its parameters.

    ``parameters`` is the plain schema; :meth:`schema` sends its strict-mode form when
    ``strict``; :meth:`bind` turns the model's arguments into the function's.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any]
    confirm: bool = False
    timeout: float | None = None
    strict: bool = False
    # The parameters as a pydantic model (fields named by position, aliased to the parameters'
    # names, so no name clashes with BaseModel's own); None passes the JSON as keyword arguments.
    _model: type[pydantic.BaseModel] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    _positional_only: tuple[str, ...] = dataclasses.field(default=(), repr=False, compare=False)

    def schema(self) -> dict[str, Any]:
        """The entry for the request's ``tools`` list."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        if self.strict:
            function["parameters"] = schema.strict_schema(self.parameters)
            function["strict"] = True
        else:
            function["parameters"] = json.loads(json.dumps(self.parameters))  # callers may mutate
        return {"type": "function", "function": function}

    def bind(self, arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for ``func`` from the model's JSON arguments.

        Raises :class:`InvalidArguments` listing the first problems (never the values in full).
        """
        if self._model is None:
            return [], dict(arguments)
        try:
            validated = schema.validate(self._model, arguments, self.parameters)
        except schema.Invalid as exc:
            raise InvalidArguments(schema.describe(exc)) from None
        fields = type(validated).model_fields
        # Only what the model sent: the function's own defaults apply to the rest.
        given = {fields[f].alias: getattr(validated, f) for f in validated.model_fields_set}
        args = [given.pop(name) for name in self._positional_only if name in given]
        return args, given

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
        hints = schema.type_hints(hinted, label)
    except schema.SchemaError as exc:
        raise ToolDeclarationError(str(exc)) from None
    doc = schema.parse_docstring(inspect.getdoc(documented))
    model = _parameters_model(func, signature, hints, label, doc.params)
    try:
        parameters = schema.json_schema(model, "the parameters")
    except schema.SchemaError as exc:
        raise ToolDeclarationError(f"Can't use {label} as a tool: {exc}") from None
    if strict:
        try:
            schema.strict_schema(parameters)  # refused here rather than when the request is built
        except schema.SchemaError as exc:
            raise ToolDeclarationError(f"Can't use {label} as a strict tool: {exc}") from None
    positional_only = [p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_ONLY]
    return Tool(
        name=tool_name,
        description=doc.summary if description is None else description,
        parameters=parameters,
        func=func,
        confirm=confirm,
        timeout=timeout,
        strict=strict,
        _model=model,
        _positional_only=tuple(positional_only),
    )


def _parameters_model(
    func: Any,
    signature: inspect.Signature,
    hints: dict[str, Any],
    label: str,
    docs: dict[str, str],
) -> Any:
    """The parameters the model fills in (all but a partial's bound keywords) as a model."""
    bound_keywords = set(func.keywords) if isinstance(func, functools.partial) else set()
    fields: dict[str, Any] = {}
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
        hint = hints[p.name]
        default = ... if p.default is p.empty else p.default
        text = schema.annotated_description(hint) or docs.get(p.name)
        fields[f"p{len(fields)}"] = (
            hint,
            pydantic.Field(default, alias=p.name, description=text),
        )
    # Unknown keys are errors, at every level but a pydantic model's (its own config decides).
    config = pydantic.ConfigDict(extra="forbid")
    try:
        return pydantic.create_model(f"{label}_parameters", __config__=config, **fields)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        for hint, info in fields.values():
            try:  # which parameter it was, in the words of the schema layer
                schema.json_schema(hint, f"parameter {info.alias!r}")
            except schema.SchemaError as found:
                problem = str(found)
                break
        raise ToolDeclarationError(f"Can't use {label} as a tool: {problem}") from None


def _is_async_callable(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    return inspect.iscoroutinefunction(type(func).__call__)  # an object with async __call__
