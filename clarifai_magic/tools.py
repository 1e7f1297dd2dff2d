"""Tool calling: ``@tool``, a function's signature as a tool schema, running the model's calls.

Pure Python (no IPython, no ``openai``). A tool is any callable with a type hint on every
parameter; :func:`as_tool` turns it into a :class:`Tool` whose :meth:`Tool.schema` is the OpenAI
``tools=[...]`` entry (types become schemas, and JSON arguments become Python values, in
:mod:`clarifai_magic.schema`). :class:`ToolRunner` runs the calls of one model turn concurrently:
sync tools on daemon threads, ``async def`` tools on one background event loop it owns, so it
works while the caller's thread runs its own loop (as ipykernel does). Every failure (unknown
tool, bad JSON, arguments nested too deeply, invalid arguments, timeout, exception, refusal,
cancellation) becomes a :class:`ToolOutcome` whose ``content`` tells the model what went wrong, so
the conversation can go on. A running tool learns that the turn was cancelled (or its timeout
passed) from :func:`cancelled` and :func:`cancel_event`.
"""

from __future__ import annotations

import asyncio
import collections
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
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    deeper_than,
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
    "cancel_event",
    "cancelled",
    "describe_schema",
    "serialize_result",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# What a tool's result may cost the model's context before it is cut (with a marker).
MAX_RESULT_CHARS = 20_000
# Deeper arguments are refused before validation: no real tool needs them, and walking them
# recursively could exhaust the stack.
MAX_ARGUMENT_DEPTH = 64
# A traceback is kept for the user, not the model; its end holds the tool's frame and the error.
MAX_TRACEBACK_CHARS = 20_000
# How many calls of one run_calls may run at once: sync tools (one daemon thread each) and async
# tools (tasks on the runner's loop). The rest wait their turn.
MAX_TOOL_THREADS = 16
MAX_TOOL_TASKS = 64
# How often the waiting thread looks at the caller's cancel event.
_POLL_SECONDS = 0.1

# The Event of the tool call running in this context (its thread, or its asyncio task).
_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "clarifai_magic_tool_cancel", default=None
)


def cancel_event() -> threading.Event | None:
    """The Event that is set when the runner stops waiting for the tool call running here.

    It is set when the user cancels the turn (the widget's Stop, the kernel's interrupt) or the
    call's ``timeout`` passes. Python can't stop a sync function from outside, so a long sync
    tool should look at it, e.g. ``cancel_event().wait(5)`` instead of ``time.sleep(5)``. ``None``
    outside a tool call, and in threads a tool starts itself (unless they copy its context).
    """
    return _CANCEL.get()


def cancelled() -> bool:
    """Whether the tool call running here has been cancelled (see :func:`cancel_event`).

    A sync tool that loops or waits can return early when this turns True: its result would no
    longer reach the model. ``False`` outside a tool call.
    """
    event = _CANCEL.get()
    return event is not None and event.is_set()


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
    return repr(value)  # a circular dict/list shows its loop as {...}


def serialize_result(value: Any, max_chars: int = MAX_RESULT_CHARS) -> str:
    """A tool's return value as the text the model receives.

    Strings go as they are; ``None`` becomes ``"null"`` (JSON for "no value", and never an empty
    message, which some providers reject); objects with ``_repr_markdown_`` give that markdown,
    and so do pandas objects (``to_markdown``, when ``tabulate`` is installed);
    dicts, lists, numbers, dataclasses, pydantic models, enums and dates become JSON; anything
    else its ``repr()``. Text past ``max_chars`` is cut and marked with how much was dropped.

    Raises ValueError for a value nested too deeply to write out (and whatever a broken
    ``__repr__`` raises).
    """
    try:
        text = _result_text(value)
    except RecursionError:
        raise ValueError("it is nested too deeply to write out") from None
    return _cut(text, max_chars)


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


def _cancelled(call: ToolCallLike, arguments: dict[str, Any] | None) -> ToolOutcome:
    return ToolOutcome(
        call.id,
        call.name,
        arguments,
        "Error: the user cancelled this call.",
        ok=False,
        error="cancelled",
    )


def _caught(exc: BaseException, started: float) -> _Ran:
    # Skip the runner's own frame: the user wants their function's lines.
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    return _Ran(
        exception=exc, traceback=_traceback_text(exc, tb), duration=time.perf_counter() - started
    )


def _traceback_text(exc: BaseException, tb: types.TracebackType | None) -> str:
    """The traceback as Python prints it, or, past MAX_TRACEBACK_CHARS, its innermost frames and
    the start of the error line (a huge message must not push the tool's own frame out)."""
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    error = "".join(traceback.format_exception_only(type(exc), exc))
    if len(error) > MAX_TRACEBACK_CHARS // 4:
        error = f"{error[: MAX_TRACEBACK_CHARS // 4]}…\n"
    frames = "".join(traceback.format_tb(tb))
    start = max(0, len(frames) - (MAX_TRACEBACK_CHARS - len(error)))
    if start:
        start = frames.find("\n", start) + 1  # whole lines only
    frames = frames[start:]
    cut = len(text) - len(frames) - len(error)
    return f"Traceback (most recent call last):\n…[{cut} characters cut]\n{frames}{error}"


def _exception_message(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not take the turn down
        return ""
    return message[:1000] + "…" if len(message) > 1000 else message


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
        return _failed(call, None, _too_deep(call))
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        kind = json_kind(arguments)
        return _failed(
            call, None, f"the arguments for {call.name} must be a JSON object, not {kind}."
        )
    if deeper_than(arguments, MAX_ARGUMENT_DEPTH):
        # Left out of the outcome: whoever shows or stores it would walk them again.
        return _failed(call, None, _too_deep(call))
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


def _too_deep(call: ToolCallLike) -> str:
    return (
        f"the arguments for {call.name} are nested too deeply "
        f"(more than {MAX_ARGUMENT_DEPTH} levels)."
    )


def _bind(tool: Tool, arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``tool.func`` from validated JSON arguments."""
    if tool._fields is None:
        return [], dict(arguments)
    kwargs = convert_fields(arguments, tool._fields)
    args = [kwargs.pop(f.name, f.default) for f in tool._fields if f.name in tool._positional_only]
    return args, kwargs


@dataclasses.dataclass
class _Running:
    """A call handed to execution: what to wait on, and how to tell it to stop."""

    index: int
    prepared: _Prepared
    is_async: bool
    event: threading.Event = dataclasses.field(default_factory=threading.Event)
    future: concurrent.futures.Future[_Ran] = dataclasses.field(
        default_factory=concurrent.futures.Future
    )
    thread: threading.Thread | None = None
    began: float = 0.0

    @property
    def deadline(self) -> float | None:
        timeout = self.prepared.tool.timeout
        return None if timeout is None else self.began + timeout

    def stop(self) -> None:
        """Tell the tool to stop: its cancel event for sync tools, task cancellation for async."""
        self.event.set()
        # An async tool's future, once cancelled, cancels its task on the loop (_start_task); a
        # sync tool's future is only marked, so its late result is dropped.
        self.future.cancel()


class ToolRunner:
    """Runs a turn's tool calls concurrently; owns one background event loop for async tools.

    The loop thread starts on first need and stops with :meth:`close` (or ``with`` exit); a later
    :meth:`run_calls` starts it again. Sync tools each get a daemon thread, so a tool that never
    returns can't block the interpreter's exit the way a ``ThreadPoolExecutor`` worker would.
    One :meth:`run_calls` runs at most ``max_threads`` sync calls and ``max_tasks`` async calls
    at once; the others wait their turn, so a response with thousands of calls starts no more
    threads than that.

    When the turn is cancelled (the caller's ``cancel`` Event, or KeyboardInterrupt in the thread
    waiting in :meth:`run_calls`) or a call's timeout passes, async tools have their task
    cancelled and sync tools have their cancel event set (:func:`cancelled`,
    :func:`cancel_event`). Python can't stop a sync function from outside: one that doesn't look
    keeps running on its daemon thread until it returns, and its result is dropped. Such a thread
    no longer counts against ``max_threads``.
    """

    def __init__(
        self, max_threads: int = MAX_TOOL_THREADS, max_tasks: int = MAX_TOOL_TASKS
    ) -> None:
        if max_threads < 1 or max_tasks < 1:
            raise ValueError("max_threads and max_tasks must be at least 1")
        self.max_threads, self.max_tasks = max_threads, max_tasks
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
        cancel: threading.Event | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> list[ToolOutcome]:
        """Run ``calls``; one outcome per call, in the same order.

        Each result is cut to ``max_result_chars`` (default :data:`MAX_RESULT_CHARS`).

        Arguments are parsed, validated and converted first; then ``confirm`` (if given) is asked,
        in this thread and one call at a time, about each tool declared with ``confirm=True``
        (without a callback such tools just run). The accepted calls then run concurrently, each
        within its tool's timeout (counted from its start), at most ``max_threads`` sync and
        ``max_tasks`` async calls at a time. ``on_start(i)`` is called in this thread just before
        ``calls[i]`` starts.

        When ``cancel`` is set (it is looked at every 0.1 s), every call not finished is stopped
        (see the class docstring) and its outcome says the user cancelled it; calls that never
        started get the same outcome and ``on_start`` is never called for them. A
        KeyboardInterrupt while waiting stops the calls the same way, then propagates.
        """
        max_result_chars = max_result_chars or MAX_RESULT_CHARS
        with self._lock:
            self._closed = False
        outcomes: list[ToolOutcome | None] = [None] * len(calls)
        # Accepted calls not started yet, sync (False) and async (True), each in call order.
        waiting: dict[bool, collections.deque[tuple[int, _Prepared]]] = {
            False: collections.deque(),
            True: collections.deque(),
        }
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
                waiting[prepared.tool.is_async].append((i, prepared))

        running: dict[int, _Running] = {}
        try:
            while (waiting[False] or waiting[True] or running) and not (
                cancel is not None and cancel.is_set()
            ):
                self._start_waiting(waiting, running, on_start)
                _wait_for_any(running.values())
                self._collect_done(running, outcomes, max_result_chars)
            self._collect_done(running, outcomes, max_result_chars)  # those that beat the cancel
        except BaseException:
            # The kernel's interrupt (or a failing on_start): nothing may run on unseen.
            for record in running.values():
                record.stop()
            raise
        for i, record in running.items():
            record.stop()
            outcomes[i] = _cancelled(record.prepared.call, record.prepared.arguments)
        for queue in waiting.values():
            for i, prepared in queue:
                outcomes[i] = _cancelled(prepared.call, prepared.arguments)
        return [o for o in outcomes if o is not None]

    def _start_waiting(
        self,
        waiting: dict[bool, collections.deque[tuple[int, _Prepared]]],
        running: dict[int, _Running],
        on_start: Callable[[int], None] | None,
    ) -> None:
        for is_async, limit in ((False, self.max_threads), (True, self.max_tasks)):
            queue = waiting[is_async]
            busy = sum(1 for r in running.values() if r.is_async is is_async)
            while queue and busy < limit:
                i, prepared = queue.popleft()
                if on_start is not None:
                    on_start(i)
                # Registered before it starts, so an interrupt from here on still reaches it.
                running[i] = record = _Running(i, prepared, is_async)
                self._start(record)
                busy += 1

    def _start(self, record: _Running) -> None:
        func, args, kwargs = record.prepared.tool.func, record.prepared.args, record.prepared.kwargs
        record.began = time.monotonic()
        if record.is_async:
            _start_task(
                self._event_loop(),
                lambda: self._run_async(func, args, kwargs, record.event),
                record,
            )
            return
        context = contextvars.copy_context()  # e.g. which cell a print() belongs to
        record.thread = threading.Thread(
            target=context.run,
            args=(self._run_sync, func, args, kwargs, record.future, record.event),
            name=f"clarifai-magic-tool-{record.prepared.tool.name}",
            daemon=True,
        )
        record.thread.start()

    def _collect_done(
        self, running: dict[int, _Running], outcomes: list[ToolOutcome | None], max_chars: int
    ) -> None:
        now = time.monotonic()
        for i, record in list(running.items()):
            if record.future.done():
                del running[i]
                if record.thread is not None:
                    # It has handed over its result and is returning: wait for it to be gone, so
                    # the next call's thread doesn't briefly make one more than max_threads.
                    record.thread.join(timeout=5)
                outcomes[i] = _outcome(record, max_chars)
            elif (deadline := record.deadline) is not None and now >= deadline:
                record.stop()  # first: an interrupt between the two must still find it
                del running[i]
                call, spec = record.prepared.call, record.prepared.tool
                error = f"{call.name} did not finish within {spec.timeout:g} seconds."
                outcome = _failed(call, record.prepared.arguments, error)
                outcome.duration = now - record.began
                outcomes[i] = outcome

    def _run_sync(
        self,
        func: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        future: concurrent.futures.Future[_Ran],
        event: threading.Event,
    ) -> None:
        _CANCEL.set(event)  # in this call's own copy of the caller's context
        started = time.perf_counter()
        try:
            value = func(*args, **kwargs)
            if inspect.isawaitable(value):  # a sync wrapper around a coroutine
                value = self._await_in_loop(value, event)
            ran = _Ran(value, duration=time.perf_counter() - started)
        except BaseException as exc:  # a tool's sys.exit() or KeyboardInterrupt is its failure
            ran = _caught(exc, started)
        if future.set_running_or_notify_cancel():
            future.set_result(ran)

    def _await_in_loop(self, awaitable: Any, event: threading.Event) -> Any:
        try:
            loop = self._event_loop()
        except RuntimeError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never to run: no "never awaited" warning
            raise
        future = asyncio.run_coroutine_threadsafe(_await(awaitable), loop)
        while not concurrent.futures.wait([future], timeout=_POLL_SECONDS).done:
            if event.is_set():  # cancelled or timed out: stop the coroutine too
                future.cancel()
                raise concurrent.futures.CancelledError
        return future.result()

    @staticmethod
    async def _run_async(
        func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], event: threading.Event
    ) -> _Ran:
        _CANCEL.set(event)  # in this task's own context
        started = time.perf_counter()
        try:
            value = await func(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # never let a tool's SystemExit stop the shared loop
            return _caught(exc, started)
        return _Ran(value, duration=time.perf_counter() - started)


def _start_task(loop: asyncio.AbstractEventLoop, make: Callable[[], Any], record: _Running) -> None:
    """Run the coroutine ``make()`` as a task on ``loop``, its result in ``record.future``.

    Like ``asyncio.run_coroutine_threadsafe``, but the future is the one ``record`` already holds,
    so cancelling it reaches the task even if the interrupt came before this returned.
    """
    future = record.future

    def launch() -> None:
        if future.cancelled():
            return  # stopped before it began: the coroutine is never even created
        task = loop.create_task(make())  # in the caller's context (see call_soon_threadsafe)

        def cancel_task(done: concurrent.futures.Future[_Ran]) -> None:
            if done.cancelled():
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(task.cancel)

        def settle(done: asyncio.Task[Any]) -> None:
            if done.cancelled():
                future.cancel()
            elif future.set_running_or_notify_cancel():
                exc = done.exception()
                if exc is None:
                    future.set_result(done.result())
                else:
                    future.set_exception(exc)

        task.add_done_callback(settle)
        future.add_done_callback(cancel_task)  # runs at once if already cancelled

    # The callback runs in a copy of this thread's context, and the task copies that again.
    loop.call_soon_threadsafe(launch, context=contextvars.copy_context())


def _wait_for_any(records: Iterable[_Running]) -> None:
    """Until one of ``records`` finishes, its deadline comes, or it is time to look at cancel."""
    futures, wait = [], _POLL_SECONDS
    now = time.monotonic()
    for record in records:
        futures.append(record.future)
        if (deadline := record.deadline) is not None:
            wait = min(wait, max(0.0, deadline - now))
    if futures:
        concurrent.futures.wait(
            futures, timeout=wait, return_when=concurrent.futures.FIRST_COMPLETED
        )


def _outcome(record: _Running, max_result_chars: int) -> ToolOutcome:
    """The outcome of a call whose future is done."""
    call, arguments = record.prepared.call, record.prepared.arguments
    try:
        ran = record.future.result(timeout=0)
    except concurrent.futures.CancelledError:  # an async tool cancelled from inside
        return _failed(call, arguments, f"{call.name} was cancelled.")
    if ran.exception is not None:
        exc = ran.exception
        message = _exception_message(exc)
        error = f"{call.name} raised {type(exc).__name__}" + (f": {message}" if message else "")
        outcome = _failed(call, arguments, error)
        outcome.traceback, outcome.duration = ran.traceback, ran.duration
        return outcome
    try:
        content = serialize_result(ran.value, max_result_chars)
    except Exception as exc:  # a broken __repr__, a result nested too deeply
        error = (
            f"the result of {call.name} could not be turned into text "
            f"({type(exc).__name__}: {_exception_message(exc)})"
        )
        outcome = _failed(call, arguments, error)
        outcome.duration, outcome.result = ran.duration, ran.value
        return outcome
    return ToolOutcome(
        call.id, call.name, arguments, content, ok=True, duration=ran.duration, result=ran.value
    )


async def _await(awaitable: Any) -> Any:
    return await awaitable
