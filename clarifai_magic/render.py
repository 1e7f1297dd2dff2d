"""A turn as Markdown (its rounds, reasoning, tool calls and status), and the terminal view.

Views are drawn from the engine's :class:`~clarifai_magic.engine.Transcript` under a frame budget:
``show()`` is called for every chunk, but a view draws only when its budget allows, plus once
unconditionally at the end so that a saved notebook holds the whole final answer. The notebook
cell's view, which sends each streamed byte about once, is :mod:`clarifai_magic.cell_view`.

Model text, reasoning, tool calls and results and server messages are untrusted: JupyterLab renders
the Markdown of an output the user ran (or a saved notebook whose signature holds) without
sanitising it, so raw HTML in it would run. Every such piece goes through :func:`safe_markdown`.
"""

from __future__ import annotations

import html
import json
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from .models import model_id
from .options import DEFAULT_MAX_DISPLAY_CHARS  # noqa: F401  (widget.py imports it from here)
from .safe_markdown import (  # noqa: F401  (safe_markdown_within, clip_plain: imported from here)
    TextBudget,
    clip_plain,
    code_span,
    escape_inline,
    fenced,
    fit_markdown,
    one_line,
    quote_untrusted,
    quoted,
    safe_markdown,
    safe_markdown_within,
)
from .transcript import Round, ToolActivity, Transcript

MAX_UPDATES_PER_SECOND = 20
TERMINAL_INTERVAL = 0.03
PREVIEW_CHARS = 600
# Past this, tool arguments are shown as sent rather than parsed and pretty-printed on every frame.
PARSE_ARGUMENTS_CHARS = 20_000
SHOWN_ARGUMENTS_CHARS = 4_000
SHOWN_RESULT_CHARS = 2_000
# After a round's tool calls: a blank line, so the answer below doesn't butt against them.
TOOLS_SPACER = "<br>"
WAITING = "*Waiting for the model…*"
THINKING_STYLE = "color:#888888"  # reasoning in grey: quoted text is not muted in JupyterLab


class FrameBudget:
    """Says whether enough time has passed since the last draw to draw again."""

    def __init__(self, min_interval: float) -> None:
        self.min_interval = min_interval
        self.next_at = 0.0

    def allows(self, *, final: bool = False, force: bool = False) -> bool:
        """Draw now? Always for the final frame and a forced one, else when the time has come."""
        return final or force or time.monotonic() >= self.next_at

    def drew(self) -> None:
        self.next_at = time.monotonic() + self.min_interval


# -- a turn as Markdown ---------------------------------------------------------------------------
def footer(transcript: Transcript) -> str:
    usage = transcript.usage
    parts = [model_id(transcript.model)]
    if usage.prompt_tokens is not None or usage.completion_tokens is not None:
        parts.append(f"{usage.prompt_tokens or 0} in / {usage.completion_tokens or 0} out tokens")
    else:
        parts.append("token usage not reported")
    elapsed = transcript.elapsed
    parts.append(f"{elapsed:.1f} s")
    if usage.completion_tokens and elapsed > 0:
        parts.append(f"{usage.completion_tokens / elapsed:.0f} tok/s")
    if len(transcript.rounds) > 1:
        parts.append(f"{len(transcript.rounds)} rounds")
    return " · ".join(parts)


def _parsed(text: str) -> Any:
    """JSON ``text`` as a value, or None (too long to parse on every frame, or not JSON)."""
    if len(text) > PARSE_ARGUMENTS_CHARS:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: hostile nesting
        return None


def _fields_preview(value: Any, raw: str) -> str:
    """A JSON value as ``key=value, ...`` (an object) or compact JSON; ``raw`` if it can't be."""
    try:
        if isinstance(value, dict):
            return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in value.items())
        return json.dumps(value, ensure_ascii=False)
    except RecursionError:
        return raw


def _args_preview(arguments: str) -> str:
    value = _parsed(arguments or "{}")
    return arguments if value is None else _fields_preview(value, arguments)


def _result_preview(content: str, arguments: str) -> str:
    """A result as fields, leaving out those that only echo an argument back (a weather tool's
    ``"location": "Paris"``), so the line shows what the call found."""
    value = _parsed(content)
    if not isinstance(value, dict):
        return content
    args = _parsed(arguments or "{}")
    echoed = list(args.values()) if isinstance(args, dict) else []
    found = {k: v for k, v in value.items() if not (isinstance(v, str) and v in echoed)}
    return _fields_preview(found or value, content)


def _clip(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def _took(seconds: float) -> str:
    """A duration as people read it: ``8 ms``, ``0.51 s``, ``12 s`` (never ``0.00 s``)."""
    if seconds < 0.001:
        return "<1 ms"
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_summary(activity: ToolActivity, *, turn_over: bool = False) -> str:
    """One short line: ``get_weather(location="Paris") → result · 510 ms``."""
    call, outcome = activity.call, activity.outcome
    head = one_line(f"{_short(call.name, 60)}({_short(_args_preview(call.arguments), 48)})")
    if outcome is None:
        if not turn_over:
            return f"{head} …"
        # getattr: transcripts made before the engine tracked these still draw.
        if not getattr(activity, "started", False):
            return f"{head} ✗ not run (the turn ended first)"
        if getattr(activity, "is_async", False):
            return f"{head} ✗ cancelled"
        return (
            f"{head} ✗ cancelled; a plain (sync) function cannot be stopped from outside and may "
            "still be finishing in the background"
        )
    if not outcome.ok:
        error = one_line(_short(outcome.error or "failed", 120))
        return f"{head} ✗ {error} · {_took(outcome.duration)}"
    result = one_line(_short(_result_preview(outcome.content, call.arguments), 40))
    return f"{head} → {result} · {_took(outcome.duration)}"


def _details(summary_html: str, body: str) -> str:
    """A folded section: the summary is ours (HTML), the body Markdown already made safe."""
    return f"<details><summary>{summary_html}</summary>\n\n{body}\n\n</details>"


def tool_markdown(activity: ToolActivity, turn_over: bool, budget: TextBudget) -> str:
    """A tool call folded to its one-line summary; expanded, its arguments and result, quoted
    (so they sit indented under the summary) and pretty-printed when they are JSON."""
    call, outcome = activity.call, activity.outcome
    icon = "🔧" if outcome is None or outcome.ok else "⚠️"
    arguments = call.arguments
    if len(arguments) <= PARSE_ARGUMENTS_CHARS:
        arguments = _pretty_json(arguments)
    shown = budget.take(_clip(arguments, SHOWN_ARGUMENTS_CHARS))
    body = ["**Arguments**\n\n" + fenced(shown, "json")]
    if outcome is not None and not budget.spent:
        result, lang = outcome.content, ""
        if len(result) <= PARSE_ARGUMENTS_CHARS and result.lstrip()[:1] in ("{", "["):
            pretty = _pretty_json(result)
            result, lang = pretty, "json" if pretty is not result else ""
        body.append("**Result**\n\n" + fenced(budget.take(_clip(result, 2000)), lang))
        if outcome.traceback and not budget.spent:
            body.append("**Traceback**\n\n" + fenced(budget.take(outcome.traceback.rstrip())))
    summary = html.escape(tool_summary(activity, turn_over=turn_over))
    return _details(f"{icon} {summary}", quoted("\n\n".join(body)))


def _pretty_json(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return arguments


def reasoning_markdown(
    round_: Round, final: bool, budget: TextBudget, seconds: float | None = None
) -> str | None:
    """The round's reasoning folded under *Thinking*, quoted so it never reads as the answer;
    ``seconds``: how long it thought, once known."""
    stream = round_.stream
    reasoning = stream.reasoning.strip()
    if not reasoning:
        return None
    done = final or bool(stream.text) or bool(stream.tool_calls)
    label = "Thinking" if done else "Thinking…"
    if done and seconds is not None and seconds >= 0.05:  # an instant says nothing
        label += f" · {seconds:.1f} s"
    body = quote_untrusted("", budget.take(reasoning))
    # A quote, indented under its summary with a rule beside it, in grey: JupyterLab does not
    # mute quotes as GitHub does. A mid grey reads on light and dark themes; JupyterLab's
    # sanitizer keeps a hex colour after reload, and GitHub drops the style and mutes the quote.
    return _details(label, f'<div style="{THINKING_STYLE}">\n\n{body}\n\n</div>')


def answer_markdown(text: str, fmt: str) -> str:
    """Answer text (already within its budget) in the cell's format."""
    if fmt == "text":
        return f"<pre>{html.escape(text)}</pre>"
    if fmt == "json":
        return fenced(text, "json")
    # Fences are closed even in the final frame, so notices and the footer never land in code.
    return safe_markdown(text)


def _round_markdown(
    round_: Round, final: bool, fmt: str, budget: TextBudget, seconds: float | None
) -> list[str]:
    parts: list[str] = []
    thinking = reasoning_markdown(round_, final, budget, seconds)
    if thinking:
        parts.append(thinking)
    text = round_.stream.text
    if text and not budget.spent:
        parts.append(answer_markdown(budget.take(text), fmt))
    for activity in round_.tools:
        if budget.spent:
            break
        parts.append(tool_markdown(activity, final, budget))
    if round_.tools:
        parts.append(TOOLS_SPACER)
    return parts


def _untrusted_size(transcript: Transcript) -> int:
    size = 0
    for round_ in transcript.rounds:
        size += len(round_.stream.text) + len(round_.stream.reasoning)
        for activity in round_.tools:
            size += len(activity.call.arguments)
            if activity.outcome is not None:
                size += len(activity.outcome.content)
    return size


def transcript_markdown(
    transcript: Transcript,
    *,
    final: bool,
    fmt: str = "markdown",
    max_chars: int | None = None,
    thought: Mapping[int, float] | None = None,
) -> str:
    """The turn as Markdown; past ``max_chars`` its head and a notice that it was clipped.

    ``thought``: seconds each round (by index) spent thinking, where the view measured it.
    """
    thought = thought or {}

    def build(budget: TextBudget, clipped_notice: str | None) -> str:
        parts: list[str] = []
        for number, round_ in enumerate(transcript.rounds):
            if budget.spent:
                break
            parts.extend(_round_markdown(round_, final, fmt, budget, thought.get(number)))
        if clipped_notice:
            parts.append(clipped_notice)
        parts.extend(status_markdown(transcript, final, shown=bool(parts)))
        return "\n\n".join(parts)

    return fit_markdown(build, _untrusted_size(transcript), max_chars)


def _has_answer(transcript: Transcript) -> bool:
    return any(r.tools or r.stream.text for r in transcript.rounds)


def status_markdown(transcript: Transcript, final: bool, *, shown: bool) -> list[str]:
    """What is said after the answer: waiting, notices, how it ended, and the usage footer.

    An error before any answer is said alone: a footer of no tokens in no time says nothing.
    """
    parts: list[str] = []
    if transcript.status == "running tools":
        parts.append("*Running tools…*")
    if transcript.waiting:
        parts.append(quote_untrusted("⏳ ", transcript.waiting))
    for notice in transcript.notices:
        parts.append(quote_untrusted("ℹ️ ", notice))
    if transcript.status == "interrupted":
        parts.append("> ⏹ **Interrupted.** The partial answer above is kept.")
    if transcript.status == "incomplete":
        why = transcript.error or "The stream ended without saying it was finished."
        parts.append(quote_untrusted("⚠️ **Incomplete.** ", why))
    elif transcript.error:
        parts.append(quote_untrusted("⚠️ **Error.** ", transcript.error))
    if not parts and not shown and not final:
        parts.append(WAITING)
    if transcript.error and not _has_answer(transcript):
        return parts
    if final or transcript.status != "streaming" or transcript.usage.completion_tokens:
        # The class lets the page script find answers in the page (code-block actions).
        footer_line = html.escape(one_line(footer(transcript)))
        parts.append(f'<sub class="clarifai-footer">{footer_line}</sub>')
    return parts


class TerminalView:
    """Plain text for a terminal IPython: text is printed as it streams."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.budget = FrameBudget(TERMINAL_INTERVAL)
        self._printed: dict[tuple[int, str], int] = {}
        self._tools_shown: set[tuple[int, int, bool]] = set()
        self._waiting_shown: str | None = None

    def _write_new(self, key: tuple[int, str], text: str, prefix: str = "") -> None:
        done = self._printed.get(key, 0)
        if len(text) > done:
            if done == 0 and prefix:
                self.out.write(prefix)
            self.out.write(text[done:])
            self._printed[key] = len(text)

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        if not self.budget.allows(final=final, force=force):
            return
        if transcript.waiting and transcript.waiting != self._waiting_shown:
            self.out.write(f"[waiting] {transcript.waiting}\n")
        self._waiting_shown = transcript.waiting
        for number, round_ in enumerate(transcript.rounds):
            self._write_new((number, "reasoning"), round_.stream.reasoning, "[thinking] ")
            if (
                round_.stream.reasoning
                and round_.stream.text
                and (number, "text") not in self._printed
            ):
                self.out.write("\n[answer]\n")
            self._write_new((number, "text"), round_.stream.text)
            for index, activity in enumerate(round_.tools):
                key = (number, index, activity.outcome is not None)
                if key not in self._tools_shown:
                    self._tools_shown.add(key)
                    mark = "←" if activity.outcome else "→"
                    self.out.write(f"\n{mark} {tool_summary(activity, turn_over=final)}\n")
                    if activity.outcome is not None and activity.outcome.traceback:
                        self.out.write(activity.outcome.traceback.rstrip() + "\n")
        if final:
            for notice in transcript.notices:
                self.out.write(f"\n[note] {notice}")
            if transcript.status == "interrupted":
                self.out.write("\n[interrupted: the partial answer above is kept]")
            if transcript.status == "incomplete":
                why = transcript.error or "The stream ended without saying it was finished."
                self.out.write(f"\n[incomplete] {why}")
            elif transcript.error:
                self.out.write(f"\n[error] {transcript.error}")
            self.out.write(f"\n({footer(transcript)})\n")
        self.out.flush()
        self.budget.drew()


def _stored_text(content: Any, budget: TextBudget) -> str:
    """A stored message's content as safe Markdown: text parts escaped, other parts named."""
    if not isinstance(content, list):
        return safe_markdown(budget.take(content if isinstance(content, str) else ""))
    shown = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            shown.append(safe_markdown(budget.take(str(part.get("text", "")))))
        else:
            kind = escape_inline(one_line(str(part.get("type", "part"))))
            shown.append(f"*\\[{kind}\\]*")
    return "\n\n".join(shown)


def history_markdown(name: str, stored: list[Any], *, max_chars: int | None = None) -> str:
    """A stored conversation as Markdown: each message under its role, tool calls collapsed.

    Everything stored came from the user, the model or a tool, so all of it is escaped.
    """

    def build(budget: TextBudget, notice: str | None) -> str:
        parts = [f"### Conversation {code_span(name)}"]
        if not stored:
            parts.append("*No messages yet.*")
        for item in stored:
            if budget.spent:
                break
            parts.append(_stored_markdown(item, budget))
        if notice:
            parts.append(notice)
        return "\n\n".join(parts)

    size = sum(len(str(item.message.get("content") or "")) for item in stored)
    return fit_markdown(build, size, max_chars)


def _stored_markdown(item: Any, budget: TextBudget) -> str:
    message = item.message
    role = str(message.get("role", "?"))
    content = message.get("content")
    if role == "tool":
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        tool = html.escape(one_line(str(message.get("name") or "tool")))
        return _details(f"🔧 result of {tool}", fenced(budget.take(_clip(text, 2000))))
    flag = " *(partial)*" if getattr(item, "partial", False) else ""
    if getattr(item, "hidden", False):
        flag += " *(cell deleted: not sent)*"
    parts = [f"**{escape_inline(one_line(role))}**{flag}", _stored_text(content, budget)]
    for call in message.get("tool_calls") or ():
        function = call.get("function", {})
        shown = f"{function.get('name')}({_args_preview(str(function.get('arguments', '')))})"
        parts.append(f"🔧 {code_span(_clip(shown, SHOWN_ARGUMENTS_CHARS))}")
    return "\n\n".join(part for part in parts if part)
