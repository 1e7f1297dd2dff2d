"""The ``%clarifai WORD`` line commands: models, aliases, tools, conversations, the panel,
explain; login, logout and offline come from :mod:`clarifai_magic.account`.

:meth:`LineCommands.table` lists them as :class:`~clarifai_magic.routing.Command` records (which
arguments fit each, its usage and help line); :func:`~clarifai_magic.routing.route` tells a
command from a one-line question. :class:`LineCommands` gets what the commands need explicitly:
the session, where output goes, how to change the aliases setting, and how to ask a question.
"""

from __future__ import annotations

import datetime
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.display import display

from .account import AccountCommands
from .models import check_alias_name, merge_model_list, short_path
from .output import Output
from .render import history_markdown
from .routing import (
    Command,
    name_then_options,
    no_args,
    one_name,
    one_of,
    options_only,
    split_words,
)
from .routing import route as route  # the magic's entry point, next to the commands it routes
from .session import MAIN_CHAT, Session, SessionError


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; a ``|`` inside a cell is escaped so it can't split the row."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join(
        "| " + " | ".join(str(cell).replace("|", "\\|") for cell in line) + " |" for line in lines
    )


def _subparser(name: str, description: str) -> MagicArgumentParser:
    return MagicArgumentParser(prog=f"%clarifai {name}", description=description, add_help=False)


class LineCommands:
    """The line commands of ``%clarifai``, over one session."""

    def __init__(
        self,
        session: Session,
        *,
        output: Output,
        namespace: Callable[[], dict[str, Any]],
        set_aliases: Callable[[dict[str, str]], None],
        ask: Callable[[str, str], None],
        shell: Any = None,
    ) -> None:
        self.session = session
        self.out = output
        self.namespace = namespace  # the user's variables, where tools are looked up
        self.set_aliases = set_aliases  # the aliases setting belongs to the magic's config
        self.ask = ask  # ask(options, prompt): a question, as the magic asks it
        self.shell = shell  # where IPython keeps the last error, for `explain`

    def _shell(self) -> Any:
        from IPython import get_ipython

        return self.shell or get_ipython()

    def table(self) -> dict[str, Command]:
        account = AccountCommands(self.session, output=self.out)
        tool_actions = ("add", "remove", "list", "show")
        commands = [
            Command(
                "login",
                one_of("--save"),
                account.login,
                "paste a PAT for this session; --save keeps it for new kernels",
                "[--save]",
                ("--save",),
            ),
            Command(
                "logout",
                one_of("--forget"),
                account.logout,
                "forget the PAT from login; --forget also the saved one",
                "[--forget]",
                ("--forget",),
            ),
            Command(
                "offline",
                one_of("on", "off", "auto"),
                account.offline,
                "scripted answers from the built-in server; no argument: say which is used",
                "[on|off|auto]",
                ("on", "off", "auto"),
            ),
            Command("models", no_args, self.cmd_models, "models and what they can do"),
            Command(
                "alias",
                lambda w: len(w) <= 2 or w[0] == "--remove",
                self.cmd_alias,
                "name a model (no arguments: list the aliases)",
                "NAME MODEL | --remove NAME",
                ("--remove",),
            ),
            Command(
                "tools",
                lambda w: not w or w[0] in tool_actions,
                self.cmd_tools,
                "tools offered to every cell",
                "add F G | remove F | list | show F",
                tool_actions,
            ),
            Command("history", one_name, self.cmd_history, "show a conversation", "[NAME]"),
            Command("reset", one_name, self.cmd_reset, "forget a conversation", "[NAME]"),
            Command("undo", one_name, self.cmd_undo, "drop the last exchange", "[NAME]"),
            Command("chats", no_args, self.cmd_chats, "this notebook's conversations"),
            Command(
                "fork",
                lambda w: 1 <= len(w) <= 5,
                self.cmd_fork,
                "copy a conversation",
                "NEW [--from NAME] [--notebook KEY]",
            ),
            Command("notebooks", no_args, self.cmd_notebooks, "every notebook with conversations"),
            Command("usage", no_args, self.cmd_usage, "tokens per conversation and model"),
            Command(
                "chat",
                name_then_options,
                self.cmd_chat,
                "a chat panel on a conversation",
                "[NAME] [-m MODEL] [--tools f,g]",
            ),
            Command(
                "export",
                options_only,
                self.cmd_export,
                "the conversation's next request as a program for another client",
                "--to openai-python|openai-node|vercel-ai|litellm|curl [--chat NAME] [-o FILE]",
            ),
            Command(
                "explain",
                options_only,
                self.cmd_explain,
                "why the last error happened, and a fix",
                "[-m MODEL] [--chat NAME] [--no-history]",
            ),
        ]
        return {command.name: command for command in commands}

    def _tools(self, names: str) -> dict[str, Any]:
        try:
            return self.session.offered_tools(names, self.namespace())
        except SessionError as exc:
            raise UsageError(str(exc)) from None

    def cmd_explain(self, rest: str) -> None:
        """[-m MODEL] [--chat NAME] [--no-history]: explain the last error, and how to fix it."""
        from .explain import NO_ERROR_MESSAGE, explain_prompt, last_error

        parser = _subparser("explain", "Explain the last error.")
        parser.add_argument("-m", "--model")
        parser.add_argument("--chat")
        parser.add_argument("--no-history", action="store_true")
        args = parser.parse_args(split_words(rest))
        error = last_error(self._shell())
        if error is None:
            self.out.text(NO_ERROR_MESSAGE)
            return
        # The code and traceback are sent as written: {braces} in them are not the user's.
        options = ["--no-interpolate"]
        if args.model:
            options += ["-m", args.model]
        if args.chat:
            options += ["--chat", args.chat]
        if args.no_history:
            options.append("--no-history")
        prompt = self.session.redactor().redact(explain_prompt(error))
        self.ask(shlex.join(options), prompt)

    def cmd_export(self, rest: str) -> None:
        """--to TARGET [--chat NAME] [-o FILE [--force]] [-m MODEL] [--tools f,g] [-t T]
        [--max-tokens N] [--ask TEXT]: the conversation's next request as a runnable program."""
        from .export import (
            DEFAULT_QUESTION,
            TARGETS,
            ExportError,
            ExportRequest,
            clean_messages,
            write_program,
        )
        from .export import export_program as make_program
        from .options import BOUNDS, OptionError
        from .safe_markdown import code_span, fenced

        parser = _subparser("export", "Export the conversation's next request as a program.")
        parser.add_argument("--to", required=True, choices=TARGETS)
        parser.add_argument("--chat", default=MAIN_CHAT)
        parser.add_argument("-o", "--output")
        parser.add_argument("--force", action="store_true")
        parser.add_argument("-m", "--model")
        parser.add_argument("--tools", default="")
        parser.add_argument("-t", "--temperature")
        parser.add_argument("--max-tokens")
        parser.add_argument("--ask", default=DEFAULT_QUESTION)
        parser.add_argument("--cell", action="store_true", help="a new cell below (Python)")
        args = parser.parse_args(split_words(rest))
        given = {"temperature": args.temperature, "max_tokens": args.max_tokens}
        try:
            bounded = {k: BOUNDS[k].check(k, v) for k, v in given.items() if v is not None}
        except OptionError as exc:
            raise UsageError(str(exc)) from None
        conv = self._existing(args.chat)
        stored = [m.message for m in self.session.store.context(conv).messages]
        if conv.system_prompt:
            stored.insert(0, {"role": "system", "content": conv.system_prompt})
        model = self.session.resolve_model(args.model) if args.model else None
        tools = [spec.schema() for spec in self._tools(args.tools).values()]
        redact = self.session.redactor().redact
        request = ExportRequest(
            model=model or conv.model or self.session.resolve_model(None),
            messages=clean_messages(stored, redact),
            tools=tools,  # the notebook's own functions: schemas from their signatures
            **bounded,
            question=redact(args.ask),
        )
        program = make_program(request, args.to, output=args.output)
        if args.cell:
            if program.lang != "python" or args.output:
                raise UsageError(
                    "--cell puts a Python program (openai-python, litellm) in a new cell below; "
                    "write the others to a file with -o FILE."
                )
            self._shell().set_next_input(program.code, replace=False)
        how = f"`{program.install}`, then " if program.install else ""
        if not args.output:
            run = program.run.replace("FILE", f"app{program.suffix}")
            large = f"{program.size_note()}\n\n" if program.size_note() else ""
            self.out.markdown(
                f"{large}The next request of {code_span(conv.name)} for **{program.target}** "
                f"(save it as `app{program.suffix}`; {how}`{run}` with `CLARIFAI_PAT` set; "
                "`-o FILE` writes it):\n\n" + fenced(program.code, program.lang)
            )
            return
        try:
            written = write_program(args.output, program, force=args.force)
        except ExportError as exc:
            raise UsageError(str(exc)) from None
        run = program.run.replace("FILE", shlex.quote(args.output))
        steps = f"{program.install}, then " if program.install else ""
        images = ""
        if written[1:]:
            images = f" and the images it reads, {', '.join(written[1:])}"
        self.out.text(
            f"Wrote {args.output}{images} ({program.target}). To run it: {steps}{run} "
            "with CLARIFAI_PAT set (and CLARIFAI_API_BASE for another endpoint)."
        )

    def cmd_models(self, rest: str) -> None:
        """List models (GET /models merged with the capability table)."""
        listed: list[str] = []
        note = ""
        try:
            creds = self.session.credentials()
            # Undocumented endpoint: ask once, briefly, and fall back to the table.
            client = self.session.client(creds).with_options(max_retries=0, timeout=15)
            listed = [m.id for m in client.models.list()]
        except SessionError:
            note = "No PAT set, so this is the built-in table only."
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            reason = f"HTTP {status}" if status else type(exc).__name__
            note = (
                f"The server did not list its models ({reason}), so this is the built-in "
                "capability table only. Any model URL still works with -m."
            )
        rows = []
        mark = {True: "✅", False: "—", None: "?"}
        for info in merge_model_list(listed, self.session.settings.aliases):
            caps = info.capabilities
            flags = (caps.image_input, caps.tools, caps.tool_streaming) if caps else (None,) * 3
            listed_mark = "✅" if info.listed else ""
            rows.append(
                [f"`{info.path}`", ", ".join(info.aliases), listed_mark, *map(mark.get, flags)]
            )
        header = ["model", "alias", "listed", "image", "tools", "tool streaming"]
        self.out.markdown((f"{note}\n\n" if note else "") + markdown_table(header, rows))

    def cmd_alias(self, rest: str) -> None:
        """NAME MODEL | --remove NAME | (no args: list aliases)."""
        parser = _subparser("alias", "Name a model.")
        parser.add_argument("--remove", action="store_true")
        parser.add_argument("name", nargs="?")
        parser.add_argument("model", nargs="?")
        args = parser.parse_args(split_words(rest))
        aliases = dict(self.session.settings.aliases)
        if args.name is None:
            listed = "\n".join(f"{k} -> {v}" for k, v in sorted(aliases.items()))
            self.out.text(listed or "No aliases yet.")
        elif args.remove:
            if aliases.pop(args.name, None) is None:
                raise UsageError(f"There is no alias {args.name!r}.")
            self.set_aliases(aliases)
            self.out.text(f"Removed alias {args.name}.")
        elif args.model is None:
            raise UsageError("Usage: %clarifai alias NAME MODEL")
        else:
            check_alias_name(args.name)
            target = self.session.resolve_model(args.model)
            self.set_aliases({**aliases, args.name: target})
            self.out.text(f"{args.name} -> {short_path(target)}")

    def cmd_tools(self, rest: str) -> None:
        """add F G | remove F | list | show F: tools offered to every cell."""
        action, _, names = rest.partition(" ")
        names_list = names.replace(",", " ").split()
        defaults = self.session.default_tools
        if action == "add":
            self._tools(",".join(names_list))  # declare-time errors show now
            defaults += [n for n in names_list if n not in defaults]
        elif action == "remove":
            defaults[:] = [n for n in defaults if n not in names_list]
        if action in ("add", "remove", "", "list"):
            self.out.text("Session tools: " + (", ".join(defaults) or "none"))
        elif action == "show":
            from .tools import describe_schema

            for name, spec in self._tools(",".join(names_list)).items():
                self.out.text(f"{name}:\n{describe_schema(spec)}")
        else:
            raise UsageError("Usage: %clarifai tools add F G | remove F | list | show F")

    def _chat_arg(self, rest: str, command: str) -> str:
        words = split_words(rest)
        if len(words) > 1:
            raise UsageError(f"Usage: %clarifai {command} [NAME]")
        return words[0] if words else MAIN_CHAT

    def _existing(self, name: str) -> Any:
        conv = self.session.conversation(name, create=False)
        if conv is None:
            raise UsageError(
                f"There is no conversation {name!r} in this notebook; see %clarifai chats."
            )
        return conv

    def cmd_history(self, rest: str) -> None:
        """[NAME]: show a conversation, tool calls included."""
        conv = self._existing(self._chat_arg(rest, "history"))
        messages = self.session.store.messages(conv)
        limit = self.session.settings.max_display_chars
        self.out.markdown(history_markdown(conv.name, messages, max_chars=limit))

    def cmd_reset(self, rest: str) -> None:
        """[NAME]: forget a conversation's messages."""
        name = self._chat_arg(rest, "reset")
        removed = self.session.store.reset(self._existing(name))
        self.out.text(f"Conversation {name!r} reset ({removed} messages removed).")

    def cmd_undo(self, rest: str) -> None:
        """[NAME]: drop the last exchange."""
        name = self._chat_arg(rest, "undo")
        removed = self.session.store.undo(self._existing(name))
        self.out.text(
            f"Removed the last exchange of {name!r} ({removed} messages)."
            if removed
            else "Nothing to undo."
        )

    def cmd_chats(self, rest: str) -> None:
        """List this notebook's conversations."""
        rows = [
            [chat.name, chat.message_count, _when(chat.last_used), (chat.system_prompt or "")[:60]]
            for chat in self.session.store.chats(self.session.notebook_key())
        ]
        header = ["conversation", "messages", "last used", "system prompt"]
        table = markdown_table(header, rows) if rows else "No conversations yet."
        budget = self.session.history_budget()
        sent = f"up to {budget:,} tokens" if budget else "all of it"
        self.out.markdown(
            f"{table}\n\nHistory sent with each question: {sent} "
            "(`%config ClarifaiMagics.max_history_tokens`)."
        )

    def cmd_fork(self, rest: str) -> None:
        """NEW [--from NAME] [--notebook KEY]: copy a conversation under a new name."""
        parser = _subparser("fork", "Copy a conversation.")
        parser.add_argument("new")
        parser.add_argument("--from", dest="source", default=MAIN_CHAT)
        parser.add_argument("--notebook", help="the key of another notebook to copy from")
        args = parser.parse_args(split_words(rest))
        here = self.session.notebook_key()
        source = self.session.store.conversation(args.notebook or here, args.source, create=False)
        if source is None:
            where = f"notebook {args.notebook!r}" if args.notebook else "this notebook"
            raise UsageError(f"There is no conversation {args.source!r} in {where}.")
        try:
            self.session.store.fork(source, args.new, notebook_key=here)
        except ValueError as exc:  # the name is taken or empty; the store says which
            raise UsageError(str(exc)) from None
        self.out.text(
            f"Copied {args.source!r} into {args.new!r}; use --chat {args.new} to continue it."
        )

    def cmd_notebooks(self, rest: str) -> None:
        """Every notebook with stored conversations (to find one that was renamed)."""
        here = self.session.notebook_key()
        rows = [
            [
                f"`{nb.notebook_key}`" + (" *(this one)*" if nb.notebook_key == here else ""),
                nb.conversation_count,
                nb.message_count,
                _when(nb.last_used),
            ]
            for nb in self.session.store.notebooks()
        ]
        if not rows:
            self.out.markdown("No conversations yet.")
            return
        header = ["notebook", "conversations", "messages", "last used"]
        hint = "To bring a conversation over: `%clarifai fork NEW --from NAME --notebook KEY`."
        self.out.markdown(markdown_table(header, rows) + "\n\n" + hint)

    def cmd_chat(self, rest: str) -> None:
        """[NAME] [-m MODEL] [--tools f,g]: a chat panel on a conversation of this notebook."""
        from .widget import ChatPanel

        parser = _subparser("chat", "Open a chat panel.")
        parser.add_argument("name", nargs="?", default=MAIN_CHAT)
        parser.add_argument("-m", "--model")
        parser.add_argument("--tools", default="")
        args = parser.parse_args(split_words(rest))
        if args.model:
            self.session.resolve_model(args.model)  # an unknown model fails here, not later
        self._tools(args.tools)  # likewise undefined tools
        panel = ChatPanel(
            self.session, chat=args.name, model=args.model, tools=lambda: self._tools(args.tools)
        )
        display(panel.widget)

    def cmd_usage(self, rest: str) -> None:
        """Tokens used per conversation and model."""
        rows = [
            [
                row.conversation,
                f"`{short_path(row.model or '?')}`",
                row.prompt_tokens or 0,
                row.completion_tokens or 0,
            ]
            for row in self.session.store.usage(self.session.notebook_key())
        ]
        header = ["conversation", "model", "tokens in", "tokens out"]
        self.out.markdown(markdown_table(header, rows) if rows else "No usage recorded yet.")


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")
