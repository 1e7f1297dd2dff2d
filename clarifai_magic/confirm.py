"""Asking before a ``confirm=True`` tool runs: buttons in a notebook, ``input()`` elsewhere.

A button click reaches the kernel while the cell is still running only when the frontend sends
widget messages on a kernel subshell (ipykernel >= 7 with JupyterLab >= 4.4 / Notebook 7, whose
default ``commsOverSubshells`` does so). Elsewhere (VS Code, older frontends) the click would wait
behind the running cell, so the text prompt is used instead. The wait for a click is bounded, and
the stop button ends it.

The arguments come from the model, so the question shows them as JSON with every control, bidi,
zero-width and line-separator character written as an escape (``\u202e``), at most
:data:`MAX_SHOWN_CHARS` characters of each and :data:`MAX_SHOWN_ARGS` of them, saying how much
was left out; the button label is HTML-escaped as well.
"""

from __future__ import annotations

import html
import json
import threading
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

BUTTON_TIMEOUT = 300.0
MAX_SHOWN_CHARS = 1000  # of each argument's JSON in the question
MAX_SHOWN_ARGS = 20
# Control, format (bidi overrides, zero-width, tags), line and paragraph separator characters.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _visible(text: str) -> str:
    """``text`` with every control, format (bidi, zero-width) and line-separator character escaped.

    A model's arguments could otherwise reorder or hide what the prompt shows (U+202E flips the
    rest of the line), so the user would approve something other than what runs.
    """
    out = []
    for char in text:
        if char in "\n\t\r":
            out.append(repr(char)[1:-1])
        elif unicodedata.category(char) in _HIDDEN:
            code = ord(char)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def _bounded(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, made visible, saying how many more were cut.

    The user is told that something is hidden, and can refuse what they cannot read.
    """
    shown = _visible(text[:limit])
    if len(text) <= limit:
        return shown
    return f"{shown}… ({len(text) - limit:,} more characters not shown)"


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (ValueError, TypeError, RecursionError):  # a cycle, or nested beyond what json walks
        return "(cannot be shown)"
    return _bounded(text, MAX_SHOWN_CHARS)


def _question(tool: Any, arguments: Mapping[str, Any]) -> str:
    items = list(arguments.items())
    shown = ", ".join(f"{_bounded(str(k), 100)}={_shown(v)}" for k, v in items[:MAX_SHOWN_ARGS])
    if len(items) > MAX_SHOWN_ARGS:
        shown += f", … ({len(items) - MAX_SHOWN_ARGS:,} more arguments not shown)"
    return f"Run {_bounded(tool.name, 100)}({shown})?"


def ask_with_input(tool: Any, arguments: dict[str, Any]) -> bool:
    """A y/N prompt on stdin (a text box in a notebook)."""
    try:
        answer = input(_question(tool, arguments) + " [y/N] ")
    except (EOFError, RuntimeError):  # no stdin: a script, or a frontend without input support
        return False
    return answer.strip().lower() in ("y", "yes")


def buttons_can_work(shell: Any) -> bool:
    """Whether a widget click can arrive while the cell runs (see the module docstring)."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None or "__vsc_ipynb_file__" in shell.user_ns:
        return False
    return bool(getattr(kernel, "_supports_kernel_subshells", False))


class ButtonConfirm:
    """Shows [Run] [Skip] under the question and waits for a click.

    ``place`` puts the buttons on screen: by default they are displayed in the running cell;
    the chat panel passes its own, and waits on its worker thread while the notebook is idle.
    ``cancel`` (the panel's Stop) ends the wait as a refusal.
    """

    def __init__(
        self,
        timeout: float = BUTTON_TIMEOUT,
        place: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.timeout = timeout
        self.place = place
        self.cancel = cancel

    def __call__(self, tool: Any, arguments: dict[str, Any]) -> bool:
        import ipywidgets as widgets
        from IPython.display import display

        decided = threading.Event()
        choice: list[bool] = []
        label = widgets.HTML(f"🔧 {_escape(_question(tool, arguments))}")
        run = widgets.Button(description="Run", button_style="success", icon="play")
        skip = widgets.Button(description="Skip", icon="times")

        def pick(value: bool) -> Callable[[Any], None]:
            def handler(_button: Any) -> None:
                if not decided.is_set():
                    choice.append(value)
                    decided.set()

            return handler

        run.on_click(pick(True))
        skip.on_click(pick(False))
        box = widgets.HBox([label, run, skip])
        (self.place or display)(box)
        _let_clicks_use_their_subshell(run, skip)
        try:
            # Short waits keep the main thread responsive to the stop button.
            waited = 0.0
            while not decided.wait(0.1):
                waited += 0.1
                if waited >= self.timeout or (self.cancel is not None and self.cancel.is_set()):
                    break
        finally:
            run.disabled = skip.disabled = True
        approved = bool(choice and choice[0])
        if not choice:
            verdict = (
                f"No answer within {self.timeout:.0f} s, so it was skipped. If the buttons don't "
                "respond in this frontend, use `%config ClarifaiMagics.confirm_with = 'input'`."
            )
        else:
            verdict = "Approved." if approved else "Skipped."
        label.value = f"🔧 {_escape(_question(tool, arguments))} <b>{verdict}</b>"
        box.children = (label,)
        run.close()
        skip.close()
        return approved


def _let_clicks_use_their_subshell(*buttons: Any) -> None:
    """Undo ipykernel 7.4's pinning of a comm's replies to the subshell that last published.

    ipykernel 7.4 remembers the subshell a comm last sent from (here: the main shell, busy with
    this very cell) and routes frontend messages for it there, even when JupyterLab sent the
    click on a subshell of its own. Forgetting that memory lets the click take the subshell the
    frontend asked for. Older ipykernels have no such attribute, and nothing changes.
    """
    for button in buttons:
        comm = getattr(button, "comm", None)
        lock = getattr(comm, "_reply_subshell_lock", None)
        if lock is None:
            continue
        with lock:
            comm.__dict__.pop("_reply_subshell_id", None)


def _escape(text: str) -> str:
    return html.escape(text)
