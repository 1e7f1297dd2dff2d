"""The chat panel: an ipywidgets view of the same engine and conversations as ``%%clarifai``.

``%clarifai chat [NAME]`` shows a panel bound to one of the notebook's conversations (``main`` by
default, shared with the cells). A question runs on a worker thread, so the notebook stays usable
and the Stop button is heard at once (a cancel flag the engine checks between chunks). Answers
are drawn into the panel's own Output widgets, never into "the current cell", under the same
frame budget and display size limit as the cell view. Everything shown that came from the user,
the model or a tool (live or stored) is escaped as in the cell, since the page renders it.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets

from .confirm import ButtonConfirm
from .models import model_id
from .options import RequestOptions
from .render import (
    BYTES_PER_SECOND,
    DEFAULT_MAX_DISPLAY_CHARS,
    MAX_UPDATES_PER_SECOND,
    FrameBudget,
    quote_untrusted,
    safe_markdown_within,
    transcript_markdown,
)
from .session import MAIN_CHAT, Ask, Session, SessionError
from .transcript import Transcript

USER_LABEL = "**You**\n\n"
MODEL_LABEL = "**Model**\n\n"


def _markdown_output(markdown: str) -> tuple[dict[str, Any], ...]:
    return ({"output_type": "display_data", "data": {"text/markdown": markdown}, "metadata": {}},)


class PanelView:
    """Draws a turn into one Output widget; safe to call from the worker thread."""

    def __init__(self, out: widgets.Output, *, max_chars: int = DEFAULT_MAX_DISPLAY_CHARS) -> None:
        self.out = out
        self.max_chars = max_chars
        self.budget = FrameBudget(1 / MAX_UPDATES_PER_SECOND, BYTES_PER_SECOND)

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        if not self.budget.allows(final=final, force=force):
            return
        markdown = MODEL_LABEL + transcript_markdown(
            transcript, final=final, max_chars=self.max_chars - len(MODEL_LABEL)
        )
        # Setting the trait sends one comm message; unlike `with out:` it is thread-safe.
        self.out.outputs = _markdown_output(markdown)
        self.budget.drew(len(markdown))


class ChatPanel:
    """A conversation as a chat: past messages, a prompt box, Send and Stop."""

    def __init__(
        self,
        session: Session,
        *,
        chat: str = MAIN_CHAT,
        model: str | None = None,
        tools: Callable[[], Mapping[str, Any]] = dict,
        max_display_chars: int | None = None,
    ) -> None:
        self.session = session
        self._max_display_chars = max_display_chars
        self.chat = chat
        self.model = model
        self.tools = tools
        self.cancel = threading.Event()
        self.worker: threading.Thread | None = None

        self.header = widgets.HTML()
        self.messages = widgets.VBox(layout=widgets.Layout(max_height="480px", overflow="auto"))
        self.prompt = widgets.Textarea(
            placeholder="Ask a question…", layout=widgets.Layout(width="100%", height="80px")
        )
        self.send_button = widgets.Button(
            description="Send", button_style="primary", icon="paper-plane"
        )
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.cancel.set())
        self.widget = widgets.VBox(
            [
                self.header,
                self.messages,
                self.prompt,
                widgets.HBox([self.send_button, self.stop_button]),
            ],
            layout=widgets.Layout(border="1px solid var(--jp-border-color2, #ccc)", padding="8px"),
        )
        self.widget.add_class("clarifai-chat")
        self._load_history()

    @property
    def max_display_chars(self) -> int:
        """The size limit of one message's display: given, else ``%config``'s, else the default."""
        configured = getattr(self.session.settings, "max_display_chars", None)
        return self._max_display_chars or configured or DEFAULT_MAX_DISPLAY_CHARS

    # -- showing the conversation ---------------------------------------------------------
    def _describe(self) -> str:
        try:
            model = self.session.resolve_model(self.model)
        except Exception as exc:  # an unknown default model: say so where the user looks
            return f"⚠️ {html.escape(str(exc))}"
        return (
            f"<b>Clarifai chat</b> · conversation <code>{html.escape(self.chat)}</code> · "
            f"model <code>{html.escape(model_id(model))}</code>"
        )

    def _add(self, child: widgets.Widget) -> None:
        self.messages.children = (*self.messages.children, child)

    def _bubble(self, role: str, markdown: str) -> widgets.Output:
        accent = "#1976d2" if role == "user" else "#9e9e9e"
        layout = widgets.Layout(padding="0 8px", margin="4px 0", border_left=f"3px solid {accent}")
        out = widgets.Output(layout=layout)
        out.add_class(f"clarifai-chat-{role}")
        out.outputs = _markdown_output((USER_LABEL if role == "user" else MODEL_LABEL) + markdown)
        self._add(out)
        return out

    def _load_history(self) -> None:
        self.header.value = self._describe()
        conv = self.session.conversation(self.chat, create=False)
        if conv is None:
            return
        for stored in self.session.store.messages(conv):
            role, content = stored.message.get("role"), stored.message.get("content")
            if role in ("user", "assistant") and isinstance(content, str) and content:
                self._bubble(role, safe_markdown_within(content, self.max_display_chars))

    # -- asking ---------------------------------------------------------------------------
    def send(self, text: str | None = None) -> threading.Thread | None:
        """Ask ``text`` (default: the prompt box) on a worker thread; returns the thread."""
        question = (self.prompt.value if text is None else text).strip()
        if not question or (self.worker is not None and self.worker.is_alive()):
            return None
        self.prompt.value = ""
        self._bubble("user", safe_markdown_within(question, self.max_display_chars))
        answer = self._bubble("assistant", "*Waiting for the model…*")
        self.cancel.clear()
        self.send_button.disabled, self.stop_button.disabled = True, False
        self.worker = threading.Thread(
            target=self._ask, args=(question, answer), name="clarifai-chat", daemon=True
        )
        self.worker.start()
        return self.worker

    def _ask(self, question: str, answer: widgets.Output) -> None:
        try:
            ask = Ask(
                content=question,
                request=RequestOptions(model=self.model),
                chat=self.chat,
                tools=self.tools(),
            )
            confirm = ButtonConfirm(place=self._add, cancel=self.cancel)

            def view() -> PanelView:
                return PanelView(answer, max_chars=self.max_display_chars)

            self.session.ask(ask, view, confirm=confirm, cancel=self.cancel)
        except SessionError as exc:
            answer.outputs = _markdown_output(MODEL_LABEL + quote_untrusted("⚠️ ", str(exc)))
        except Exception as exc:  # a worker thread has nobody to raise to: show it
            shown = f"{type(exc).__name__}: {exc}"
            answer.outputs = _markdown_output(MODEL_LABEL + quote_untrusted("⚠️ ", shown))
        finally:
            self.send_button.disabled, self.stop_button.disabled = False, True
