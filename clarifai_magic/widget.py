"""The chat panel: an ipywidgets view of the same engine and conversations as ``%%clarifai``.

``%clarifai chat [NAME]`` or ``clarifai_magic.Chat(...)`` shows a panel bound to one of the
notebook's conversations (``main`` by default, shared with the cells): a model picker, the
conversation's system prompt, a conversation picker with "New conversation", the messages, a
prompt box (Enter sends, Shift+Enter adds a line), Send and Stop. A question runs on a worker
thread, so the notebook stays usable and Stop is heard at once. Messages go to the panel's log
(:mod:`.chat_log`, one anywidget), answers append-only (:mod:`.panel_view`), never into "the
current cell", so callbacks are correct on whichever thread they run (a subshell, the worker).
Everything shown that came from the user, the model or a tool (live or stored) is escaped as in
the cell.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ipywidgets as widgets

from .chat_log import ChatLog
from .confirm import ButtonConfirm
from .failures import CellFailed
from .models import CAPABILITIES, OTHER_MODELS, ModelNameError, model_id, short_path
from .options import RequestOptions
from .page_script import SEND_MARK, run_in_page
from .panel_view import AppendView
from .render import DEFAULT_MAX_DISPLAY_CHARS, quote_untrusted, safe_markdown_within
from .safe_markdown import code_blocks
from .session import MAIN_CHAT, Ask, Session, SessionError
from .transcript import Transcript

USER_LABEL = "**You**\n\n"
MODEL_LABEL = "**Model**\n\n"
NEW_CHAT_PREFIX = "chat-"


class _PanelBox(widgets.VBox):
    """The panel's root widget; displayed, it brings the page script for Enter, Copy and Insert
    (run, then emptied: the saved notebook keeps the widget and no script)."""

    def _ipython_display_(self, **kwargs: Any) -> None:
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
        run_in_page()


class ChatPanel:
    """A conversation as a chat: pickers, past messages, a prompt box, Send and Stop."""

    def __init__(
        self,
        session: Session,
        *,
        chat: str = MAIN_CHAT,
        model: str | None = None,
        tools: Callable[[], Mapping[str, Any]] = dict,
        max_display_chars: int | None = None,
        list_models: bool = True,
    ) -> None:
        self.session = session
        self._max_display_chars = max_display_chars
        self.chat = chat
        self.model = model
        self.tools = tools
        self.cancel = threading.Event()
        self.worker: threading.Thread | None = None
        self._quiet = False  # True while the panel itself sets a picker
        self.views: list[AppendView] = []  # one per answer asked here (tests, benchmarks)
        self._lock = threading.Lock()  # one question at a time, whichever thread sends

        self.header = widgets.HTML()
        self.model_picker = widgets.Dropdown(description="Model", layout={"width": "auto"})
        self.chat_picker = widgets.Dropdown(description="Chat", layout={"width": "auto"})
        self.new_chat_button = widgets.Button(
            description="New conversation", icon="plus", layout={"width": "auto"}
        )
        self.system = widgets.Text(
            placeholder="System prompt (optional; kept with the conversation)",
            layout=widgets.Layout(width="100%"),
        )
        self.log = ChatLog()
        self.asks = widgets.VBox()  # Run/Skip for confirm=True tools, while a question runs
        self.prompt = widgets.Textarea(
            placeholder="Ask a question… (Enter sends, Shift+Enter adds a line)",
            layout=widgets.Layout(width="100%", height="80px"),
        )
        self.prompt.add_class("clarifai-chat-prompt")
        self.send_button = widgets.Button(
            description="Send", button_style="primary", icon="paper-plane"
        )
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.cancel.set())
        self.new_chat_button.on_click(lambda _: self.new_chat())
        self.prompt.observe(self._on_prompt, "value")
        self.widget = _PanelBox(
            [
                self.header,
                widgets.HBox([self.model_picker, self.chat_picker, self.new_chat_button]),
                self.system,
                self.log,
                self.asks,
                self.prompt,
                widgets.HBox([self.send_button, self.stop_button]),
            ],
            layout=widgets.Layout(border="1px solid var(--jp-border-color2, #ccc)", padding="8px"),
        )
        self.widget.add_class("clarifai-chat")
        self._set_models(())
        self._set_chats()
        self.model_picker.observe(self._on_model, "value")
        self.chat_picker.observe(self._on_chat, "value")
        self._load_history()
        self.models_listed: threading.Thread | None = None
        if list_models:
            self.models_listed = threading.Thread(
                target=self._list_models, name="clarifai-models", daemon=True
            )
            self.models_listed.start()

    @property
    def max_display_chars(self) -> int:
        """The size limit of one message's display: given, else ``%config``'s, else the default."""
        configured = getattr(self.session.settings, "max_display_chars", None)
        return self._max_display_chars or configured or DEFAULT_MAX_DISPLAY_CHARS

    # -- pickers --------------------------------------------------------------------------
    def _current_model(self) -> str | None:
        try:
            return short_path(self.session.resolve_model(self.model))
        except Exception:  # an unknown default model: the header says so
            return None

    def _set_models(self, listed: Iterable[str]) -> None:
        options: dict[str, str] = {}  # value -> label
        current = self._current_model()
        if self.model and self.model in self.session.settings.aliases:
            current = self.model
        for alias, target in sorted(self.session.settings.aliases.items()):
            options[alias] = f"{alias} ({model_id(target)})"
        for name in [*CAPABILITIES, *OTHER_MODELS, *listed]:
            path = short_path(name)
            options.setdefault(path, model_id(path))
        if current is not None:
            options.setdefault(current, model_id(current))
        pairs = sorted(((label, value) for value, label in options.items()), key=_label_key)
        self._quiet = True  # a new list resets the value: not the user's choice
        try:
            self.model_picker.options = pairs
            self.model_picker.value = current if current is not None else None
        finally:
            self._quiet = False

    def _list_models(self) -> None:
        """Add the models the account lists; any failure leaves the built-in list."""
        try:
            client = self.session.client(self.session.credentials())
            listed = [m.id for m in client.models.list() if isinstance(m.id, str)]
        except Exception:  # offline, no PAT, an old endpoint: the picker still has the table
            return
        self._set_models(listed)

    def _chat_names(self) -> list[str]:
        try:
            names = [c.name for c in self.session.store.chats(self.session.notebook_key())]
        except Exception:  # a store that can't answer now: the current one is enough
            names = []
        return sorted({*names, self.chat, MAIN_CHAT})

    def _set_chats(self) -> None:
        self._quiet = True
        try:
            self.chat_picker.options = self._chat_names()
            self.chat_picker.value = self.chat
        finally:
            self._quiet = False

    def _on_model(self, change: Mapping[str, Any]) -> None:
        if change["new"] and not self._quiet:
            self.model = change["new"]
            self.header.value = self._describe()

    def _on_chat(self, change: Mapping[str, Any]) -> None:
        if change["new"] and change["new"] != self.chat and not self._quiet:
            self.switch_chat(change["new"])

    def switch_chat(self, name: str) -> None:
        """Show conversation ``name`` (made on its first question)."""
        self.chat = name
        self._quiet = True
        try:
            if name not in self.chat_picker.options:
                self.chat_picker.options = [*self.chat_picker.options, name]
            self.chat_picker.value = name
        finally:
            self._quiet = False
        self.log.reset()
        self._load_history()

    def new_chat(self) -> str:
        """Start a new conversation named ``chat-N``; returns its name."""
        taken = set(self._chat_names())
        number = 1
        while f"{NEW_CHAT_PREFIX}{number}" in taken:
            number += 1
        name = f"{NEW_CHAT_PREFIX}{number}"
        self.switch_chat(name)
        return name

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

    def _bubble(self, role: str, markdown: str) -> int:
        if role == "user":
            markdown = USER_LABEL + _hard_breaks(markdown)
        elif role == "assistant":
            markdown = MODEL_LABEL + markdown
        return self.log.add(role, markdown)

    def _ask_here(self, box: widgets.Widget) -> None:
        self.asks.children = (*self.asks.children, box)

    def _load_history(self) -> None:
        self.header.value = self._describe()
        try:
            conv = self.session.conversation(self.chat, create=False)
            stored = self.session.store.messages(conv) if conv is not None else []
        except Exception as exc:  # a store that can't answer: say so in the panel
            self._bubble("error", quote_untrusted("⚠️ ", str(exc)))
            return
        self.system.value = (conv.system_prompt or "") if conv is not None else ""
        for item in stored:
            role, content = item.message.get("role"), item.message.get("content")
            if role in ("user", "assistant") and isinstance(content, str) and content:
                self._bubble(role, safe_markdown_within(content, self.max_display_chars))

    # -- asking ---------------------------------------------------------------------------
    def _on_prompt(self, change: Mapping[str, Any]) -> None:
        value = change["new"]
        if isinstance(value, str) and SEND_MARK in value:  # Enter, from the page script
            question = value.replace(SEND_MARK, "")
            if self.send(question) is None:
                self.prompt.value = question  # busy or empty: keep what was typed

    def send(self, text: str | None = None) -> threading.Thread | None:
        """Ask ``text`` (default: the prompt box) on a worker thread; returns the thread."""
        question = (self.prompt.value if text is None else text).replace(SEND_MARK, "").strip()
        with self._lock:
            if not question or (self.worker is not None and self.worker.is_alive()):
                return None
            self.prompt.value = ""
            self._bubble("user", safe_markdown_within(question, self.max_display_chars))
            view = AppendView(self.log, label=MODEL_LABEL, max_chars=self.max_display_chars)
            self.views.append(view)
            self.cancel.clear()
            self.send_button.disabled, self.stop_button.disabled = True, False
            self.worker = threading.Thread(
                target=self._ask, args=(question, view), name="clarifai-chat", daemon=True
            )
            self.worker.start()
            return self.worker

    def _system_prompt(self) -> str | None:
        """The field's prompt; ``None`` leaves the conversation's as it is."""
        value = self.system.value.strip()
        return value or None

    def _ask(self, question: str, view: AppendView) -> None:
        transcript: Transcript | None = None
        try:
            ask = Ask(
                content=question,
                request=RequestOptions(model=self.model, system=self._system_prompt()),
                chat=self.chat,
                tools=self.tools(),
            )
            confirm = ButtonConfirm(place=self._ask_here, cancel=self.cancel)
            transcript = self.session.ask(ask, lambda: view, confirm=confirm, cancel=self.cancel)
        except Exception as exc:  # a worker thread has nobody to raise to: show it
            shown = str(exc) if isinstance(exc, SessionError) else f"{type(exc).__name__}: {exc}"
            self.log.whole(view.entry, quote_untrusted("⚠️ ", shown), kind="error")
        finally:
            self.send_button.disabled, self.stop_button.disabled = False, True
            asked, self.asks.children = self.asks.children, ()
            for box in asked:  # answered: the tool's block in the answer says what ran
                for part in (*box.children, box):
                    part.close()
        if transcript is not None:
            blocks = code_blocks(transcript.answer)
            if blocks:
                self.log.code(view.entry, blocks)
        if self.chat not in self.chat_picker.options:
            self._set_chats()


def _hard_breaks(markdown: str) -> str:
    """People's line breaks kept (Markdown joins lines): a hard break at each, outside code."""
    lines = markdown.split("\n")
    fence = False
    for i, line in enumerate(lines[:-1]):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        elif not fence and line.strip() and lines[i + 1].strip():
            lines[i] = line + "  "
    return "\n".join(lines)


def _label_key(pair: tuple[str, str]) -> str:
    return pair[0].lower()


class Chat:
    """``clarifai_magic.Chat(model=..., tools=[f, g], chat="name")``: a chat panel, shown as a
    cell's last expression (or with ``display()``)."""

    def __init__(
        self,
        model: str | None = None,
        *,
        tools: Iterable[Callable[..., Any]] = (),
        chat: str = MAIN_CHAT,
        system: str | None = None,
    ) -> None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise RuntimeError("clarifai_magic.Chat needs IPython or Jupyter.")
        if getattr(shell, "_clarifai_magics", None) is None:
            shell.extension_manager.load_extension("clarifai_magic")
        session: Session = shell._clarifai_magics.session
        functions = {f.__name__: f for f in tools}
        try:
            if model:
                session.resolve_model(model)  # an unknown model fails here, not at a question
            # The notebook's names too: `%clarifai tools add` defaults are looked up there.
            offered = session.offered_tools(",".join(functions), {**shell.user_ns, **functions})
        except (ModelNameError, SessionError) as exc:
            raise CellFailed(str(exc)) from None
        self.panel = ChatPanel(session, chat=chat, model=model, tools=lambda: offered)
        if system:
            self.panel.system.value = system

    def _ipython_display_(self, **kwargs: Any) -> None:
        self.panel.widget._ipython_display_()
