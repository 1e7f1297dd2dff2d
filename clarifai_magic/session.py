"""A notebook's session with Clarifai: credentials, client, conversations, tools, asking.

This is the one place that turns "ask this, in this conversation, with these options" into a turn:
it builds the messages from the stored conversation, commits the user message before the request
goes out, runs the turn through the engine and commits what came back. The ``%%clarifai`` magic
(and any other view) parses its input into an :class:`Ask` and calls :meth:`Session.ask`. No
IPython here: the user namespace and the notebook key are handed in, and the extension tells the
session which notebook cell is running (:meth:`Session.enter_cell`), so that a question asked
from a cell that asked before takes the place of that cell's earlier exchange.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .client import DEFAULT_MAX_RETRIES
from .config import NO_PAT_MESSAGE, Credentials, Redactor, Secret, find_credentials
from .failures import StoreError
from .models import DEFAULT_MODEL, capabilities, resolve_model
from .options import Limits, RequestOptions

if TYPE_CHECKING:
    import openai

    from .engine import ConfirmCallback, Transcript, TurnView
    from .history import Fitted
    from .store import Context, Conversation, Store
    from .tools import Tool, ToolRunner

MAIN_CHAT = "main"


class SessionError(Exception):
    """A problem the user must fix before the request can go out (one clear paragraph)."""


@dataclass
class Ask:
    """One question, as parsed from a cell or typed in a chat panel."""

    content: str | list[dict[str, Any]]
    request: RequestOptions = field(default_factory=RequestOptions)
    chat: str = MAIN_CHAT
    new_chat: bool = False
    use_history: bool = True
    tools: Mapping[str, Tool] = field(default_factory=dict)
    # As found when the question was read (interpolation needs the secrets), so that one
    # question reads the Clarifai CLI config once.
    found: Credentials | None = None


@dataclass(frozen=True)
class CellInfo:
    """The notebook cell running now (its id, from the front end) and which execution of it."""

    id: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Settings:
    default_model: str = ""
    max_history: int | None = None
    # None: the default budget (history.history_budget); 0: no limit.
    max_history_tokens: int | None = None
    # The user's name for this notebook, over whatever the front end says (or doesn't).
    notebook_name: str | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    max_tool_result_chars: int | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    max_display_chars: int | None = None  # None: the view's default
    # Environment variables whose values are secrets like the PAT: scrubbed wherever it is.
    secret_env_vars: tuple[str, ...] = ()


class Session:
    def __init__(
        self,
        notebook_key: Callable[[], str | None],
        settings: Settings | None = None,
        environ: Mapping[str, str] | None = None,
        store_path: str | None = None,
    ) -> None:
        self._find_notebook = notebook_key
        # The conversations of a notebook nothing identifies stay with this kernel.
        self.kernel_key = f"kernel:{uuid.uuid4().hex[:12]}"
        self._told_where = False
        self._notices: list[str] = []  # for the user, once each: see pop_store_notice
        # Per thread: a chat panel asks from a worker thread while the main one runs cells.
        self._running = threading.local()
        self._deleted: set[str] = set()  # deleted cells whose exchanges are still sent
        self._lock = threading.Lock()
        self.settings = settings or Settings()
        self.environ = environ
        self.login_pat: Secret | None = None
        self._store_path = store_path
        self._store: Store | None = None
        self._client: tuple[tuple[str, str], openai.OpenAI] | None = None
        self._runner: ToolRunner | None = None
        self._offline: Any = None  # an OfflineServer while `%clarifai offline` is on
        # Names of functions offered as tools to every question (`%clarifai tools add`).
        self.default_tools: list[str] = []

    # -- pieces, made on first use -------------------------------------------------------
    def find_credentials(self) -> Credentials | None:
        """The PAT and endpoint as configured (login, environment, CLI config), if any."""
        return find_credentials(self.environ, login_pat=self.login_pat)

    def credentials(self, found: Credentials | None = None) -> Credentials:
        """What to call the API with: the offline server, or ``found`` (else looked up)."""
        if self._offline is not None:
            return Credentials(Secret("offline"), "the offline server", self._offline.api_base)
        creds = found or self.find_credentials()
        if creds is None:
            raise SessionError(NO_PAT_MESSAGE)
        return creds

    def client(self, creds: Credentials) -> openai.OpenAI:
        from .client import make_client

        # A digest keys the cache, so the session's own state never spells out the PAT.
        key = (creds.base_url, hashlib.sha256(creds.pat.reveal().encode()).hexdigest())
        if self._client is None or self._client[0] != key:
            self._client = (key, make_client(creds))
        return self._client[1]

    @property
    def store(self) -> Store:
        if self._store is None:
            from .store import Store

            self._store = Store(self._store_path)
        return self._store

    @property
    def runner(self) -> ToolRunner:
        if self._runner is None:
            from .tools import ToolRunner

            self._runner = ToolRunner()
        return self._runner

    @property
    def offline(self) -> bool:
        return self._offline is not None

    def go_offline(self) -> str:
        """Answer from the built-in offline server (scripted replies); returns its address."""
        if self._offline is None:
            from .offline import OfflineServer

            self._offline = OfflineServer(record=False).start()
        return self._offline.api_base

    def go_online(self) -> None:
        if self._offline is not None:
            self._offline.stop()
            self._offline = None

    def pop_store_notice(self) -> str | None:
        """One-time notices: from the store (e.g. a corrupt database was moved aside), and
        where the conversations of a notebook nothing identifies are kept."""
        with self._lock:
            notices, self._notices = self._notices, []
        if self._store is not None:
            notices.append(self._store.pop_notice() or "")
        return "\n\n".join(n for n in notices if n) or None

    # -- which notebook, which cell -------------------------------------------------------
    def notebook_key(self) -> str:
        """The key the store files this notebook's conversations under.

        The user's name for it (``Settings.notebook_name``) if given, else what the front end
        says, else this kernel's own key: then the conversations last as long as the kernel, and
        the user is told once where they are and how to name the notebook.
        """
        name = (self.settings.notebook_name or "").strip()
        if name:
            return name
        found = self._find_notebook()
        if found:
            return found
        with self._lock:
            if not self._told_where:
                self._told_where = True
                self._notices.append(
                    "Nothing says which notebook this is (no JPY_SESSION_NAME, as when nbclient"
                    " or papermill runs it), so its conversations are kept for this kernel only,"
                    f" as {self.kernel_key}. To keep them across runs, name the notebook:"
                    ' %config ClarifaiMagics.notebook = "report"'
                )
        return self.kernel_key

    @property
    def cell(self) -> CellInfo | None:
        """The notebook cell this thread is running, if the front end named it."""
        cells = getattr(self._running, "cells", None)
        return cells[-1] if cells else None

    def enter_cell(self, cell_id: str | None, deleted: Sequence[str] = ()) -> None:
        """A cell starts (a new execution, even of the same cell); ``deleted``: ids of cells
        removed from the notebook since, whose exchanges are no longer sent."""
        if not hasattr(self._running, "cells"):
            self._running.cells = []
        # A stack: code in a cell may run a cell of its own (`run_cell`), which ends first.
        self._running.cells.append(CellInfo(cell_id) if cell_id else None)
        if deleted:
            with self._lock:
                self._deleted.update(d for d in deleted if isinstance(d, str) and d)

    def leave_cell(self) -> None:
        cells = getattr(self._running, "cells", None)
        if cells:
            cells.pop()

    def _hide_deleted_cells(self) -> None:
        with self._lock:
            deleted, self._deleted = sorted(self._deleted), set()
        try:
            self.store.hide_cells(self.notebook_key(), deleted)
        except BaseException:
            with self._lock:
                self._deleted.update(deleted)  # not lost: tried again with the next question
            raise

    def secrets(self, found: Credentials | None = None) -> list[Secret]:
        """The PAT (``found``, else looked up) and the values of ``secret_env_vars``."""
        env = os.environ if self.environ is None else self.environ
        secrets = [Secret(env.get(name, "")) for name in self.settings.secret_env_vars]
        if self.login_pat is not None:
            secrets.append(self.login_pat)
        found = found or self.find_credentials()
        if found is not None:
            secrets.append(found.pat)
        return secrets

    def redactor(self, found: Credentials | None = None) -> Redactor:
        """Scrubs :meth:`secrets` from untrusted text."""
        return Redactor(self.secrets(found))

    def offered_tools(self, names: str, namespace: Mapping[str, Any]) -> dict[str, Tool]:
        """The tools named in ``names`` (comma-separated) and the default ones, declared from
        the functions of that name in ``namespace``."""
        wanted = [n.strip() for n in names.split(",") if n.strip()] + self.default_tools
        if not wanted:
            return {}
        from .tools import ToolDeclarationError, as_tool

        tools: dict[str, Tool] = {}
        for name in dict.fromkeys(wanted):
            if name not in namespace:
                default = name in self.default_tools
                hint = f" (or `%clarifai tools remove {name}`)" if default else ""
                raise SessionError(
                    f"No function named {name!r} in the notebook: define it, then run again{hint}."
                )
            try:
                spec = as_tool(namespace[name])
            except ToolDeclarationError as exc:
                raise SessionError(str(exc)) from None
            tools[spec.name] = spec
        return tools

    def resolve_model(self, name: str | None) -> str:
        env = os.environ if self.environ is None else self.environ
        chosen = name or self.settings.default_model or env.get("CLARIFAI_MODEL") or DEFAULT_MODEL
        return resolve_model(chosen, self.settings.aliases)

    def conversation(self, name: str = MAIN_CHAT, *, create: bool = True) -> Conversation | None:
        if self._deleted:
            # A store that can't take it now is tried again with the next question.
            with contextlib.suppress(StoreError):
                self._hide_deleted_cells()
        return self.store.conversation(self.notebook_key(), name, create=create)

    def history_budget(self, model: str | None = None) -> int | None:
        """Tokens of history sent with a question to ``model`` (None: no limit)."""
        from .history import history_budget

        caps = capabilities(self.resolve_model(model))
        window = getattr(caps, "context_window", None)  # not in Clarifai's table (yet)
        return history_budget(self.settings.max_history_tokens, window)

    # -- asking ---------------------------------------------------------------------------
    def build_messages(
        self, ask: Ask, conv: Conversation | None, context: Context | None = None
    ) -> list[dict[str, Any]]:
        """The messages to send for ``ask``: system prompt, history that fits, the question."""
        return self._fit(ask, conv, context).messages

    def _fit(self, ask: Ask, conv: Conversation | None, context: Context | None) -> Fitted:
        from .history import fit

        messages: list[dict[str, Any]] = []
        system = ask.request.system
        if system is None and conv is not None:
            system = conv.system_prompt
        if system:
            messages.append({"role": "system", "content": system})
        if conv is not None:
            context = context or self.store.context(conv)
            messages.extend(m.message for m in context.messages)
        messages.append({"role": "user", "content": ask.content})
        return fit(
            messages,
            max_messages=self.settings.max_history,
            max_tokens=self.history_budget(ask.request.model),
        )

    def _trim_notice(self, fitted: Fitted, model: str | None) -> str | None:
        if not fitted.trimmed:
            return None
        budget, most = self.history_budget(model), self.settings.max_history
        limits = [f"history budget {budget:,} tokens"] if budget is not None else []
        settings = ["max_history_tokens"] if budget is not None else []
        if most is not None:
            limits.insert(0, f"at most {most} messages")
            settings.insert(0, "max_history")
        return (
            f"Sent the last {fitted.history_sent} of {fitted.history_total} messages"
            f" ({', '.join(limits)}; %config ClarifaiMagics.{' / '.join(settings)})."
        )

    def ask(
        self,
        ask: Ask,
        view_factory: Callable[[], TurnView],
        *,
        confirm: ConfirmCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Transcript:
        """Run one turn; raise :class:`SessionError` before anything is sent if it can't start."""
        model = self.resolve_model(ask.request.model)
        found = ask.found or self.find_credentials()
        creds = self.credentials(found)
        client = self.client(creds)
        # The real PAT is scrubbed even when the offline server answers.
        redactor = self.redactor(found)
        ask.content = _redact_content(ask.content, redactor)
        caps = capabilities(model)
        conv = context = None
        cell_id, run = (self.cell.id, self.cell.run) if self.cell else (None, None)
        notices: list[str] = []  # shown with the turn, as they arise
        if ask.use_history:
            conv = self.conversation(ask.chat)
            assert conv is not None
            if ask.new_chat:
                self.store.reset(conv)
            system = ask.request.system
            if system is not None and system != conv.system_prompt:
                self.store.set_system_prompt(conv, system)
            context = self.store.context(conv, cell=cell_id, run=run)
        fitted = self._fit(ask, conv, context)
        messages = fitted.messages
        notices.extend(filter(None, [self._trim_notice(fitted, ask.request.model)]))
        # The question is committed before the request goes out; its answer joins the same
        # exchange, so another kernel writing meanwhile can't come between them.
        exchange = None
        if conv is not None:
            exchange = self.store.append(conv, messages[-1:], model=model, cell=cell_id, run=run)

        saved: list[bool] = []  # one True per write that landed, one False if one failed

        def save(new: list[dict[str, Any]], partial: bool, usage: Any) -> None:
            if conv is not None:
                counts = (usage.prompt_tokens, usage.completion_tokens) if usage else None
                try:
                    # The first answer stored takes the place of the cell's earlier exchange.
                    self.store.append(
                        conv, new, exchange=exchange, partial=partial, model=model, usage=counts
                    )
                except BaseException:
                    saved.append(False)
                    raise
                saved.append(True)
                if context is not None and context.replaces and len(saved) == 1:
                    what = "exchange" if context.replaces == 1 else "exchanges"
                    notices.append(f"Replaced this cell's earlier {what} in {conv.name!r}.")

        from .engine import TurnOptions, run_turn

        options = TurnOptions(
            model=model,
            request=ask.request,
            tools=ask.tools,
            tool_streaming=caps.tool_streaming if caps else True,
            max_retries=self.settings.max_retries,
            max_tool_result_chars=self.settings.max_tool_result_chars,
            limits=self.settings.limits,
        )
        transcript = run_turn(
            client,
            messages,
            options,
            _WithNotices(view_factory(), notices),
            credentials=creds,
            runner=self.runner,
            confirm=confirm,
            on_messages=save,
            cancel=cancel,
            redactor=redactor,
        )
        if conv is not None and exchange is not None:
            nothing_back = transcript.partial and not any(saved)
            if nothing_back or False in saved:
                # No answer (or only part of one) reached the store: forget the question, or
                # re-running the cell would send it twice, the second time without its answer.
                with contextlib.suppress(Exception):
                    self.store.drop_exchange(conv, exchange)
        return transcript

    def close(self) -> None:
        self.go_online()
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        if self._store is not None:
            self._store.close()
            self._store = None


class _WithNotices:
    """A view that also shows the session's notices for this turn (history trimmed, a cell's
    earlier exchange replaced), added to the transcript as they arise."""

    def __init__(self, view: TurnView, notices: list[str]) -> None:
        self.view = view
        self.notices = notices

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        for notice in self.notices:
            if notice not in transcript.notices:
                transcript.notices.append(notice)
        self.view.show(transcript, final=final, force=force)


def _redact_content(content: Any, redactor: Redactor) -> Any:
    """A question with secrets masked in its text (an interpolated key, a pasted PAT)."""
    if not redactor:
        return content
    if isinstance(content, str):
        return redactor.redact(content)
    return [
        {**part, "text": redactor.redact(part["text"])}
        if part.get("type") == "text" and isinstance(part.get("text"), str)
        else part
        for part in content
    ]
