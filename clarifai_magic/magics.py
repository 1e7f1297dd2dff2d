"""The ``%%clarifai`` cell magic: options, prompt, dispatch to the session and a view.

Parsing and dispatch only: options are declared IPython's way (``magic_arguments``, so
``%%clarifai?`` shows them), a cell becomes an :class:`~clarifai_magic.session.Ask`, the session
runs it, and a view from :mod:`clarifai_magic.render` draws it. ``%clarifai WORD ...`` runs a
line command from :mod:`clarifai_magic.commands` when its arguments fit; otherwise the line is a
one-line question.
"""

from __future__ import annotations

import argparse
import builtins
import functools
import keyword
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Dict, Enum, Int, List, Unicode

from .failures import CellFailed, StoreError, StoreInterrupted
from .models import ModelNameError, capabilities, short_path
from .options import (
    BOUNDS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DISPLAY_CHARS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_MAX_SIDE,
    FORMAT_HINTS,
    Limits,
    OptionError,
    RequestOptions,
    model_options,
)
from .output import Output, cell_output
from .session import MAIN_CHAT, Ask, Session, SessionError, Settings

# Loaded with the first question or command, not by `%load_ext`, which should stay instant.
if TYPE_CHECKING:
    from .cell_view import CellView
    from .commands import Command
    from .render import TerminalView
    from .transcript import Transcript

FORMATS = ("markdown", "text", "code", "json")
# The names IPython keeps output history in: _, __, ___, _i, _ii, _iii, _5, _i5, _oh, _ih, _dh.
IPYTHON_NAMES = re.compile(r"^(_{1,3}|_i{1,3}|_i?\d+|_oh|_ih|_dh)$")
# A word of a one-line question's leading options: quoted, or up to the next space.
_WORD = re.compile(r"(\"[^\"]*\"|'[^']*'|\S+)\s*")


def _bounded(name: str) -> Callable[[str], Any]:
    """An argparse type checking :data:`~clarifai_magic.options.BOUNDS`, so a bad value fails
    with the option's name before any request."""

    def parse(text: str) -> Any:
        try:
            return BOUNDS[name].check(name, text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = BOUNDS[name].kind.__name__
    return parse


def split_leading_options(parser: argparse.ArgumentParser, line: str) -> tuple[str, str]:
    """The leading options of a one-line ``%clarifai`` and the prompt after them.

    The prompt may hold apostrophes and dashes, so only the leading options (and the values of
    those that take one, as the parser declares them) are taken; ``--`` ends them explicitly.
    """
    taken: list[str] = []
    rest = line.strip()
    while rest.startswith("-"):
        match = _WORD.match(rest)
        assert match is not None
        word, rest = match.group(1), rest[match.end() :]
        if word == "--":
            break
        taken.append(word)
        action = parser._option_string_actions.get(word)  # argparse's own table of options
        if action is not None and action.nargs != 0:
            value = _WORD.match(rest)
            if value is None:
                raise UsageError(f"Option {word} needs a value.")
            taken.append(value.group(1))
            rest = rest[value.end() :]
    return " ".join(taken), rest


def _check_out_name(name: str | None) -> None:
    """--out must name a plain variable the user can read back, not IPython's own."""
    if name is None:
        return
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"--out needs a variable name, like --out answer; {name!r} is not one.")
    if name in ("In", "Out", "get_ipython", "exit", "quit") or IPYTHON_NAMES.match(name):
        raise UsageError(f"--out {name} would overwrite IPython's own {name}: pick another name.")


@magics_class
class ClarifaiMagics(Magics):
    """``%%clarifai`` and ``%clarifai``; settings via ``%config ClarifaiMagics.<name> = ...``."""

    default_model = Unicode(
        "", help="Model used when a cell gives no -m (else CLARIFAI_MODEL, else gpt-4o)."
    ).tag(config=True)
    display_mode = Enum(
        ["auto", "cell", "terminal"],
        "auto",
        help="'cell': live Markdown display; 'terminal': plain text; 'auto': by frontend.",
    ).tag(config=True)
    max_history = Int(
        None, allow_none=True, help="Most history messages sent with a question."
    ).tag(config=True)
    max_history_tokens = Int(
        None,
        allow_none=True,
        help="Approximate token budget for history sent (default 8,000; 0: no limit).",
    ).tag(config=True)
    notebook = Unicode(
        None,
        allow_none=True,
        help="Name this notebook's conversations are kept under (for nbclient/papermill runs, "
        "or to share them).",
    ).tag(config=True)
    aliases = Dict(help="Model aliases, NAME -> model.").tag(config=True)
    confirm_with = Enum(
        ["auto", "buttons", "input"],
        "auto",
        help="How confirm=True tools ask: buttons where the frontend delivers clicks during a "
        "running cell (JupyterLab >= 4.4), else a text prompt.",
    ).tag(config=True)
    max_tool_result_chars = Int(
        None,
        allow_none=True,
        help="Tool results longer than this are cut, with a marker (default 20,000).",
    ).tag(config=True)
    image_max_side = Int(
        DEFAULT_MAX_SIDE, help="Images larger than this (pixels) are downscaled."
    ).tag(config=True)
    image_max_bytes = Int(
        DEFAULT_MAX_BYTES,
        min=1,
        help="Image files, bytes and data: URLs larger than this are refused before they are read.",
    ).tag(config=True)
    image_max_pixels = Int(
        DEFAULT_MAX_PIXELS,
        min=1,
        help="Images with more pixels than this are refused before they are decoded.",
    ).tag(config=True)
    max_answer_chars = Int(
        Limits.max_answer_chars,
        min=1,
        help="A response longer than this (text, reasoning and tool calls) is stopped there.",
    ).tag(config=True)
    max_tool_calls = Int(
        Limits.max_tool_calls,
        min=1,
        help="A response asking for more tool calls than this ends the turn, none run.",
    ).tag(config=True)
    max_partial_chars = Int(
        Limits.max_partial_chars,
        min=1,
        help="An unfinished answer is stored up to this many characters.",
    ).tag(config=True)
    max_display_chars = Int(
        DEFAULT_MAX_DISPLAY_CHARS,
        min=1000,
        help="One display's Markdown is clipped to this, with a note; the answer is kept whole.",
    ).tag(config=True)
    secret_env_vars = List(
        Unicode(),
        help="Environment variables whose values are secrets: scrubbed like the PAT from "
        "everything shown, stored or sent back to the model.",
    ).tag(config=True)

    def __init__(self, shell: Any, session: Session | None = None) -> None:
        super().__init__(shell)
        self.session = session or Session(notebook_key=self._notebook_key)
        self._sync_settings()
        self.out = Output(lambda: cell_output(self.shell, self.display_mode))
        self._page_script_for: str | None = None  # the front end that has it (see _view)

    @functools.cached_property
    def commands(self) -> dict[str, Command]:
        from .commands import Command, LineCommands, no_args

        line_commands = LineCommands(
            self.session,
            output=self.out,
            namespace=lambda: self.shell.user_ns,
            set_aliases=self._set_aliases,
            ask=self._ask_line,
            shell=self.shell,
        )
        help_command = Command("help", no_args, self.cmd_help, "options and commands")
        return {"help": help_command, **line_commands.table()}

    def _notebook_key(self) -> str | None:
        from .history import notebook_key

        return notebook_key(self.shell.user_ns, os.environ)

    def _set_aliases(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases
        self.session.settings.aliases = dict(aliases)

    def _sync_settings(self) -> None:
        settings: Settings = self.session.settings
        settings.default_model = self.default_model
        settings.max_history = self.max_history
        settings.max_history_tokens = self.max_history_tokens
        settings.notebook_name = self.notebook
        settings.aliases = dict(self.aliases)
        settings.max_tool_result_chars = self.max_tool_result_chars
        settings.limits = Limits(
            max_answer_chars=self.max_answer_chars,
            max_tool_calls=self.max_tool_calls,
            max_partial_chars=self.max_partial_chars,
        )
        settings.secret_env_vars = tuple(self.secret_env_vars)
        settings.max_display_chars = self.max_display_chars

    # -- the magic ------------------------------------------------------------------------
    @magic_arguments()
    @argument("-m", "--model", help="Model: Clarifai URL, USER/APP/models/MODEL, id or alias.")
    @argument("-s", "--system", help="System prompt (kept with the conversation).")
    @argument(
        "-t", "--temperature", type=_bounded("temperature"), help="Sampling temperature (0-2)."
    )
    @argument("--max-tokens", type=_bounded("max_tokens"), help="Upper limit on answer tokens.")
    @argument("-f", "--format", choices=FORMATS, default="markdown", help="How to show the answer.")
    @argument("--no-interpolate", action="store_true", help="Send {braces} as written.")
    @argument("--out", help="Store the answer (or parsed value) in this variable.")
    @argument("--tools", default="", help="Comma-separated functions the model may call.")
    @argument(
        "--max-rounds",
        type=_bounded("max_rounds"),
        default=DEFAULT_MAX_ROUNDS,
        help="Most rounds of tool calls in one answer.",
    )
    @argument("--chat", default=MAIN_CHAT, help="Conversation name (default: main).")
    @argument("--new", action="store_true", help="Start the conversation afresh.")
    @argument("--no-history", action="store_true", help="A one-off question, no conversation.")
    @argument("--image", action="append", default=[], help="Image to send (repeatable).")
    @argument("--schema", help="Pydantic model or dataclass the answer must follow.")
    @argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Another model option (top_p, seed, stop, reasoning_effort, ...); repeatable.",
    )
    @no_var_expand  # {braces} and $names are ours to fill (or not), never IPython's
    @line_cell_magic
    def clarifai(self, line: str, cell: str | None = None) -> None:
        """Ask a Clarifai-hosted model; in a cell, the body is the prompt.

        `%clarifai PROMPT` asks in one line (leading options allowed; `--` ends them), and
        `%clarifai help` lists the line commands.
        """
        from .commands import split_words

        self._sync_settings()
        try:
            if cell is None:
                from .commands import route

                routed = route(line, self.commands)
                if isinstance(routed, UsageError):
                    raise routed
                if routed is not None:
                    routed.run(line.strip()[len(routed.name) :].strip())
                    return
                options, prompt = split_leading_options(self.clarifai.parser, line)
            else:
                options, prompt = line, cell
            self._ask(self.clarifai.parser.parse_args(split_words(options)), prompt)
        except (SessionError, ModelNameError, StoreError, OptionError) as exc:
            raise CellFailed(str(exc)) from None
        except StoreInterrupted as exc:
            raise CellFailed(str(exc)) from None
        except KeyboardInterrupt:
            # Outside the stream (reading an image, say): the stream keeps its own partials.
            raise CellFailed("Interrupted.") from None
        finally:
            notice = self.session.pop_store_notice()
            if notice:
                self.out.warn(notice)

    def _ask_line(self, options: str, prompt: str) -> None:
        """Ask as ``%clarifai OPTIONS -- PROMPT`` would: for commands that compose a question."""
        from .commands import split_words

        self._ask(self.clarifai.parser.parse_args(split_words(options)), prompt)

    def _ask(self, args: Any, prompt: str) -> None:
        prompt = prompt.strip()
        if not prompt:
            raise UsageError(
                "The prompt is empty: write the question after %clarifai, or in the cell "
                "under %%clarifai. `%clarifai help` lists the options and commands."
            )
        _check_out_name(args.out)
        if not args.chat.strip():
            raise UsageError("--chat needs a name, e.g. --chat analysis.")
        found = self.session.find_credentials()
        if not args.no_interpolate:
            from .prompt import interpolate

            prompt = interpolate(prompt, self.shell.user_ns, secrets=self.session.secrets(found))
        schema = self._schema(args.schema) if args.schema else None
        response_format = fallback = None
        if schema is not None:
            from .schema import SchemaError
            from .structured import instruction_for, response_format_for

            try:
                response_format, fallback = response_format_for(schema), instruction_for(schema)
            except SchemaError as exc:
                raise UsageError(str(exc)) from None
        request = RequestOptions(
            model=args.model,
            system=args.system,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            max_rounds=args.max_rounds,
            response_format=response_format,
            response_format_fallback=fallback,
            extra=model_options(args.option),
            format_hint=FORMAT_HINTS.get(args.format) if schema is None else None,
        )
        ask = Ask(
            content=self._content(prompt, args.image, args.model),
            request=request,
            chat=args.chat,
            new_chat=args.new,
            use_history=not args.no_history,
            tools=self.session.offered_tools(args.tools, self.shell.user_ns),
            found=found,
        )
        fmt = "json" if schema is not None else args.format
        transcript = self.session.ask(ask, lambda: self._view(fmt), confirm=self._confirm)
        # The cell fails (so Run All and papermill stop) with one line under the answer,
        # which already holds the full explanation and whatever streamed.
        if transcript.status == "interrupted":
            raise CellFailed("Interrupted: the partial answer above is kept.")
        if transcript.status in ("error", "incomplete"):
            if not transcript.answer and not any(r.tools for r in transcript.rounds):
                raise CellFailed("No answer: the request failed (see above).")
            raise CellFailed("The answer above is incomplete: see the message at its end.")
        self._after(args, transcript, schema)

    def _content(self, prompt: str, images: list[str], model: str | None) -> Any:
        if not images:
            return prompt
        from .media import MediaError, image_part, user_content

        resolved = self.session.resolve_model(model)
        caps = capabilities(resolved)
        if caps is not None and not caps.image_input:
            self.out.warn(
                f"Warning: Clarifai lists {short_path(resolved)} as text-only, so it will probably "
                "ignore or reject the images. Pick a model with image input (see "
                "`%clarifai models`) if the answer needs them."
            )
        parts = []
        for name in images:
            source = self.shell.user_ns.get(name, name)
            try:
                parts.append(
                    image_part(
                        source,
                        max_side=self.image_max_side,
                        max_bytes=self.image_max_bytes,
                        max_pixels=self.image_max_pixels,
                    )
                )
            except MediaError as exc:
                raise SessionError(f"Could not send image {name!r}: {exc}") from None
        return user_content(prompt, parts)

    def _schema(self, name: str) -> type:
        # Built-ins too, so `--schema int` is told why int won't do rather than "not defined".
        schema = self.shell.user_ns.get(name, getattr(builtins, name, None))
        if not isinstance(schema, type):
            raise UsageError(
                f"--schema needs a pydantic model or dataclass defined in the notebook; "
                f"{name!r} is {'not defined' if schema is None else 'not a class'}."
            )
        return schema

    def _view(self, fmt: str) -> CellView | TerminalView:
        from .cell_view import CellView
        from .render import TerminalView

        if cell_output(self.shell, self.display_mode):
            # Copy buttons on answers' code blocks come from the page script, run once per front
            # end of this kernel: a reloaded page connects with a new session id and needs it
            # again. A terminal forced to "cell" has no page to run it in.
            if getattr(self.shell, "kernel", None) is not None:
                header = getattr(self.shell.display_pub, "parent_header", None) or {}
                front_end = str(header.get("session", ""))
                if front_end != self._page_script_for:
                    from .page_script import run_in_page

                    run_in_page()
                    self._page_script_for = front_end
            return CellView(fmt, max_chars=self.max_display_chars)
        return TerminalView()

    def _after(self, args: Any, transcript: Transcript, schema: type | None) -> None:
        answer = transcript.answer
        if not answer:
            return
        value: Any = answer
        if schema is not None or args.format == "json":
            from .structured import parse_json_answer, parse_structured

            parsed = parse_structured(answer, schema) if schema else parse_json_answer(answer)
            if parsed.errors:
                kept = f" {args.out!r} was not set." if args.out else ""
                raise CellFailed(
                    "The answer did not validate"
                    + (f" against {schema.__name__}" if schema else " as JSON")
                    + f"; the raw text is kept above.{kept} Fields that failed:\n"
                    + parsed.describe_errors()
                )
            value = parsed.value
        elif args.format == "code":
            from .prompt import extract_code

            value = extract_code(answer)
            if value is None:
                raise CellFailed(
                    "The answer has no code block and is not valid Python, so no cell was "
                    "added; the answer is kept above."
                )
            self.shell.set_next_input(value, replace=False)
        if args.out:
            self.shell.user_ns[args.out] = value

    def _confirm(self, tool: Any, arguments: dict[str, Any]) -> bool:
        from .confirm import ButtonConfirm, ask_with_input, buttons_can_work

        mode = self.confirm_with
        if mode == "auto":
            mode = "buttons" if buttons_can_work(self.shell) else "input"
        if mode == "buttons":
            return ButtonConfirm()(tool, arguments)
        return ask_with_input(tool, arguments)

    def cmd_help(self, rest: str) -> None:
        """Show the options and the line commands."""
        lines = [self.clarifai.__doc__ or "", "Commands:"]
        for name, command in self.commands.items():
            lines.append(f"  %clarifai {name:<9} {command.help}")
        lines.append("  %clarifai PROMPT    one-line question ('--' ends leading options;")
        lines.append(
            "                      end it with a space if it ends in '?', IPython's help mark)"
        )
        self.out.text("\n".join(lines))
