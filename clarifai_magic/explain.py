"""``%clarifai explain``: the notebook's last error, read from IPython, and the question about it.

IPython keeps the last exception a cell raised in ``sys.last_type``, ``sys.last_value`` and
``sys.last_traceback`` (and ``sys.last_exc`` on Python 3.12+), and maps each cell's compiled
file name to its execution count (``shell.compile.format_code_name``), which finds the failing
cell's code in the input history. :func:`last_error` reads them; :func:`explain_prompt`, which
is pure, turns the result into the question. A traceback is untrusted and can be long (a
recursion, a huge message): colour codes are stripped and every part is bounded.
"""

from __future__ import annotations

import re
import sys
import traceback
from dataclasses import dataclass
from typing import Any

MAX_TRACEBACK_CHARS = 8_000  # the end of a traceback says the most: its head is cut
MAX_CODE_CHARS = 8_000
MAX_MESSAGE_CHARS = 2_000
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")
_CELL_LABEL = re.compile(r"In\[(\d+)\]")

NO_ERROR_MESSAGE = "No error to explain yet: `%clarifai explain` explains the last failed cell."


@dataclass(frozen=True)
class LastError:
    """The last exception a cell raised, as text ready for a question."""

    kind: str  # the exception's class name, e.g. "ZeroDivisionError"
    message: str
    traceback: str
    cell: int | None  # the failing cell's execution count, when it is known
    code: str | None  # that cell's code


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (IPython colours its tracebacks)."""
    return _ANSI.sub("", text)


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit:,} earlier characters cut ...]\n" + text[-limit:]


def _middle_cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut:,} characters cut ...]\n{text[-half:]}"


def last_error(shell: Any) -> LastError | None:
    """The last error IPython recorded in ``shell``'s process, or None if there is none."""
    value = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if not isinstance(value, BaseException):
        return None
    tb = getattr(sys, "last_traceback", None) or value.__traceback__
    cell = _failing_cell(shell, value, tb)
    return LastError(
        kind=type(value).__name__,
        message=_middle_cut(strip_ansi(_message(value)), MAX_MESSAGE_CHARS),
        traceback=_tail(strip_ansi(_format(shell, value, tb)), MAX_TRACEBACK_CHARS),
        cell=cell,
        code=_code(shell, cell),
    )


def _message(value: BaseException) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ in user code must not break the explanation
        return repr(type(value))


def _format(shell: Any, value: BaseException, tb: Any) -> str:
    """The traceback as IPython shows it (cell labels, context lines), else as Python does."""
    render = getattr(value, "_render_traceback_", None)
    try:
        if callable(render):  # an exception that shows itself (a failed %clarifai cell)
            return "\n".join(render())
        if not isinstance(value, SyntaxError):
            formatter = shell.InteractiveTB
            return formatter.stb2text(formatter.structured_traceback(type(value), value, tb))
    except Exception:  # IPython's formatter is best effort here; Python's always works
        pass
    return "".join(traceback.format_exception(type(value), value, tb))


def _failing_cell(shell: Any, value: BaseException, tb: Any) -> int | None:
    """The execution count of the cell that was run: the outermost cell frame of the
    traceback (a function defined in another cell may be where it was raised)."""
    names = [value.filename] if isinstance(value, SyntaxError) and value.filename else []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    compiler = getattr(shell, "compile", None)
    for name in names:
        try:
            label = compiler.format_code_name(name) if compiler is not None else None
        except Exception:
            label = None
        match = _CELL_LABEL.fullmatch(label[1]) if label else None
        if match:
            return int(match.group(1))
    return None


def _code(shell: Any, cell: int | None) -> str | None:
    if cell is None:
        return None
    # The raw input (with its %magics as typed) reads better than IPython's transformed `In`.
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    if not history:
        history = shell.user_ns.get("In") or []
    if not 0 < cell < len(history):
        return None
    return _middle_cut(str(history[cell]), MAX_CODE_CHARS)


def _fenced(text: str, info: str = "") -> str:
    """``text`` in a code fence longer than any backtick run inside it, so it can't close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def explain_prompt(error: LastError) -> str:
    """The question asking the model to explain ``error`` and fix the cell."""
    where = f"cell In[{error.cell}]" if error.cell is not None else "a cell"
    parts = [
        f"Running {where} of my Jupyter notebook raised {error.kind}. Explain briefly what went "
        "wrong and why, then show how to fix it, with the corrected code in one Python block.",
    ]
    if error.code is not None:
        parts.append("The cell:\n" + _fenced(error.code, "python"))
    parts.append(f"The error: {error.kind}: {error.message}" if error.message else "")
    parts.append("The traceback:\n" + _fenced(error.traceback))
    return "\n\n".join(p for p in parts if p)
