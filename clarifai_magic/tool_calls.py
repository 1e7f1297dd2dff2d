"""One tool call's way in and way out: its arguments read and bound, its outcome as text.

Pure Python (no IPython, no pydantic: a :class:`~clarifai_magic.tools.Tool` validates its own
arguments in :meth:`~clarifai_magic.tools.Tool.bind`). :func:`prepare` reads a call's JSON
arguments (refusing them nested past :data:`MAX_ARGUMENT_DEPTH`, before any recursive walk) and
binds them; :class:`ToolOutcome` is what a call gave, whose ``content`` goes back to the model;
:func:`serialize_result` turns a return value into that text (JSON for data, markdown for
tables, bounded in length); a failure keeps a bounded traceback for the user.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import time
import traceback
import types
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .tools import Tool

# What a tool's result may cost the model's context before it is cut (with a marker).
MAX_RESULT_CHARS = 20_000
# A traceback is kept for the user, not the model; its end holds the tool's frame and the error.
MAX_TRACEBACK_CHARS = 20_000
# Deeper arguments are refused before validation: no real tool needs them, and walking them
# recursively could exhaust the stack.
MAX_ARGUMENT_DEPTH = 64

_JSON_KINDS = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    type(None): "null",
}


class InvalidArguments(ValueError):
    """Arguments that don't fit a tool's parameters; the message lists the first problems."""


def json_kind(value: Any) -> str:
    """The JSON type name of a decoded value: ``"integer"``, ``"object"``, ..."""
    kind = _JSON_KINDS.get(type(value))
    if kind is None:
        kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None
    return kind or type(value).__name__


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


def _is_pydantic_model(tp: Any) -> bool:
    # Only a program that imported pydantic can have its models: no need to import it here.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def json_default(obj: Any) -> Any:
    """``json.dumps`` default for the Python values tools commonly use; TypeError otherwise."""
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
        return json_default(obj)
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
class Ran:
    """What a started call gave: its value, or the exception it raised (with the traceback)."""

    value: Any = None
    exception: BaseException | None = None
    traceback: str | None = None
    duration: float = 0.0


def failed(call: ToolCallLike, arguments: dict[str, Any] | None, error: str) -> ToolOutcome:
    return ToolOutcome(call.id, call.name, arguments, f"Error: {error}", ok=False, error=error)


def cancelled_outcome(call: ToolCallLike, arguments: dict[str, Any] | None) -> ToolOutcome:
    return ToolOutcome(
        call.id,
        call.name,
        arguments,
        "Error: the user cancelled this call.",
        ok=False,
        error="cancelled",
    )


def caught(exc: BaseException, started: float) -> Ran:
    # Skip the runner's own frame: the user wants their function's lines.
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    return Ran(
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


def exception_message(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not take the turn down
        return ""
    return message[:1000] + "…" if len(message) > 1000 else message


@dataclasses.dataclass
class Prepared:
    """A call ready to run: its tool, the JSON arguments, and the bound Python arguments."""

    call: ToolCallLike
    tool: Tool
    arguments: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]


def prepare(
    call: ToolCallLike, tools: Mapping[str, Tool], max_chars: int
) -> Prepared | ToolOutcome:
    """The call with its arguments bound, or the outcome saying why it can't run."""
    spec = tools.get(call.name)
    if spec is None:
        available = ", ".join(sorted(tools)) or "none"
        return failed(call, None, f"there is no tool named {call.name!r}. Tools: {available}.")
    raw = call.arguments or ""
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        return failed(
            call,
            None,
            f"the arguments for {call.name} are not valid JSON ({exc.msg} at position {exc.pos}). "
            "Send a JSON object.",
        )
    except RecursionError:
        return failed(call, None, _too_deep(call))
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        kind = json_kind(arguments)
        return failed(
            call, None, f"the arguments for {call.name} must be a JSON object, not {kind}."
        )
    if deeper_than(arguments, MAX_ARGUMENT_DEPTH):
        # Left out of the outcome: whoever shows or stores it would walk them again.
        return failed(call, None, _too_deep(call))
    try:
        args, kwargs = spec.bind(arguments)
    except InvalidArguments as exc:
        error = _cut(f"invalid arguments for {call.name}: {exc}.", max_chars)
        return failed(call, arguments, error)
    return Prepared(call, spec, arguments, args, kwargs)


def _too_deep(call: ToolCallLike) -> str:
    return (
        f"the arguments for {call.name} are nested too deeply "
        f"(more than {MAX_ARGUMENT_DEPTH} levels)."
    )
