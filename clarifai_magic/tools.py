"""Tool calling: ``@tool``, a function's signature as a tool schema, running the model's calls.

Pure Python (no IPython, no ``openai``). A tool is any callable with a type hint on every
parameter; :func:`as_tool` turns it into a :class:`Tool` whose :meth:`Tool.schema` is the OpenAI
``tools=[...]`` entry (types become schemas, and JSON arguments become Python values, in
:mod:`clarifai_magic.schema`). :class:`ToolRunner` runs the calls of one model turn concurrently:
sync tools on daemon threads, ``async def`` tools on one background event loop it owns, so it
works while the caller's thread runs its own loop (as ipykernel does). Every failure (unknown
tool, bad JSON, invalid arguments, timeout, exception, refusal) becomes a :class:`ToolOutcome`
whose ``content`` tells the model what went wrong, so the conversation can go on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copy
import dataclasses
import datetime as dt
import functools
import inspect
import json
import re
import threading
import time
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Protocol, TypeVar, overload

from .docstrings import parse_docstring
from .schema import (
    MISSING,
    ConversionError,
    Field,
    SchemaError,
    check,
    convert_fields,
    is_pydantic_model,
    json_default,
    json_kind,
    object_schema,
    strict_schema,
    type_hints,
)

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


# What a tool's result may cost the model's context before it is cut (with a marker).
MAX_RESULT_CHARS = 20_000


class ToolDeclarationError(ValueError):
    """A function can't be used as a tool as declared; the message says how to fix it."""


@dataclasses.dataclass
class Tool:
    """A callable the model may call, with the JSON Schema of its parameters.

    ``parameters`` is the plain schema, arguments are checked against it; :meth:`schema` sends
    its strict-mode form when ``strict``.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any]
    confirm: bool = False
    timeout: float | None = None
    strict: bool = False
    # How to turn validated JSON back into the function's arguments; None passes JSON as kwargs.
    _fields: tuple[Field, ...] | None = dataclasses.field(default=None, repr=False, compare=False)
    _positional_only: frozenset[str] = dataclasses.field(
        default=frozenset(), repr=False, compare=False
    )

    def schema(self) -> dict[str, Any]:
        """The entry for the request's ``tools`` list."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        if self.strict:
            function["parameters"] = strict_schema(self.parameters)
            function["strict"] = True
        else:
            function["parameters"] = copy.deepcopy(self.parameters)  # callers may mutate theirs
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
        hints = type_hints(hinted, label)
    except SchemaError as exc:
        raise ToolDeclarationError(str(exc)) from None

    doc = parse_docstring(inspect.getdoc(documented))
    fields = _signature_fields(func, signature, hints, label)
    try:
        parameters = object_schema(fields, "parameter {!r}", doc.params)
    except SchemaError as exc:
        raise ToolDeclarationError(f"Can't use {label} as a tool: {exc}") from None
    if strict:
        try:
            strict_schema(parameters)  # refused here rather than when the request is built
        except SchemaError as exc:
            raise ToolDeclarationError(f"Can't use {label} as a strict tool: {exc}") from None
    return Tool(
        name=tool_name,
        description=doc.summary if description is None else description,
        parameters=parameters,
        func=func,
        confirm=confirm,
        timeout=timeout,
        strict=strict,
        _fields=tuple(fields),
        _positional_only=frozenset(
            p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_ONLY
        ),
    )


def _signature_fields(
    func: Any, signature: inspect.Signature, hints: dict[str, Any], label: str
) -> list[Field]:
    """The parameters the model fills in: all but a partial's bound keywords."""
    bound_keywords = set(func.keywords) if isinstance(func, functools.partial) else set()
    fields = []
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
        required = p.default is p.empty
        fields.append(Field(p.name, hints[p.name], required, MISSING if required else p.default))
    return fields


def _is_async_callable(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    return inspect.iscoroutinefunction(type(func).__call__)  # an object with async __call__


# ---------------------------------------------------------------------------------------------
# Results as text for the model


def _json_or_repr(obj: Any) -> Any:
    try:
        return json_default(obj)
    except TypeError:
        return repr(obj)


def _jsonish(value: Any) -> bool:
    return (
        isinstance(value, (dict, list, tuple, set, frozenset, int, float, Enum, dt.date, dt.time))
        or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        or is_pydantic_model(type(value))
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
    to_markdown = getattr(value, "to_markdown", None)
    if callable(to_markdown) and not isinstance(value, type):
        # pandas DataFrame/Series: a Markdown table when `tabulate` is installed, else repr.
        try:
            text = to_markdown()
        except Exception:
            text = None
        if isinstance(text, str):
            return text
    if _jsonish(value):
        try:
            return json.dumps(value, default=_json_or_repr, ensure_ascii=False)
        except (TypeError, ValueError):  # non-string keys, circular references
            pass
    return repr(value)


def serialize_result(value: Any, max_chars: int = MAX_RESULT_CHARS) -> str:
    """A tool's return value as the text the model receives.

    Strings go as they are; ``None`` becomes ``"null"`` (JSON for "no value", and never an empty
    message, which some providers reject); objects with ``_repr_markdown_`` give that markdown,
    and so do pandas objects (``to_markdown``, when ``tabulate`` is installed);
    dicts, lists, numbers, dataclasses, pydantic models, enums and dates become JSON; anything
    else its ``repr()``. Text past ``max_chars`` is cut and marked with how much was dropped.
    """
    return _cut(_result_text(value), max_chars)


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}\n…[truncated {len(text) - max_chars} characters]"


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


# Enough for the model to fix its call; a huge bad list would otherwise flood the context.
_MAX_LISTED_ERRORS = 10


def _prepare(
    call: ToolCallLike, tools: Mapping[str, Tool], max_chars: int
) -> _Prepared | ToolOutcome:
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
    except RecursionError:
        return _failed(call, None, f"the arguments for {call.name} are nested too deeply.")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        kind = json_kind(arguments)
        return _failed(
            call, None, f"the arguments for {call.name} must be a JSON object, not {kind}."
        )
    checked = check(arguments, spec.parameters)
    problems = checked.errors
    if not problems:
        try:
            args, kwargs = _bind(spec, checked.value)
        except ConversionError as exc:
            problems = exc.errors
        else:
            return _Prepared(call, spec, arguments, args, kwargs)
    listed = "; ".join(str(p) for p in problems[:_MAX_LISTED_ERRORS])
    if len(problems) > _MAX_LISTED_ERRORS:
        listed += f"; and {len(problems) - _MAX_LISTED_ERRORS} more"
    error = _cut(f"invalid arguments for {call.name}: {listed}.", max_chars)
    return _failed(call, arguments, error)


def _bind(tool: Tool, arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``tool.func`` from validated JSON arguments."""
    if tool._fields is None:
        return [], dict(arguments)
    kwargs = convert_fields(arguments, tool._fields)
    args = [kwargs.pop(f.name, f.default) for f in tool._fields if f.name in tool._positional_only]
    return args, kwargs


class ToolRunner:
    """Runs a turn's tool calls concurrently; owns one background event loop for async tools.

    The loop thread starts on first need and stops with :meth:`close` (or ``with`` exit); a later
    :meth:`run_calls` starts it again. Sync tools each get a daemon thread, so a tool that never
    returns can't block the interpreter's exit the way a ``ThreadPoolExecutor`` worker would.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Set by close(): a sync tool left running past its timeout must not start a new loop
        # (nobody would stop it); only run_calls reopens the runner.
        self._closed = False

    def __enter__(self) -> ToolRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the tool runner was closed while this tool ran")
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
            if pending:  # bounded: a tool may catch CancelledError and carry on
                loop.run_until_complete(asyncio.wait(pending, timeout=1))
            loop.close()

    def close(self) -> None:
        """Stop the background loop (cancelling async tools still running)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._closed = True
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    def run_calls(
        self,
        calls: Sequence[ToolCallLike],
        tools: Mapping[str, Tool],
        *,
        confirm: Callable[[Tool, dict[str, Any]], bool] | None = None,
        max_result_chars: int | None = None,
    ) -> list[ToolOutcome]:
        """Run ``calls``; one outcome per call, in the same order.

        Each result is cut to ``max_result_chars`` (default :data:`MAX_RESULT_CHARS`).

        Arguments are parsed, validated and converted first; then ``confirm`` (if given) is asked,
        in this thread and one call at a time, about each tool declared with ``confirm=True``
        (without a callback such tools just run). The accepted calls then run concurrently, each
        within its tool's timeout.
        """
        max_result_chars = max_result_chars or MAX_RESULT_CHARS
        with self._lock:
            self._closed = False
        outcomes: list[ToolOutcome | None] = [None] * len(calls)
        accepted: list[tuple[int, _Prepared]] = []
        for i, call in enumerate(calls):
            prepared = _prepare(call, tools, max_result_chars)
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
                value = self._await_in_loop(value)
            ran = _Ran(value, duration=time.perf_counter() - started)
        except BaseException as exc:  # a tool's sys.exit() or KeyboardInterrupt is its failure
            ran = _caught(exc, started)
        if future.set_running_or_notify_cancel():
            future.set_result(ran)

    def _await_in_loop(self, awaitable: Any) -> Any:
        try:
            loop = self._event_loop()
        except RuntimeError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never to run: no "never awaited" warning
            raise
        return asyncio.run_coroutine_threadsafe(_await(awaitable), loop).result()

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
