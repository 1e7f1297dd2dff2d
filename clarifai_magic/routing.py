"""Which ``%clarifai`` line is a command: the :class:`Command` record and :func:`route`.

A one-line question may start with a command word ("%clarifai history of Rome"), and a slip
(``%clarifai histroy``, ``tools frob``, ``models --help``) must never become a question sent to
the model and paid for. :func:`route` decides, without running anything: a command to run, a
usage error naming the command meant, or a question. No session, no output: pure, apart from
IPython's ``UsageError`` type, which is how the magic reports a slip in one line.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from IPython.core.error import UsageError


@dataclass(frozen=True)
class Command:
    name: str
    fits: Callable[[list[str]], bool]  # do these words make sense as this command's arguments?
    run: Callable[[str], None]  # takes the rest of the line
    summary: str  # what it does, for `%clarifai help`
    args: str = ""  # its arguments, as in a usage line: "[NAME]"
    choices: tuple[str, ...] = ()  # the words its first argument may be, for "did you mean"

    @property
    def usage(self) -> str:
        return f"%clarifai {self.name} {self.args}".rstrip()

    @property
    def help(self) -> str:
        """One line for `%clarifai help`: the arguments, then what it does."""
        return f"{self.args}: {self.summary}" if self.args else self.summary


# A one-word line is a slip for a command when it is at least this close to its name
# (difflib's ratio): `histroy`, `modles`, `hlep` are; `hello` (help) and `test` (reset) aren't.
CLOSE_TO_A_COMMAND = 0.75
_SHOWN_LINE_CHARS = 80


def _reads_like_a_question(args: list[str]) -> bool:
    """Several words, not options: "history of Rome", "chat about the weather"."""
    return len(args) >= 2 and not args[0].startswith("-")


def route(line: str, commands: Mapping[str, Command]) -> Command | UsageError | None:
    """What ``%clarifai LINE`` is: a command to run, a slip to report, or None for a question.

    A command word with arguments that fit it runs; one with several words after it that
    don't is a question ("history of Rome"). A single word close to a command name, or a
    command word followed by one word or an option that doesn't fit, is a slip: a usage error
    naming the command meant, never a question sent (and paid for). `%clarifai -- LINE` is
    always a question.
    """
    words = line.split()
    if not words or words[0].startswith("-"):
        return None
    word, args = words[0], words[1:]
    command = commands.get(word)
    if command is not None and command.fits(args):
        return command
    if _reads_like_a_question(args):
        return None
    if command is None:
        close = difflib.get_close_matches(word.lower(), list(commands), 1, CLOSE_TO_A_COMMAND)
        if not close:
            return None
        command = commands[close[0]]
        suggestion = command.usage
    else:
        meant = difflib.get_close_matches(args[0], command.choices, 1, 0.6) if args else []
        suggestion = f"%clarifai {word} {meant[0]}" if meant else command.usage
    shown = " ".join(words)
    if len(shown) > _SHOWN_LINE_CHARS:
        shown = shown[:_SHOWN_LINE_CHARS] + "…"
    also = f", usage `{command.usage}`" if suggestion != command.usage else ""
    return UsageError(
        f"`%clarifai {shown}` is not a command. Did you mean `{suggestion}` "
        f"({command.summary}{also})? To ask it as a question, write `%clarifai -- {shown}`; "
        "`%clarifai help` lists the commands."
    )


def split_words(line: str) -> list[str]:
    """Shell-like words with their quotes removed (IPython's ``parse_argstring`` keeps them);
    a quoting mistake is a usage error, not a crash."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"Could not read the options ({exc}). Check the quotes.") from None


def no_args(words: list[str]) -> bool:
    return not words


def one_name(words: list[str]) -> bool:
    return len(words) <= 1


def name_then_options(words: list[str]) -> bool:
    # `chat`, `chat NAME`, `chat -m X`, `chat NAME --tools f`; not `chat about the weather`.
    return len(words) <= 1 or any(w.startswith("-") for w in words[:2])


def options_only(words: list[str]) -> bool:
    # `explain`, `explain -m gpt-4o`; not `explain X`, which may be a question.
    return not words or words[0].startswith("-")


def one_of(*choices: str) -> Callable[[list[str]], bool]:
    def fits(words: list[str]) -> bool:
        return not words or (len(words) == 1 and words[0] in choices)

    return fits
